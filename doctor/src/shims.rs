//! Shims (sluice's or containerd's stock ones) that need a look.
//!
//! Two signs, both about the shim's children:
//!
//! - a `runc` child older than the threshold: an exec or create in flight that does not return.
//!   With the stock shim this is the case study: the shim waits for runc to exit before it reads
//!   runc's pipes, and meanwhile `kill` and `delete` of the container wait on the shim too.
//! - a zombie child older than the threshold: the shim (a subreaper) has not collected an exit,
//!   so whoever waits for that process never hears of it. A zombie's death time is not recorded,
//!   so its age is the age of the process; to keep a zombie that is about to be reaped out of the
//!   report, a zombie counts only if it is still there after [`Host::zombie_settle`].
//!
//! A shim is a process whose argv[0] (or `comm`) starts with `containerd-shim`; the doctor
//! itself (`containerd-shim-sluice-v2 doctor`) is never one.

use std::collections::BTreeSet;

use super::procfs::{read_wchan, reread_stat, Proc, ProcTable};
use super::report::{Finding, ShimChild, ShimRef, ShimTrouble};
use super::runc::{is_runc, parse_runc_argv};
use super::{Host, Scope};

pub fn is_shim(p: &Proc) -> bool {
    (p.program().starts_with("containerd-shim") || p.comm.starts_with("containerd-shim"))
        && p.argv.get(1).map(String::as_str) != Some("doctor")
}

/// The value of Go flag `name` (`-name v`, `--name v`, `-name=v`).
fn go_flag(argv: &[String], name: &str) -> Option<String> {
    let mut it = argv.iter().skip(1);
    while let Some(a) = it.next() {
        let Some(f) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        if f == name {
            return it.next().cloned();
        }
        if let Some(v) = f.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
            return Some(v.to_string());
        }
    }
    None
}

fn shim_ref(p: &Proc) -> ShimRef {
    ShimRef {
        pid: p.pid,
        program: p.program().to_string(),
        namespace: go_flag(&p.argv, "namespace"),
        id: go_flag(&p.argv, "id"),
    }
}

fn child(host: &Host, procs: &ProcTable, c: &Proc) -> ShimChild {
    let call = is_runc(c).then(|| parse_runc_argv(&c.argv));
    ShimChild {
        pid: c.pid,
        comm: c.comm.clone(),
        argv: c.argv.clone(),
        state: c.state.to_string(),
        age_seconds: procs.age(host, c) as u64,
        wchan: if c.is_zombie() {
            None
        } else {
            read_wchan(&host.proc_root, c.pid).map(|w| w.name)
        },
        verb: call.as_ref().and_then(|r| r.verb.clone()),
        container_id: call.and_then(|r| r.container_id),
    }
}

/// Shims in scope with an old runc child or an old unreaped child.
pub fn trouble(host: &Host, procs: &ProcTable, scope: &Scope, threshold: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut zombies: Vec<(&Proc, &Proc)> = Vec::new();
    for shim in procs.iter().filter(|p| is_shim(p) && scope.has_pid(p.pid)) {
        for c in procs.children(shim.pid) {
            if procs.age(host, c) < threshold {
                continue;
            }
            if c.is_zombie() {
                zombies.push((shim, c));
            } else if is_runc(c) {
                out.push(Finding::ShimRuncChild(ShimTrouble {
                    shim: shim_ref(shim),
                    child: child(host, procs, c),
                }));
            }
        }
    }
    if zombies.is_empty() {
        return out;
    }
    // One pause for all of them, then keep those that are still the same unreaped process.
    std::thread::sleep(host.zombie_settle);
    let still: BTreeSet<i32> = zombies
        .iter()
        .filter(|(shim, z)| {
            reread_stat(&host.proc_root, z.pid).is_some_and(|s| {
                s.state == 'Z' && s.ppid == shim.pid && s.start_ticks == z.start_ticks
            })
        })
        .map(|(_, z)| z.pid)
        .collect();
    for (shim, z) in zombies {
        if still.contains(&z.pid) {
            out.push(Finding::ShimZombieChild(ShimTrouble {
                shim: shim_ref(shim),
                child: child(host, procs, z),
            }));
        }
    }
    out
}
