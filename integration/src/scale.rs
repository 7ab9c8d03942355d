//! What idle containers cost a node (issue 14): `n` idle `sleep` containers, one shim each or
//! all in one group (as a pod's containers share one shim), and what their shims hold and burn
//! while nothing happens: total PSS (`/proc/<pid>/smaps_rollup`), threads, CPU over a quiet
//! window, and connections to containerd.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::TestEnv;
use crate::Runtime;

/// How the containers are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One shim per container (plain `ctr run`, a pod sandbox per container).
    ShimEach,
    /// One shim for all (`io.containerd.runc.v2.group`, as the CRI plugin groups a pod).
    Grouped,
}

/// The shims' totals over the window.
#[derive(Clone, Debug, Default)]
pub struct Idle {
    pub containers: usize,
    pub shims: usize,
    pub pss_kib: u64,
    pub threads: u64,
    /// utime + stime of all shims over the window, in milliseconds, scaled to one minute.
    pub cpu_ms_per_min: f64,
    /// The shims' connections to containerd's ttrpc socket (each one is a socket and
    /// goroutines in containerd too).
    pub connections: usize,
}

fn pss_kib(pid: i32) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    get(11) + get(12)
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Starts `n` idle containers under `env`'s runtime, lets them settle for `settle` (idle
/// worker threads retire: Go's after a few seconds, tokio's after ten), measures over `window`,
/// and removes them again.
pub fn idle(env: &TestEnv, n: usize, layout: Layout, settle: Duration, window: Duration) -> Idle {
    let rt: Runtime = env.runtime;
    let group = "io.containerd.runc.v2.group=scale";
    let ids: Vec<String> = (0..n).map(|i| format!("idle{i}")).collect();
    for id in &ids {
        let ann: &[&str] = match layout {
            Layout::ShimEach => &[],
            Layout::Grouped => &[group],
        };
        env.run_detached(id, ann, &["sleep", "100000"]);
    }
    for id in &ids {
        env.wait_task_status(id, "RUNNING", Duration::from_secs(60));
    }
    std::thread::sleep(settle);
    let shims: Vec<i32> = env.shims(rt).iter().map(|p| p.pid).collect();
    let before: u64 = shims.iter().map(|&p| cpu_ticks(p)).sum();
    let t = Instant::now();
    std::thread::sleep(window);
    let ticks = shims
        .iter()
        .map(|&p| cpu_ticks(p))
        .sum::<u64>()
        .saturating_sub(before);
    let secs = t.elapsed().as_secs_f64();
    let out = Idle {
        containers: n,
        shims: shims.len(),
        pss_kib: shims.iter().map(|&p| pss_kib(p)).sum(),
        threads: shims.iter().map(|&p| crate::procs::threads(p)).sum(),
        cpu_ms_per_min: ticks as f64 * 1000.0 / ticks_per_second() as f64 * 60.0 / secs,
        connections: {
            let ttrpc = std::path::PathBuf::from(format!("{}.ttrpc", env.sock.display()));
            shims
                .iter()
                .map(|&p| crate::procs::connections_to(p, &ttrpc))
                .sum()
        },
    };
    for id in &ids {
        crate::containers::kill_and_delete(env, id);
    }
    out
}
