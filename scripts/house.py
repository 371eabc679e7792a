#!/usr/bin/env python3
"""The house check (`make lint`): how the project's Rust modules import one another.

For every crate in the workspace (the mode file's library, the guard's library and binary, the
testkit and its binaries, the sync and its test API server, each integration test and fuzz
target) it reads the module tree from `mod` declarations and the
edges from the paths the code names (`crate::…`, `super::…`, `self::…`, a child module's name,
`use` trees flattened), comments and string literals left out. A `#[cfg(test)] mod x;` file is
its parent's own tests and counts as the parent. Then it fails on:

  - a circle: modules that import one another, directly or round a loop (a child that imports
    the parent that re-exports it counts);
  - an arrow back up: in the guard's library, the mode file's, the sync's and its test API
    server's, an import of a module on a higher floor than the importer's (FLOORS below, lowest
    first; every top-level module must have a floor);
  - a source file over MAX_LINES lines;
  - a module file that does not open with one `//!` paragraph (what it is for, what it never
    does) in every crate's src/.

Usage: scripts/house.py [--graph] [--root DIR]   (--graph prints every crate's edges; --root
checks another checkout, e.g. an old commit's worktree)
Exit 0 when the house is clean, 1 with one line per problem otherwise.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_LINES = 600

# The guard library's floors, lowest first, as the data flows in design.md: kernel facts and
# names at the bottom, then what the files say (config, mode) and how to tell people (logging),
# the decision, Calico's ownership rules (pure knowledge of its names and places, which the
# scan consults to know where to look), the read-only scan, the plan, the checks and switches
# around applying it, apply, what is told afterwards, and the commands on top. A module may
# import from its own floor's modules only when no circle results (the circle check says so).
FLOORS = {
    "src/lib.rs": [
        ["names", "failpoint"],
        ["kernel"],
        ["config", "mode", "logging"],
        ["decide"],
        ["ownership"],
        ["inventory"],
        ["plan"],
        ["interlock", "expedite"],
        ["apply"],
        ["notes"],
        ["report"],
        ["metrics"],
        ["run"],
    ],
    # The mode file: what a bad file says (invalid) below reading and writing it (files).
    "modefile/src/lib.rs": [
        ["invalid"],
        ["files"],
    ],
    # The sync, as its data flows: the words (arguments, log lines, failure reasons, Felix's
    # values, the absence hold), what each source said, reading them from the API, the
    # decision, the override that feeds it, writing the mode file, the metrics and their HTTP
    # endpoint, the watches that wake an evaluation, and the loop on top.
    "sync/src/main.rs": [
        ["cli", "logline", "reason", "felix", "absence"],
        ["sources"],
        ["cluster"],
        ["decide"],
        ["override_file"],
        ["modecache"],
        ["metrics"],
        ["http"],
        ["watch"],
        ["run"],
    ],
    # The test API server: the world, the wire, paths, versions, RBAC and status pages below
    # the server that serves them.
    "sync/testapi/src/lib.rs": [
        ["apipath", "fixtures", "rbac", "status", "tls", "versions", "wire", "world"],
        ["server"],
    ],
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip(text):
    """The code without comments, string and char literals (which may spell paths)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            j = text.find('"' + hashes, i + 2 + len(hashes))
            i = n if j < 0 else j + 1 + len(hashes)
            out.append('""')
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            out.append('""')
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4] + text[i + 4:i + 12]):
            m = re.match(r"'(\\[^']*|[^\\'])'", text[i:])
            i += len(m.group(0)) if m else 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def inline_super(code):
    """Inside an inline `mod x { … }` (a file's tests), `super` is the file's own module."""
    out, last = [], 0
    for m in re.finditer(r"\bmod\s+" + IDENT + r"\s*\{", code):
        if m.start() < last:
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        out.append(code[last:m.end()])
        out.append(code[m.end():j].replace("super::", "self::"))
        last = j
    out.append(code[last:])
    return "".join(out)


