//! runc processes that have lived too long, and what they wait for.
//!
//! Every runc call a shim makes is short (milliseconds to a second or two), so a runc older than
//! the threshold is stuck. In the case study it sleeps in `pipe_write` on a pipe whose reader is
//! the shim, which will not read before runc exits. The finding says which pipe, how full it is
//! and who holds its read end, and which container the call was for.
//!
//! A runc is: a process whose argv[0] is `runc` (any directory), or whose `comm` is `runc` or
//! one of the names `runc init` gives itself (`runc:[0:PARENT]`, `runc:[1:CHILD]`,
//! `runc:[2:INIT]`). A zombie is left to the shim check: it holds nothing and waits for nothing.
//! `runc events` and a foreground `runc run` are left out: they live as long as their container.
//!
//! Only `runc/` in the shim interprets runc's output; this reads runc's command line, whose
//! shape is runc's CLI (`runc [global flags] <verb> [flags] <container-id> ...`).

use std::path::Path;

use super::pipes::Pipes;
use super::procfs::{is_pipe_write_wait, read_wchan, Proc, ProcTable};
use super::report::{BlockedPipe, Finding, Holder, OldRunc, ProcBrief};
use super::{Host, Scope};

/// runc's global flags that take a value.
const GLOBAL_VALUE_FLAGS: &[&str] = &["root", "log", "log-format", "criu", "rootless"];

/// Flags of runc's verbs that take a value (the union over `create run exec kill update
/// checkpoint restore ps events`), so the first positional after them is the container id.
const VERB_VALUE_FLAGS: &[&str] = &[
    "bundle",
    "b",
    "console-socket",
    "pid-file",
    "process",
    "p",
    "cwd",
    "env",
    "e",
    "user",
    "u",
    "additional-gids",
    "g",
    "cap",
    "c",
    "apparmor",
    "process-label",
    "preserve-fds",
    "cgroup",
    "image-path",
    "work-path",
    "parent-path",
    "page-server",
    "manage-cgroups-mode",
    "empty-ns",
    "status-fd",
    "lsm-profile",
    "lsm-mount-context",
    "format",
    "f",
    "interval",
    "resources",
    "r",
    "blkio-weight",
    "cpu-period",
    "cpu-quota",
    "cpu-share",
    "cpu-rt-period",
    "cpu-rt-runtime",
    "cpu-idle",
    "cpuset-cpus",
    "cpuset-mems",
    "kernel-memory",
    "kernel-memory-tcp",
    "memory",
    "memory-reservation",
    "memory-swap",
    "pids-limit",
    "l3-cache-schema",
    "mem-bw-schema",
];

/// What runc's command line says about the call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuncCall {
    pub verb: Option<String>,
    pub container_id: Option<String>,
    pub root: Option<String>,
    pub bundle: Option<String>,
}

/// True for runc and `runc init`, by argv[0] or `comm`.
pub fn is_runc(p: &Proc) -> bool {
    p.argv
        .first()
        .is_some_and(|a| a.rsplit('/').next() == Some("runc"))
        || p.comm == "runc"
        || p.comm.starts_with("runc:[")
}

/// Splits `-flag`, `--flag` and `--flag=value` into the name and the inline value.
fn flag(arg: &str) -> Option<(&str, Option<&str>)> {
    let name = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if name.is_empty() {
        return None;
    }
    Some(match name.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (name, None),
    })
}

/// Reads runc's argv (argv[0] included).
pub fn parse_runc_argv(argv: &[String]) -> RuncCall {
    let mut call = RuncCall::default();
    let mut i = 1;
    // Global flags, then the verb.
    while i < argv.len() {
        let arg = argv[i].as_str();
        if arg == "--" {
            i += 1;
            break;
        }
        match flag(arg) {
            Some((name, inline)) => {
                let value = match inline {
                    Some(v) => Some(v.to_string()),
                    None if GLOBAL_VALUE_FLAGS.contains(&name) => {
                        i += 1;
                        argv.get(i).cloned()
                    }
                    None => None,
                };
                if name == "root" {
                    call.root = value;
                }
                i += 1;
            }
            None => break,
        }
    }
    let Some(verb) = argv.get(i) else {
        return call;
    };
    call.verb = Some(verb.clone());
    i += 1;
    if verb == "init" {
        return call;
    }
    // The verb's flags, then the first positional: the container id.
    while i < argv.len() {
        let arg = argv[i].as_str();
        if arg == "--" {
            call.container_id = argv.get(i + 1).cloned();
            break;
        }
        match flag(arg) {
            Some((name, inline)) => {
                let value = match inline {
                    Some(v) => Some(v.to_string()),
                    None if VERB_VALUE_FLAGS.contains(&name) => {
                        i += 1;
                        argv.get(i).cloned()
                    }
                    None => None,
                };
                if name == "bundle" || name == "b" {
                    call.bundle = value;
                }
                i += 1;
            }
            None => {
                call.container_id = Some(arg.to_string());
                break;
            }
        }
    }
    call
}

