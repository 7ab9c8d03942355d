//! What the benchmark reads about shim processes from /proc: CPU time, memory, and a watcher
//! that follows the shim of one short-lived container until it exits.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sluice_integration::procs::{self, ProcInfo};
use sluice_integration::{Runtime, TestEnv};

/// Clock ticks per second, the unit of utime/stime in /proc/<pid>/stat.
pub fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime of the whole process (its threads, live and exited) in ticks; `None` once it is
/// gone or a zombie.
pub fn cpu_ticks(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    if matches!(rest.first(), Some(&"Z") | Some(&"X")) {
        return None;
    }
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The long-lived shim: not the transient `... start` / `... delete` invocations containerd
/// makes of the same binary.
fn long_lived(p: &ProcInfo) -> bool {
    !matches!(
        p.argv.last().map(String::as_str),
        Some("start") | Some("delete")
    )
}

/// The serving shim of container `id` in `env`, if it runs.
pub fn shim_of(env: &TestEnv, rt: Runtime, id: &str) -> Option<i32> {
    env.shims(rt)
        .into_iter()
        .find(|p| long_lived(p) && p.has_arg_pair("-id", id))
        .map(|p| p.pid)
}

/// Follows the shim of one container from its start to its exit and adds up its CPU time.
pub struct ShimWatch {
    done: Arc<AtomicBool>,
    handle: JoinHandle<Option<u64>>,
}

impl ShimWatch {
    /// Starts watching before the container is started, so no part of the shim's life is missed.
    pub fn start(env: &TestEnv, rt: Runtime, id: &str) -> ShimWatch {
        let sock = env.sock.display().to_string();
        let id = id.to_string();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let handle = thread::spawn(move || {
            let find = || {
                procs::find(|p| {
                    p.is_program(rt.shim_binary())
                        && p.has_arg_pair("-address", &sock)
                        && p.has_arg_pair("-id", &id)
                        && long_lived(p)
                })
                .first()
                .map(|p| p.pid)
            };
            // Scanning /proc is costly: often only until the shim is found.
            let pid = loop {
                if let Some(pid) = find() {
                    break pid;
                }
                if flag.load(Ordering::SeqCst) {
                    return None;
                }
                thread::sleep(Duration::from_millis(5));
            };
            let mut last = cpu_ticks(pid).unwrap_or(0);
            let mut finished_at: Option<Instant> = None;
            loop {
                match cpu_ticks(pid) {
                    Some(t) => last = t,
                    None => return Some(last),
                }
                if flag.load(Ordering::SeqCst) {
                    // ctr is done; the shim exits after the delete. Bounded, in case it lingers.
                    let at = *finished_at.get_or_insert_with(Instant::now);
                    if at.elapsed() > Duration::from_secs(10) {
                        return Some(last);
                    }
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        ShimWatch { done, handle }
    }

    /// Shim CPU seconds, once the container's ctr has exited; `None` if no shim was seen.
    pub fn finish(self) -> Option<f64> {
        self.done.store(true, Ordering::SeqCst);
        let ticks = self.handle.join().ok()??;
        Some(ticks as f64 / clk_tck())
    }
}
