//! Finding, counting and killing this test's processes through /proc: who runs, what each holds
//! (descriptors, threads, memory).
//!
//! Processes are always picked by something unique to one test (its temp dir, its containerd
//! socket, its runc root, its cgroup), never by a program name, so parallel tests and anything
//! else on the machine are left alone.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cmd::poll;

/// A snapshot of one process.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub argv: Vec<String>,
    /// Where /proc/<pid>/exe points (empty for kernel threads, zombies or vanished processes).
    pub exe: PathBuf,
    /// Kernel function the process sleeps in, e.g. `pipe_write` (for diagnostics).
    pub wchan: String,
    /// The process's cgroup paths, one per hierarchy line of /proc/<pid>/cgroup.
    pub cgroups: Vec<String>,
}

impl ProcInfo {
    pub fn cmdline(&self) -> String {
        self.argv.join(" ")
    }

    /// True when the program (argv[0] or the executable) is called `name`.
    pub fn is_program(&self, name: &str) -> bool {
        let base = |p: &str| {
            Path::new(p)
                .file_name()
                .map(|f| f.to_string_lossy() == name)
        };
        self.argv.first().and_then(|a| base(a)).unwrap_or(false)
            || base(&self.exe.to_string_lossy()).unwrap_or(false)
    }

    /// True when `flag` is immediately followed by `value` in argv (e.g. `-address <sock>`).
    pub fn has_arg_pair(&self, flag: &str, value: &str) -> bool {
        self.argv.windows(2).any(|w| w[0] == flag && w[1] == value)
    }
}

fn read_proc(pid: i32) -> Option<ProcInfo> {
    let base = PathBuf::from(format!("/proc/{pid}"));
    let raw = fs::read(base.join("cmdline")).ok()?;
    let argv = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let stat = fs::read_to_string(base.join("stat")).ok()?;
    // The command name in stat may contain spaces and parentheses: parse after the last ')'.
    let ppid = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    Some(ProcInfo {
        pid,
        ppid,
        argv,
        exe: fs::read_link(base.join("exe")).unwrap_or_default(),
        wchan: fs::read_to_string(base.join("wchan")).unwrap_or_default(),
        cgroups: fs::read_to_string(base.join("cgroup"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
            .collect(),
    })
}

/// Every process on the machine except ourselves.
pub fn all() -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter_map(read_proc)
        .collect()
}

pub fn find(mut pred: impl FnMut(&ProcInfo) -> bool) -> Vec<ProcInfo> {
    all().into_iter().filter(|p| pred(p)).collect()
}

pub fn alive(pid: i32) -> bool {
    // A zombie has finished for our purposes: its parent (init, for shims) reaps it later.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next()),
            Some("Z") | Some("X")
        ),
        Err(_) => false,
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory effects; a stale pid just yields ESRCH.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// SIGKILLs `pids` and waits (bounded) until they are gone. Returns the ones still alive.
pub fn kill_all(pids: &[i32], timeout: Duration) -> Vec<i32> {
    for &pid in pids {
        signal(pid, libc::SIGKILL);
    }
    poll(timeout, || pids.iter().all(|&p| !alive(p)).then_some(()));
    pids.iter().copied().filter(|&p| alive(p)).collect()
}

// ---- descriptors, threads, memory ---------------------------------------------------------

/// How many descriptors `pid` holds (0 once it is gone).
pub fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(pid: i32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

/// `Threads:` of /proc/<pid>/status.
pub fn threads(pid: i32) -> u64 {
    status_field(pid, "Threads")
}

/// `VmRSS:` of /proc/<pid>/status, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    status_field(pid, "VmRSS")
}

/// `pid`'s descriptor numbers, in numeric order.
pub fn fds_of(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    v
}

/// `pid`'s descriptors as `<fd>-><target>`.
pub fn fd_targets(pid: u32) -> Vec<String> {
    fds_of(pid)
        .iter()
        .map(|fd| {
            let t = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
            format!("{fd}->{}", t.display())
        })
        .collect()
}

/// The inodes of `pid`'s sockets.
fn socket_inodes(pid: i32) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect()
}

/// How many of `pid`'s sockets are connected to the unix socket listening on `path`: the ends
/// the listener accepted name `path` as their own address in `ss -x`, and their peers' inodes
/// (/proc/net/unix has no peers). Panics when `ss` (iproute2) cannot run.
pub fn connections_to(pid: i32, path: &Path) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-x", "-n"])
        .output()
        .unwrap_or_else(|e| panic!("ss -x -n (iproute2): {e}"));
    assert!(out.status.success(), "ss -x -n: {out:?}");
    let ours = socket_inodes(pid);
    let path = path.to_string_lossy();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            // Netid State Recv-Q Send-Q Local-Address Port Peer-Address Port
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"ESTAB")
                && f.get(4) == Some(&path.as_ref())
                && f.get(7).is_some_and(|peer| ours.iter().any(|i| i == peer))
        })
        .count()
}

/// The paths of the unix sockets `pid` listens on (from its descriptors and /proc/net/unix).
pub fn listening_sockets(pid: i32) -> Vec<PathBuf> {
    const ACCEPTCON: u32 = 0x10000;
    let inodes = socket_inodes(pid);
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            // Num RefCount Protocol Flags Type St Inode Path
            let f: Vec<&str> = l.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let (inode, path) = (f.get(6)?, f.get(7)?);
            let ours = inodes.iter().any(|i| i == inode);
            (flags & ACCEPTCON != 0 && ours && path.starts_with('/')).then(|| PathBuf::from(path))
        })
        .collect()
}