def child_file(parent_file, is_dir_owner, name):
    base = os.path.dirname(parent_file) if is_dir_owner else parent_file[:-3]
    for cand in (os.path.join(base, name + ".rs"), os.path.join(base, name, "mod.rs")):
        if os.path.exists(cand):
            return cand
    return None


MOD_DECL = re.compile(r"((?:#\[[^\]]*\]\s*)*)(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;")


class Crate:
    def __init__(self, root_file):
        self.root_file = root_file
        self.files = {}  # module path (tuple) -> file
        self.owner = {}  # module path -> the node it counts as (a test file counts as its parent)
        self.code = {}
        self.walk(root_file, (), True, None)

    def walk(self, path, modpath, is_dir_owner, owner):
        self.files[modpath] = path
        self.owner[modpath] = owner if owner is not None else modpath
        code = inline_super(strip(open(path, encoding="utf-8").read()))
        self.code[modpath] = code
        for attrs, name in MOD_DECL.findall(code):
            f = child_file(path, is_dir_owner, name)
            if f is None:
                continue
            is_test = "cfg(test)" in attrs.replace(" ", "")
            self.walk(f, modpath + (name,), f.endswith("mod.rs"),
                      self.owner[modpath] if is_test else None)

    def children(self, modpath):
        return {m[-1] for m in self.files if len(m) == len(modpath) + 1 and m[:-1] == modpath}

    def resolve(self, base, segs):
        """The deepest module named by `segs` from `base`; None for another crate's path."""
        cur = base
        for k, s in enumerate(segs):
            if s == "crate" and k == 0:
                cur = ()
            elif s == "super":
                if not cur:
                    return None
                cur = cur[:-1]
            elif s == "self":
                continue
            elif cur + (s,) in self.files:
                cur = cur + (s,)
            else:
                break
        return cur

    def paths(self, modpath):
        """Every path the module names that starts in this crate."""
        code = self.code[modpath]
        found = []
        # `use` trees, flattened: use a::{b, c::{d, e}} -> a::b, a::c::d, a::c::e.
        for tree in re.findall(r"\buse\s+([^;]+);", code):
            tree = re.sub(r"\s*(::|[{},])\s*", r"\1", re.sub(r"\s+", " ", tree))
            found.extend(flatten(tree))
        kids = self.children(modpath)
        for m in re.finditer(r"\b((?:" + IDENT + r"::)+" + IDENT + r")", code):
            found.append(m.group(1))
        out = []
        for p in found:
            segs = [s for s in p.split("::") if s]
            if not segs:
                continue
            if segs[0] in ("crate", "super", "self") or segs[0] in kids:
                out.append(segs)
        return out

    def edges(self):
        g = {self.owner[m]: set() for m in self.files}
        for m in self.files:
            src = self.owner[m]
            for segs in self.paths(m):
                dst = self.resolve(m, segs)
                if dst is None:
                    continue
                dst = self.owner.get(dst, dst)
                if dst != src:
                    g[src].add(dst)
        return g


def flatten(tree):
    """A `use` tree's paths: a::{b, c::{d, e as f}} -> a::b, a::c::d, a::c::e."""
    tree = tree.strip()
    m = re.match(r"^(.*?)::\{(.*)\}$", tree, re.S)
    if not m:
        return [tree.split(" as ")[0].strip()] if tree else []
    prefix, inner = m.group(1).strip(), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    out = []
    for p in (p.strip() for p in parts):
        if p == "self":
            out.append(prefix)
        elif p and p != "*":
            out.extend(flatten(prefix + "::" + p))
        elif p == "*":
            out.append(prefix)
    return out


def sccs(g):
    index, low, stack, on, res, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            res.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(g):
        if v not in index:
            visit(v)
    return [c for c in res if len(c) > 1]


def name(modpath):
    return "::".join(modpath) or "crate"


