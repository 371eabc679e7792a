//! The test API server: TLS on 127.0.0.1, bearer tokens, the world's objects served as
//! kube-apiserver serves them (get, list with a `metadata.name` field selector, watch with
//! ADDED/MODIFIED/DELETED/BOOKMARK events and 410 Gone), RBAC when the world has a policy, and
//! the world's injected faults. One thread per connection, one request per connection.
//! It never changes the world, except the files it writes at start and the request log.

use std::collections::HashMap;
use std::fs;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use serde_json::{json, Value};

use crate::apipath::{api_version, builtin, kind_of, parse_path, ApiPath};
use crate::rbac;
use crate::status::{self, Target};
use crate::versions::Versions;
use crate::wire::{self, Request};
use crate::world::{collection_dir, type_line, World};

/// The user a 403 names (the sync's ServiceAccount in deploy/kubernetes).
pub const USER: &str = "system:serviceaccount:calico-bpf-guard:calico-bpf-guard-sync";

/// How long an injected `timeout` holds a request before closing it unanswered.
const HOLD: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);
/// How often an open watch looks at the world again: each look reads and parses its objects, and
/// a daemon test holds 7 watches on a machine it shares.
const WATCH_POLL: Duration = Duration::from_millis(100);
const BOOKMARK_EVERY: Duration = Duration::from_secs(1);
/// `answer`'s word for a watch, which logs itself when it starts.
const STREAMED: u16 = u16::MAX;

struct State {
    world: World,
    tls: Arc<ServerConfig>,
    versions: Mutex<Versions>,
    stop: AtomicBool,
}

/// A running server; it stops (and its port closes) when dropped.
pub struct Server {
    pub port: u16,
    pub world: World,
    state: Arc<State>,
    thread: Option<thread::JoinHandle<()>>,
}

fn kubeconfig(dir: &Path, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: sync\n  user:\n    tokenFile: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: sync\ncurrent-context: test\n",
        ca = dir.join("ca.crt").display(),
        token = dir.join("token").display(),
    )
}

impl Server {
    /// Serves `world` on 127.0.0.1:`port` (0: any free port); writes `ca.crt`, `kubeconfig`
    /// and `port` into the world.
    pub fn start(world: World, port: u16) -> Result<Server> {
        let tls = crate::tls::load_or_make(&world.dir)?;
        let listener = TcpListener::bind(("127.0.0.1", port)).context("binding 127.0.0.1")?;
        let port = listener.local_addr()?.port();
        fs::write(world.dir.join("kubeconfig"), kubeconfig(&world.dir, port))?;
        fs::write(world.dir.join("port"), format!("{port}\n"))?;
        let state = Arc::new(State {
            world: world.clone(),
            tls,
            versions: Mutex::new(Versions::starting_at(1000)),
            stop: AtomicBool::new(false),
        });
        let st = state.clone();
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if st.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(tcp) = conn {
                    let st = st.clone();
                    thread::spawn(move || serve(&st, tcp));
                }
            }
        });
        Ok(Server {
            port,
            world,
            state,
            thread: Some(thread),
        })
    }

    /// Stop answering and close the port ("API down").
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(st: &State, tcp: TcpStream) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(conn) = ServerConnection::new(st.tls.clone()) else {
        return;
    };
    let mut s = StreamOwned::new(conn, tcp);
    let Some(req) = wire::read_request(&mut s) else {
        return;
    };
    let line = format!("{} {}", req.method, req.target);
    let code = answer(st, &mut s, &req, &line);
    if code != STREAMED {
        st.world.log_request(&format!("{line} -> {code}"));
    }
}

fn send(s: &mut impl Write, code: u16, body: &Value) -> u16 {
    let _ = wire::respond(s, code, body.to_string().as_bytes());
    code
}

