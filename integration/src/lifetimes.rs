//! When a program's processes began and ended, as the kernel saw it: the `sched_process_exec`
//! and `sched_process_exit` tracepoints, in a private tracefs instance, on CLOCK_MONOTONIC.
//!
//! The `share` workload uses it to time runc calls without the error a wrapper's own start-up
//! brings (a dynamically linked wrapper spends about 1 ms before it can read a clock, and its
//! calibration from another process is off by a few hundred µs per call): a call lasts from
//! the end of its `execve` to its exit, and everything around that is the caller's.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::time::{clock_gettime, ClockId};

const TRACEFS: &str = "/sys/kernel/tracing";

/// Now on CLOCK_MONOTONIC, in ns: the clock the instance's timestamps are on.
pub fn now_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// One process's life: the end of its first exec of the program, and its exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub exec_ns: u64,
    pub exit_ns: u64,
}

/// A tracefs instance watching one program's execs and exits. Removed when dropped.
pub struct Lifetimes {
    dir: PathBuf,
}

impl Lifetimes {
    /// Watches processes that exec `program` (an absolute path; its file name is the
    /// processes' `comm`). The program must not be multi-threaded: its exit is its one
    /// thread's.
    pub fn watch(instance: &str, program: &Path) -> Result<Lifetimes, String> {
        let root = Path::new(TRACEFS);
        if !root.join("instances").is_dir() {
            return Err(format!(
                "no tracefs at {TRACEFS} (mount -t tracefs nodev {TRACEFS})"
            ));
        }
        let dir = root.join("instances").join(instance);
        let _ = fs::remove_dir(&dir);
        fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let me = Lifetimes { dir };
        let comm: String = program
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(15).collect())
            .ok_or_else(|| format!("{}: no file name", program.display()))?;
        me.write("trace_clock", "mono")?;
        me.write(
            "events/sched/sched_process_exec/filter",
            &format!("filename == \"{}\"", program.display()),
        )?;
        me.write(
            "events/sched/sched_process_exit/filter",
            &format!("comm == \"{comm}\""),
        )?;
        me.write("events/sched/sched_process_exec/enable", "1")?;
        me.write("events/sched/sched_process_exit/enable", "1")?;
        me.write("tracing_on", "1")?;
        Ok(me)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let p = self.dir.join(file);
        fs::write(&p, value).map_err(|e| format!("write {value:?} to {}: {e}", p.display()))
    }

    /// Every process that exec'd the program and has exited since the last `clear`, by pid.
    pub fn read(&self) -> Result<HashMap<i32, Lifetime>, String> {
        let p = self.dir.join("trace");
        let text = fs::read_to_string(&p).map_err(|e| format!("read {}: {e}", p.display()))?;
        if text.contains("LOST") {
            return Err(format!("{}: events were lost", p.display()));
        }
        Ok(parse(&text))
    }

    /// Forgets what was recorded so far.
    pub fn clear(&self) -> Result<(), String> {
        self.write("trace", "")
    }
}

impl Drop for Lifetimes {
    fn drop(&mut self) {
        let _ = self.write("tracing_on", "0");
        let _ = self.write("events/sched/sched_process_exec/enable", "0");
        let _ = self.write("events/sched/sched_process_exit/enable", "0");
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Reads the instance's `trace` text: `<task>-<pid> [cpu] <flags> <secs>.<µs>: <event>: <fields>`.
fn parse(text: &str) -> HashMap<i32, Lifetime> {
    let mut execs: HashMap<i32, u64> = HashMap::new();
    let mut out = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((head, event)) = line.split_once(": sched_process_") else {
            continue;
        };
        let Some(ts) = head.rsplit(' ').next().and_then(micros_ns) else {
            continue;
        };
        let Some(pid) = field(event, "pid=").and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if event.starts_with("exec:") {
            execs.entry(pid).or_insert(ts);
        } else if event.starts_with("exit:") {
            if let Some(exec_ns) = execs.remove(&pid) {
                out.insert(
                    pid,
                    Lifetime {
                        exec_ns,
                        exit_ns: ts,
                    },
                );
            }
        }
    }
    out
}

/// `12345.678901:` as ns.
fn micros_ns(s: &str) -> Option<u64> {
    let s = s.trim_end_matches(':');
    let (secs, micros) = s.split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    let micros: u64 = micros.parse().ok()?;
    Some(secs * 1_000_000_000 + micros * 1_000)
}

/// The value of `name` (e.g. `pid=`) in an event's fields.
fn field<'a>(event: &'a str, name: &str) -> Option<&'a str> {
    event
        .split(' ')
        .find_map(|w| w.strip_prefix(name))
        .map(|v| v.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_each_exec_with_its_exit() {
        let text = "\
# tracer: nop
#
            runc-101     [001] .....  1000.000100: sched_process_exec: filename=/t/runc pid=101 old_pid=101
            runc-102     [000] .....  1000.000200: sched_process_exec: filename=/t/runc pid=102 old_pid=102
            runc-101     [001] .....  1000.002100: sched_process_exit: comm=runc pid=101 prio=120 group_dead=true
            runc-103     [001] .....  1000.003000: sched_process_exit: comm=runc pid=103 prio=120 group_dead=true
";
        let got = parse(text);
        assert_eq!(
            got.get(&101),
            Some(&Lifetime {
                exec_ns: 1_000_000_100_000,
                exit_ns: 1_000_002_100_000
            })
        );
        // 102 still runs; 103 exited without an exec seen: neither is a whole call.
        assert_eq!(got.len(), 1);
    }
}
