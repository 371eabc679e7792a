//! One line on stderr per event worth a person's attention (a decision, a failure, a broken
//! watch), prefixed with the program and a level word; the container runtime adds the time.
//! It never decides what to say.

pub fn info(msg: &str) {
    eprintln!("calico-bpf-guard-sync: info: {msg}");
}

pub fn warn(msg: &str) {
    eprintln!("calico-bpf-guard-sync: warning: {msg}");
}