/// Answers one request; returns the status for the log (0: closed unanswered).
fn answer(st: &State, s: &mut impl Write, req: &Request, line: &str) -> u16 {
    let fault = st.world.fault_for(line);
    match fault.as_deref() {
        Some("401") => return send(s, 401, &status::unauthorized()),
        Some("drop") if !req.query.contains_key("watch") => return 0,
        Some("timeout") => {
            let until = Instant::now() + HOLD;
            while Instant::now() < until && !st.stop.load(Ordering::SeqCst) {
                thread::sleep(POLL);
            }
            return 0;
        }
        _ => {}
    }
    let token = req
        .headers
        .get("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_empty() || token != st.world.token() {
        return send(s, 401, &status::unauthorized());
    }
    let Some(p) = parse_path(&req.path) else {
        return send(s, 404, &status::no_such_type());
    };
    let watch = req
        .query
        .get("watch")
        .is_some_and(|v| v == "true" || v == "1");
    let verb = match (&p.name, watch) {
        (Some(_), _) => "get",
        (None, true) => "watch",
        (None, false) => "list",
    };
    let selected = req
        .query
        .get("fieldSelector")
        .and_then(|f| f.split(',').find_map(|t| t.strip_prefix("metadata.name=")))
        .map(str::to_string);
    let name = p.name.clone().or(selected.clone());
    let target = Target {
        group: &p.group,
        resource: &p.resource,
        name: name.as_deref(),
        namespace: p.namespace.as_deref(),
        verb,
    };
    match fault.as_deref() {
        Some("403") => return send(s, 403, &status::forbidden(&target, USER)),
        Some("404") => return send(s, 404, &status::not_found(&target)),
        Some(c @ ("500" | "503")) => {
            return send(
                s,
                c.parse().unwrap_or(500),
                &status::internal(c.parse().unwrap_or(500)),
            )
        }
        Some("garbage") => {
            let _ = wire::respond(s, 200, b"{\"kind\":\"List\",\"items\":[{\"metadata\":");
            return 200;
        }
        _ => {}
    }
    if !st
        .world
        .served()
        .contains(&type_line(&p.group, &p.version, &p.resource))
    {
        return send(s, 404, &status::no_such_type());
    }
    if let Ok(yaml) = fs::read_to_string(st.world.dir.join("rbac.yaml")) {
        let allowed = rbac::parse(&yaml)
            .map(|rules| {
                rbac::allows(
                    &rules,
                    &p.group,
                    &p.resource,
                    verb,
                    p.namespace.as_deref(),
                    name.as_deref(),
                )
            })
            .unwrap_or(false);
        if !allowed {
            return send(s, 403, &status::forbidden(&target, USER));
        }
    }
    if req.method != "GET" {
        return send(s, 403, &status::forbidden(&target, USER));
    }
    match (&p.name, watch) {
        (Some(n), _) => match objects(st, &p, Some(n)).into_iter().next() {
            Some((_, _, obj)) => send(s, 200, &obj),
            None => send(s, 404, &status::not_found(&target)),
        },
        (None, false) => {
            let mut found = objects(st, &p, selected.as_deref());
            found.retain(|(_, _, o)| selects(&req.query, o));
            // `stale`: a list that may be answered from the watch cache (resourceVersion=0)
            // gets what a cache that is behind holds: each object as it was before its latest
            // change. A consistent read (no resourceVersion) is never stale.
            if fault.as_deref() == Some("stale")
                && req.query.get("resourceVersion").is_some_and(|v| v == "0")
            {
                for (path, rv, obj) in &mut found {
                    let old = st.versions.lock().ok().and_then(|v| v.stale(path));
                    if let Some((old_rv, bytes)) = old {
                        if let Ok(mut o) = serde_json::from_slice::<Value>(&bytes) {
                            o["metadata"]["resourceVersion"] = json!(old_rv.to_string());
                            *rv = old_rv;
                            *obj = o;
                        }
                    }
                }
            }
            let items: Vec<Value> = found
                .into_iter()
                .map(|(_, _, mut o)| {
                    if builtin(&p.group) {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                    }
                    o
                })
                .collect();
            let rv = current(st);
            let list = json!({
                "kind": format!("{}List", kind_of(&p.resource)),
                "apiVersion": api_version(&p),
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items
            });
            send(s, 200, &list)
        }
        (None, true) => {
            // Logged when it starts: a watch may run for minutes. A 410 comes inside the
            // stream, as kube-apiserver sends it, and is logged as one.
            let code = if fault.as_deref() == Some("gone") {
                410
            } else {
                200
            };
            st.world.log_request(&format!("{line} -> {code}"));
            stream(st, s, &p, selected.as_deref(), req, fault.as_deref());
            STREAMED
        }
    }
}

fn current(st: &State) -> u64 {
    st.versions.lock().map(|v| v.current()).unwrap_or(0)
}

/// The collection's directories: one namespace, or every namespace (and cluster scope).
fn dirs(st: &State, p: &ApiPath) -> Vec<PathBuf> {
    match &p.namespace {
        Some(ns) => vec![collection_dir(
            &st.world.dir,
            &p.group,
            &p.version,
            Some(ns),
            &p.resource,
        )],
        None => {
            let base = collection_dir(&st.world.dir, &p.group, &p.version, None, &p.resource);
            let version_dir = base.parent().and_then(Path::parent).map(Path::to_path_buf);
            let mut out = Vec::new();
            if let Some(vd) = version_dir {
                for e in fs::read_dir(vd).into_iter().flatten().flatten() {
                    out.push(e.path().join(&p.resource));
                }
            }
            out.sort();
            out
        }
    }
}

/// Whether `obj` is selected by the request's `labelSelector` (`k=v` terms) and its
/// `fieldSelector` terms other than `metadata.name` (`spec.nodeName=X`, as for pods).
fn selects(query: &HashMap<String, String>, obj: &Value) -> bool {
    let labels = query.get("labelSelector").map_or("", String::as_str);
    let fields = query.get("fieldSelector").map_or("", String::as_str);
    let label_ok = labels
        .split(',')
        .filter(|t| !t.is_empty())
        .all(|t| match t.split_once('=') {
            Some((k, v)) => obj["metadata"]["labels"][k].as_str() == Some(v),
            None => false,
        });
    let fields_ok = fields
        .split(',')
        .filter_map(|t| t.split_once('='))
        .filter(|(k, _)| *k != "metadata.name")
        .all(|(k, v)| {
            k.split('.')
                .try_fold(obj, |o, part| o.get(part))
                .and_then(Value::as_str)
                == Some(v)
        });
    label_ok && fields_ok
}

