//! One snapshot of the processes under the proc root: identity, state, age, owner, cgroup and
//! pipe descriptors, read the way the kernel writes them.
//!
//! A process that vanishes while it is read is simply left out; a process whose descriptors may
//! not be read (not root) is kept, without descriptors, and counted in a note so the report does
//! not claim more than it saw. Nothing here panics on what a file holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::{DoctorError, Host};

/// How a descriptor was opened (`flags:` of `fdinfo`, `O_ACCMODE`). In JSON as [`Access::as_str`]
/// spells it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    /// `fdinfo` could not be read.
    Unknown,
}

impl Access {
    pub fn from_flags(flags: u32) -> Access {
        match flags & libc::O_ACCMODE as u32 {
            x if x == libc::O_RDONLY as u32 => Access::Read,
            x if x == libc::O_WRONLY as u32 => Access::Write,
            x if x == libc::O_RDWR as u32 => Access::ReadWrite,
            _ => Access::Unknown,
        }
    }

    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read-write",
            Access::Unknown => "unknown",
        }
    }
}

/// A descriptor that is an anonymous pipe (`pipe:[inode]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipeFd {
    pub fd: i32,
    pub inode: u64,
    pub access: Access,
}

/// What the doctor knows about one process.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// `comm`, the kernel's 15-byte name (`runc:[2:INIT]`, `containerd-shim`).
    pub comm: String,
    /// `R S D Z T ...`
    pub state: char,
    /// Field 22 of `stat`: clock ticks after boot.
    pub start_ticks: u64,
    /// Real uid (`Uid:` of `status`): the user the kernel charges the pipes it creates to.
    pub uid: Option<u32>,
    pub argv: Vec<String>,
    /// The cgroup path most telling for a container: the `pids` controller's (v1), else the
    /// unified one (`0::`), else the first line's.
    pub cgroup: Option<String>,
    pub pipes: Vec<PipeFd>,
}

impl Proc {
    /// The program name: argv[0]'s last path component, or `comm` for a process without argv.
    pub fn program(&self) -> &str {
        self.argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .filter(|a| !a.is_empty())
            .unwrap_or(&self.comm)
    }

    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Cuts `s` to at most `max` characters, marking the cut.
pub fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
        out.push_str("...");
        out
    }
}

/// The fields of `<pid>/stat` the doctor uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub state: char,
    pub ppid: i32,
    pub start_ticks: u64,
}