# The workspace's crates (directories holding a Cargo.toml with src/), lowest first.
CRATE_DIRS = ("modefile", ".", "testkit", "sync/testapi", "sync")


def crate_roots():
    roots = []
    for c in CRATE_DIRS:
        for rel in ("src/lib.rs", "src/main.rs"):
            if os.path.exists(os.path.join(ROOT, c, rel)):
                roots.append(os.path.normpath(os.path.join(c, rel)))
        full = os.path.join(ROOT, c, "src/bin")
        if os.path.isdir(full):
            for e in sorted(os.listdir(full)):
                d = os.path.normpath(os.path.join(c, "src/bin"))
                if e.endswith(".rs"):
                    roots.append(os.path.join(d, e))
                elif os.path.exists(os.path.join(full, e, "main.rs")):
                    roots.append(os.path.join(d, e, "main.rs"))
        full = os.path.join(ROOT, c, "tests")
        if os.path.isdir(full):
            d = os.path.normpath(os.path.join(c, "tests"))
            roots.extend(os.path.join(d, e) for e in sorted(os.listdir(full)) if e.endswith(".rs"))
    full = os.path.join(ROOT, "fuzz/fuzz_targets")
    if os.path.isdir(full):
        roots.extend(os.path.join("fuzz/fuzz_targets", e) for e in sorted(os.listdir(full)) if e.endswith(".rs"))
    return roots


def check_docs(path, rel, problems):
    lines = open(path, encoding="utf-8").read().split("\n")
    if not lines or not lines[0].startswith("//!") or not lines[0][3:].strip():
        problems.append(f"{rel}: does not open with a //! paragraph saying what it is for")
        return
    k = 0
    while k < len(lines) and lines[k].startswith("//!") and lines[k][3:].strip():
        k += 1
    if k < len(lines) and lines[k].startswith("//!"):
        problems.append(f"{rel}: its opening //! comment is more than one paragraph")


def main():
    global ROOT
    args = sys.argv[1:]
    graph = "--graph" in args
    if "--root" in args:
        ROOT = os.path.abspath(args[args.index("--root") + 1])
    problems = []
    files_seen = set()
    for root in crate_roots():
        crate = Crate(os.path.join(ROOT, root))
        files_seen.update(crate.files.values())
        g = crate.edges()
        if graph:
            print(f"{root}:")
            for m in sorted(g):
                print(f"  {name(m)} -> {', '.join(sorted(name(d) for d in g[m])) or '-'}")
        for comp in sccs(g):
            problems.append(f"{root}: circle: " + " <-> ".join(sorted(name(m) for m in comp)))
        floors = FLOORS.get(root)
        if floors:
            floor_of = {m: k for k, fl in enumerate(floors) for m in fl}
            for m in g:
                if m and m[0] not in floor_of:
                    problems.append(f"{root}: module {m[0]} has no floor in scripts/house.py")
                    floor_of[m[0]] = -1
            for m, dsts in g.items():
                for d in dsts:
                    if m and d and floor_of[d[0]] > floor_of[m[0]]:
                        problems.append(f"{root}: arrow back up: {name(m)} imports {name(d)}")
    documented = tuple(os.path.normpath(os.path.join(c, "src")) for c in CRATE_DIRS)
    for top in ("src", "testkit/src", "tests", "fuzz", "modefile", "sync"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            if "/target" in dirpath:
                continue
            for f in sorted(names):
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                with open(path, encoding="utf-8") as fh:
                    n = sum(1 for _ in fh)
                if n > MAX_LINES:
                    problems.append(f"{rel}: {n} lines, over {MAX_LINES}")
                if rel.startswith(tuple(d + "/" for d in documented)) and path in files_seen:
                    check_docs(path, rel, problems)
    for p in problems:
        print(p)
    if not problems:
        print(f"house: {len(crate_roots())} crates, 0 circles, 0 arrows back up, "
              f"no file over {MAX_LINES} lines, every module opens with its paragraph")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