/// `runc events` and a foreground `runc run` last as long as their container by design (shims use
/// neither); they are not stuck.
fn lives_with_its_container(call: &RuncCall, argv: &[String]) -> bool {
    match call.verb.as_deref() {
        Some("events") => true,
        Some("run") => !argv
            .iter()
            .any(|a| matches!(a.as_str(), "-d" | "--detach" | "-detach" | "--detach=true")),
        _ => false,
    }
}

/// containerd's runc root is `/run/containerd/runc/<namespace>`.
fn namespace_of_root(root: &str) -> Option<String> {
    let p = Path::new(root);
    (p.parent()?.file_name()? == "runc")
        .then(|| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .flatten()
}

/// The pipes `p` writes to that a sleeping pipe write is most likely stuck on: the full ones if
/// any is known to be full, otherwise every pipe it holds for writing.
fn blocked_on(procs: &ProcTable, pipes: &Pipes, p: &Proc) -> Vec<BlockedPipe> {
    let all: Vec<BlockedPipe> = p
        .pipes
        .iter()
        .filter(|fd| fd.access.writes())
        .map(|fd| {
            let info = pipes.by_inode.get(&fd.inode);
            let state = info.and_then(|i| i.state);
            BlockedPipe {
                fd: fd.fd,
                inode: fd.inode,
                capacity_bytes: state.map(|s| s.capacity),
                unread_bytes: state.and_then(|s| s.unread),
                readers: info
                    .map(|i| {
                        i.readers()
                            .map(|&(pid, n, a)| Holder::new(procs, pid, n, a))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
        .collect();
    let full = |b: &BlockedPipe| match (b.unread_bytes, b.capacity_bytes) {
        (Some(u), Some(c)) => u >= c,
        _ => false,
    };
    if all.iter().any(full) {
        all.into_iter().filter(full).collect()
    } else {
        all
    }
}

/// The hint for a wait the doctor recognizes.
fn hint(wchan: &str, blocked: &[BlockedPipe]) -> Option<String> {
    if is_pipe_write_wait(wchan) {
        let shim_reader = blocked
            .iter()
            .flat_map(|b| &b.readers)
            .find(|h| h.program.starts_with("containerd-shim"));
        return Some(match shim_reader {
            Some(h) => format!(
                "stuck writing into a full pipe that shim pid {} holds and does not read: the \
                 deadlock of containerd#4434; a sluice shim reads runc's pipes while runc runs",
                h.pid
            ),
            None => "stuck writing into a full pipe that nobody reads".to_string(),
        });
    }
    if wchan.contains("fifo_open") || wchan.contains("wait_for_partner") {
        return Some(
            "waiting for `runc start` on exec.fifo: the container was created but not started"
                .to_string(),
        );
    }
    None
}

/// runc processes in scope older than `threshold` seconds.
pub fn old_runc(
    host: &Host,
    procs: &ProcTable,
    pipes: &Pipes,
    scope: &Scope,
    threshold: f64,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for p in procs.iter() {
        if !is_runc(p) || p.is_zombie() || !scope.has_pid(p.pid) {
            continue;
        }
        let age = procs.age(host, p);
        if age < threshold {
            continue;
        }
        let mut call = parse_runc_argv(&p.argv);
        if lives_with_its_container(&call, &p.argv) {
            continue;
        }
        // `runc init` names no container; the runc that started it does.
        let parent = procs.get(p.ppid);
        if call.container_id.is_none() {
            if let Some(parent) = parent.filter(|q| is_runc(q)) {
                let pc = parse_runc_argv(&parent.argv);
                call.container_id = pc.container_id;
                call.root = call.root.or(pc.root);
                call.bundle = call.bundle.or(pc.bundle);
            }
        }
        let wchan = read_wchan(&host.proc_root, p.pid);
        let waiting_on_pipe = wchan.as_ref().is_some_and(|w| is_pipe_write_wait(&w.name));
        let blocked = if waiting_on_pipe {
            blocked_on(procs, pipes, p)
        } else {
            Vec::new()
        };
        out.push(Finding::OldRunc(OldRunc {
            pid: p.pid,
            comm: p.comm.clone(),
            argv: p.argv.clone(),
            state: p.state.to_string(),
            age_seconds: age as u64,
            hint: wchan.as_ref().and_then(|w| hint(&w.name, &blocked)),
            wchan: wchan.as_ref().map(|w| w.name.clone()),
            wchan_tid: wchan.as_ref().and_then(|w| w.tid),
            verb: call.verb,
            container_id: call.container_id,
            namespace: call.root.as_deref().and_then(namespace_of_root),
            root: call.root,
            bundle: call.bundle,
            cgroup: p.cgroup.clone(),
            parent: parent.map(|q| ProcBrief {
                pid: q.pid,
                program: q.program().to_string(),
            }),
            blocked_on: blocked,
        }));
    }
    out
}