/// (path, resourceVersion, object) of every object of the collection, or only `name`.
fn objects(st: &State, p: &ApiPath, name: Option<&str>) -> Vec<(PathBuf, u64, Value)> {
    let mut out = Vec::new();
    for dir in dirs(st, p) {
        let mut files: Vec<PathBuf> = match name {
            Some(n) => vec![dir.join(format!("{n}.json"))],
            None => fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "json"))
                .collect(),
        };
        files.sort();
        for f in files {
            let bytes = fs::read(&f).ok();
            let rv = match st.versions.lock() {
                Ok(mut v) => v.observe(&f, bytes.as_deref()),
                Err(_) => None,
            };
            if let (Some(rv), Some(b)) = (rv, bytes) {
                if let Ok(mut obj) = serde_json::from_slice::<Value>(&b) {
                    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                    out.push((f, rv, obj));
                }
            }
        }
    }
    out
}

/// Sends one watch event; `events.log` gets `<request line> <TYPE>` when it went out.
fn event(st: &State, s: &mut impl Write, request: &str, kind: &str, obj: &Value) -> bool {
    let line = format!("{}\n", json!({"type": kind, "object": obj}));
    let sent = wire::chunk(s, line.as_bytes()).is_ok();
    if sent {
        st.world.log_event(&format!("{request} {kind}"));
    }
    sent
}

/// A watch: events for changes after `resourceVersion`, bookmarks when asked, until the
/// client's timeout, the type stops being served, or a fault ends it.
fn stream(
    st: &State,
    s: &mut impl Write,
    p: &ApiPath,
    name: Option<&str>,
    req: &Request,
    fault: Option<&str>,
) {
    if wire::start_stream(s).is_err() {
        return;
    }
    let request = format!("{} {}", req.method, req.target);
    let since: u64 = req
        .query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if fault == Some("gone") {
        let now = current(st);
        event(
            st,
            s,
            &request,
            "ERROR",
            &status::gone(&since.to_string(), now),
        );
        let _ = wire::end_stream(s);
        return;
    }
    if fault == Some("drop") {
        // The connection breaks mid-stream, as when a proxy or the API server restarts.
        return;
    }
    let until = req
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map(|t: u64| Instant::now() + Duration::from_secs(t));
    let bookmarks = req
        .query
        .get("allowWatchBookmarks")
        .is_some_and(|v| v == "true");
    let line = type_line(&p.group, &p.version, &p.resource);
    let mut known: HashMap<PathBuf, (u64, Value)> = HashMap::new();
    let mut first = true;
    let mut last_bookmark = Instant::now();
    loop {
        if st.stop.load(Ordering::SeqCst) || until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        if !st.world.served().contains(&line) {
            break;
        }
        let mut now = objects(st, p, name);
        now.retain(|(_, _, o)| selects(&req.query, o));
        for (path, rv, obj) in &now {
            let what = match known.get(path) {
                None if first && *rv <= since => None,
                None => Some("ADDED"),
                Some((old, _)) if old != rv => Some("MODIFIED"),
                Some(_) => None,
            };
            if let Some(kind) = what {
                if !event(st, s, &request, kind, obj) {
                    return;
                }
            }
            known.insert(path.clone(), (*rv, obj.clone()));
        }
        let gone: Vec<PathBuf> = known
            .keys()
            .filter(|k| !now.iter().any(|(p, _, _)| p == *k))
            .cloned()
            .collect();
        for path in gone {
            if let Some((_, mut obj)) = known.remove(&path) {
                let rv = match st.versions.lock() {
                    Ok(mut v) => {
                        v.observe(&path, None);
                        v.current()
                    }
                    Err(_) => 0,
                };
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                if !event(st, s, &request, "DELETED", &obj) {
                    return;
                }
            }
        }
        first = false;
        if bookmarks && last_bookmark.elapsed() >= BOOKMARK_EVERY {
            let b = json!({"kind": kind_of(&p.resource), "apiVersion": api_version(p),
                           "metadata": {"resourceVersion": current(st).to_string()}});
            if !event(st, s, &request, "BOOKMARK", &b) {
                return;
            }
            last_bookmark = Instant::now();
        }
        // Faults set while the watch is open: the connection breaks, or the server says the
        // watch's resourceVersion is too old (410 Gone, after an etcd compaction).
        match st.world.fault_for(&request).as_deref() {
            Some("drop") => return,
            Some("gone") => {
                let latest = known.values().map(|(rv, _)| *rv).max().unwrap_or(since);
                event(
                    st,
                    s,
                    &request,
                    "ERROR",
                    &status::gone(&latest.to_string(), current(st)),
                );
                st.world.log_request(&format!("{request} -> 410"));
                break;
            }
            _ => {}
        }
        thread::sleep(WATCH_POLL);
    }
    let _ = wire::end_stream(s);
}