/// Parses `<pid>/stat`. `comm` sits in parentheses and may itself contain spaces and `)`, so the
/// numeric fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field 22 (starttime) is rest[19].
    Some(Stat {
        comm,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

/// `Uid:\t<real>\t<effective>\t<saved>\t<fs>` of `<pid>/status`.
fn parse_real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Picks the cgroup path of `<pid>/cgroup` (`<id>:<controllers>:<path>` lines).
pub fn pick_cgroup(text: &str) -> Option<String> {
    let mut unified = None;
    let mut first = None;
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrl.split(',').any(|c| c == "pids") {
            return Some(path.to_string());
        }
        if id == "0" && ctrl.is_empty() {
            unified.get_or_insert_with(|| path.to_string());
        }
        first.get_or_insert_with(|| path.to_string());
    }
    unified.or(first)
}

/// `pipe:[184851]` → 184851.
pub fn pipe_inode(link: &str) -> Option<u64> {
    link.strip_prefix("pipe:[")?.strip_suffix(']')?.parse().ok()
}

/// `flags:\t0100001` of `fdinfo/<n>`, octal.
pub fn parse_fdinfo_flags(text: &str) -> Option<u32> {
    let v = text.lines().find_map(|l| l.strip_prefix("flags:"))?.trim();
    u32::from_str_radix(v, 8).ok()
}

/// Boot time in seconds since the epoch: `btime` of `<proc>/stat`.
pub fn read_btime(proc_root: &Path) -> Result<u64, DoctorError> {
    let path = proc_root.join("stat");
    let text = fs::read_to_string(&path).map_err(|source| DoctorError::Read {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(DoctorError::Malformed {
            path,
            what: "no `btime` line".into(),
        })
}

/// The processes under the proc root at one moment.
pub struct ProcTable {
    pub procs: BTreeMap<i32, Proc>,
    btime: u64,
    /// Processes whose `fd` directory could not be listed (permission).
    fds_denied: usize,
}

impl ProcTable {
    /// Reads every numeric entry of the proc root. Fails only if the root itself or its `stat`
    /// (boot time) cannot be read.
    pub fn load(host: &Host) -> Result<ProcTable, DoctorError> {
        let btime = read_btime(&host.proc_root)?;
        let entries = fs::read_dir(&host.proc_root).map_err(|source| DoctorError::Read {
            path: host.proc_root.clone(),
            source,
        })?;
        let mut procs = BTreeMap::new();
        let mut fds_denied = 0;
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if Some(pid) == host.self_pid {
                continue;
            }
            let dir = e.path();
            let Some(stat) = fs::read_to_string(dir.join("stat"))
                .ok()
                .and_then(|t| parse_stat(&t))
            else {
                continue; // gone, or not a process directory
            };
            let argv = fs::read(dir.join("cmdline"))
                .map(|raw| {
                    raw.split(|b| *b == 0)
                        .filter(|s| !s.is_empty())
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let (pipes, denied) = read_pipe_fds(&dir);
            fds_denied += usize::from(denied);
            procs.insert(
                pid,
                Proc {
                    pid,
                    ppid: stat.ppid,
                    comm: stat.comm,
                    state: stat.state,
                    start_ticks: stat.start_ticks,
                    uid: fs::read_to_string(dir.join("status"))
                        .ok()
                        .and_then(|s| parse_real_uid(&s)),
                    argv,
                    cgroup: fs::read_to_string(dir.join("cgroup"))
                        .ok()
                        .and_then(|t| pick_cgroup(&t)),
                    pipes,
                },
            );
        }
        Ok(ProcTable {
            procs,
            btime,
            fds_denied,
        })
    }

    pub fn get(&self, pid: i32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn contains(&self, pid: i32) -> bool {
        self.procs.contains_key(&pid)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    pub fn children(&self, pid: i32) -> impl Iterator<Item = &Proc> {
        self.procs.values().filter(move |p| p.ppid == pid)
    }

    /// `roots` and all their descendants.
    pub fn subtree(&self, roots: &[i32]) -> BTreeSet<i32> {
        let mut kids: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for p in self.procs.values() {
            kids.entry(p.ppid).or_default().push(p.pid);
        }
        let mut out = BTreeSet::new();
        let mut todo: Vec<i32> = roots.to_vec();
        while let Some(pid) = todo.pop() {
            if out.insert(pid) {
                todo.extend(kids.get(&pid).into_iter().flatten());
            }
        }
        out
    }

    /// Seconds since `p` started, from `btime` + start ticks against `now`; never negative.
    pub fn age(&self, host: &Host, p: &Proc) -> f64 {
        let started = self.btime as f64 + p.start_ticks as f64 / host.clk_tck as f64;
        (host.now - started).max(0.0)
    }

    pub fn notes(&self) -> Vec<String> {
        if self.fds_denied == 0 {
            return Vec::new();
        }
        vec![format!(
            "the descriptors of {} process(es) could not be read (run as root): their pipes are \
             not counted",
            self.fds_denied
        )]
    }
}

/// The pipe descriptors of the process at `dir`; `true` when the fd directory was not readable.
fn read_pipe_fds(dir: &Path) -> (Vec<PipeFd>, bool) {
    let entries = match fs::read_dir(dir.join("fd")) {
        Ok(e) => e,
        Err(e) => return (Vec::new(), e.kind() == io::ErrorKind::PermissionDenied),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let Some(fd) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Some(inode) = fs::read_link(e.path())
            .ok()
            .and_then(|l| l.to_str().and_then(pipe_inode))
        else {
            continue;
        };
        let access = fs::read_to_string(dir.join("fdinfo").join(fd.to_string()))
            .ok()
            .and_then(|t| parse_fdinfo_flags(&t))
            .map(Access::from_flags)
            .unwrap_or(Access::Unknown);
        out.push(PipeFd { fd, inode, access });
    }
    out.sort_by_key(|p| p.fd);
    (out, false)
}

/// What a process (or one of its threads) sleeps in, read when it matters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wchan {
    /// The kernel function, e.g. `pipe_write`, `anon_pipe_write`, `pipe_wait`; `0` when running
    /// or hidden.
    pub name: String,
    /// The thread, when it is not the main one (Go programs block in any thread).
    pub tid: Option<i32>,
}

/// True for the kernel functions a pipe writer sleeps in, by kernel version: `pipe_wait` (before
/// 5.6; also readers), `pipe_write` / `pipe_wait_writable`, `anon_pipe_write` (6.x).
pub fn is_pipe_write_wait(wchan: &str) -> bool {
    wchan.contains("pipe_write") || wchan == "pipe_wait" || wchan == "pipe_wait_writable"
}

/// The wchan of `pid`'s main thread, unless another thread sleeps in a pipe write: then that one.
pub fn read_wchan(proc_root: &Path, pid: i32) -> Option<Wchan> {
    let dir = proc_root.join(pid.to_string());
    let main = fs::read_to_string(dir.join("wchan"))
        .ok()
        .map(|w| w.trim().to_string());
    if main.as_deref().is_some_and(is_pipe_write_wait) {
        return main.map(|name| Wchan { name, tid: None });
    }
    let mut tids: Vec<i32> = fs::read_dir(dir.join("task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|t| *t != pid)
        .collect();
    tids.sort_unstable();
    for tid in tids {
        let path: PathBuf = dir.join("task").join(tid.to_string()).join("wchan");
        if let Ok(w) = fs::read_to_string(path) {
            let w = w.trim();
            if is_pipe_write_wait(w) {
                return Some(Wchan {
                    name: w.to_string(),
                    tid: Some(tid),
                });
            }
        }
    }
    main.map(|name| Wchan { name, tid: None })
}

/// Reads `pid`'s stat again (after a pause), e.g. to see whether a zombie is still there.
pub fn reread_stat(proc_root: &Path, pid: i32) -> Option<Stat> {
    fs::read_to_string(proc_root.join(pid.to_string()).join("stat"))
        .ok()
        .and_then(|t| parse_stat(&t))
}
