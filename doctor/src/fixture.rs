//! Fixture trees for the doctor's unit tests: a `/proc` and a `/sys/fs/cgroup` in a tempdir, in
//! the formats the kernel writes, and a pipe probe that answers from a table.
//!
//! `fd/<n>` is a dangling symlink to `pipe:[inode]` exactly as readlink shows it on a live
//! system; `fdinfo/<n>` carries the `flags:` line in octal.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tempfile::TempDir;

use super::cli::Options;
use super::probe::{PipeProbe, PipeState};
use super::Host;

/// Boot time of every fixture (seconds since the epoch).
pub const BTIME: u64 = 1_700_000_000;
/// "Now" of every fixture: 10 000 s after boot.
pub const NOW: u64 = BTIME + 10_000;
pub const CLK_TCK: u64 = 100;
pub const PAGE: u64 = 4096;
/// `flags:` of a read end and a write end (`O_RDONLY`/`O_WRONLY` with `O_LARGEFILE`).
pub const RD: u32 = 0o100000;
pub const WR: u32 = 0o100001;

pub fn put(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().expect("fixture file has a parent")).expect("mkdir");
    fs::write(path, content).expect("write fixture file");
}

/// A fake process; `age` is seconds since it started.
#[derive(Clone, Debug)]
pub struct FakeProc {
    pub pid: i32,
    pub ppid: i32,
    pub comm: String,
    pub state: char,
    pub age: u64,
    pub uid: u32,
    pub argv: Vec<String>,
    /// `/proc/<pid>/cgroup` contents.
    pub cgroup: String,
    pub wchan: String,
    /// `(fd, pipe inode, fdinfo flags)`.
    pub fds: Vec<(i32, u64, u32)>,
    /// Other threads: `(tid, wchan)`.
    pub threads: Vec<(i32, String)>,
}

impl FakeProc {
    pub fn new(pid: i32, ppid: i32, argv: &[&str]) -> FakeProc {
        let comm = argv
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a))
            .unwrap_or("?")
            .chars()
            .take(15)
            .collect();
        FakeProc {
            pid,
            ppid,
            comm,
            state: 'S',
            age: 1000,
            uid: 0,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cgroup: "12:pids:/\n0::/\n".into(),
            wchan: "do_wait".into(),
            fds: Vec::new(),
            threads: Vec::new(),
        }
    }
    pub fn comm(mut self, c: &str) -> Self {
        self.comm = c.into();
        self
    }
    pub fn state(mut self, s: char) -> Self {
        self.state = s;
        self
    }
    pub fn age(mut self, secs: u64) -> Self {
        self.age = secs;
        self
    }
    pub fn uid(mut self, uid: u32) -> Self {
        self.uid = uid;
        self
    }
    pub fn cgroup(mut self, text: &str) -> Self {
        self.cgroup = text.into();
        self
    }
    pub fn wchan(mut self, w: &str) -> Self {
        self.wchan = w.into();
        self
    }
    pub fn fd(mut self, fd: i32, inode: u64, flags: u32) -> Self {
        self.fds.push((fd, inode, flags));
        self
    }
    pub fn thread(mut self, tid: i32, wchan: &str) -> Self {
        self.threads.push((tid, wchan.into()));
        self
    }
}

/// A proc root and a cgroup root in a tempdir.
pub struct Fixture {
    _dir: TempDir,
    pub proc: PathBuf,
    pub cgroup: PathBuf,
}

impl Fixture {
    /// A cgroup v1 host (`<cgroup>/pids`) with default sysctls (soft 16384, hard 0).
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let proc = dir.path().join("proc");
        let cgroup = dir.path().join("cgroup");
        put(
            &proc.join("stat"),
            &format!("cpu  1 2 3 4 5 6 7 8 9 10\nintr 1\nctxt 2\nbtime {BTIME}\nprocesses 3\n"),
        );
        fs::create_dir_all(cgroup.join("pids")).expect("mkdir pids");
        fs::create_dir_all(cgroup.join("memory")).expect("mkdir memory");
        let f = Fixture {
            _dir: dir,
            proc,
            cgroup,
        };
        f.sysctl(16384, 0);
        f
    }

    /// A cgroup v2 host: `cgroup.controllers` at the top of the cgroup root.
    pub fn new_v2() -> Fixture {
        let f = Fixture::new();
        fs::remove_dir_all(f.cgroup.join("pids")).expect("rm pids");
        fs::remove_dir_all(f.cgroup.join("memory")).expect("rm memory");
        put(
            &f.cgroup.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        f
    }

    pub fn sysctl(&self, soft: u64, hard: u64) {
        put(
            &self.proc.join("sys/fs/pipe-user-pages-soft"),
            &format!("{soft}\n"),
        );
        put(
            &self.proc.join("sys/fs/pipe-user-pages-hard"),
            &format!("{hard}\n"),
        );
    }

    pub fn add(&self, p: FakeProc) -> &Self {
        let d = self.proc.join(p.pid.to_string());
        let ticks = (NOW - BTIME - p.age) * CLK_TCK;
        // The real layout: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice threads itrealvalue starttime ...
        put(
            &d.join("stat"),
            &format!(
                "{} ({}) {} {} {} {} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 {} 0 {ticks} 1000000 \
                 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
                p.pid,
                p.comm,
                p.state,
                p.ppid,
                p.pid,
                p.pid,
                1 + p.threads.len()
            ),
        );
        let mut cmdline = Vec::new();
        for a in &p.argv {
            cmdline.extend_from_slice(a.as_bytes());
            cmdline.push(0);
        }
        fs::write(d.join("cmdline"), cmdline).expect("cmdline");
        put(
            &d.join("status"),
            &format!(
                "Name:\t{}\nState:\t{}\nPPid:\t{}\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t0\t0\t0\t0\n",
                p.comm,
                p.state,
                p.ppid,
                u = p.uid
            ),
        );
        put(&d.join("cgroup"), &p.cgroup);
        put(&d.join("wchan"), &p.wchan);
        fs::create_dir_all(d.join("fd")).expect("fd dir");
        fs::create_dir_all(d.join("fdinfo")).expect("fdinfo dir");
        for &(fd, inode, flags) in &p.fds {
            symlink(format!("pipe:[{inode}]"), d.join("fd").join(fd.to_string()))
                .expect("fd symlink");
            put(
                &d.join("fdinfo").join(fd.to_string()),
                &format!("pos:\t0\nflags:\t0{flags:o}\nmnt_id:\t15\nino:\t{inode}\n"),
            );
        }
        // Something that is not a pipe, as every process has.
        symlink("/dev/null", d.join("fd").join("99")).expect("fd symlink");
        put(
            &d.join("task").join(p.pid.to_string()).join("wchan"),
            &p.wchan,
        );
        for (tid, w) in &p.threads {
            put(&d.join("task").join(tid.to_string()).join("wchan"), w);
        }
        self
    }

    /// A cgroup with a pids limit; `hierarchy` is `pids` (v1) or `` (v2 at the top).
    pub fn pids_cgroup(&self, hierarchy: &str, path: &str, current: u64, max: &str) -> &Self {
        let mut d = self.cgroup.join(hierarchy);
        for part in path.split('/').filter(|p| !p.is_empty()) {
            d.push(part);
        }
        put(&d.join("pids.current"), &format!("{current}\n"));
        put(&d.join("pids.max"), &format!("{max}\n"));
        self
    }

    pub fn options(&self) -> Options {
        Options {
            proc_root: self.proc.clone(),
            cgroup_root: self.cgroup.clone(),
            ..Options::default()
        }
    }

    pub fn host<'a>(&self, probe: &'a FakeProbe) -> Host<'a> {
        Host {
            proc_root: self.proc.clone(),
            cgroup_root: self.cgroup.clone(),
            clk_tck: CLK_TCK,
            page_size: PAGE,
            now: NOW as f64,
            self_pid: None,
            probe,
            zombie_settle: Duration::ZERO,
        }
    }
}

/// Pipe sizes by inode; an inode not in the table cannot be measured.
#[derive(Default)]
pub struct FakeProbe {
    pub sizes: HashMap<u64, PipeState>,
}

impl FakeProbe {
    pub fn pipe(mut self, inode: u64, capacity: u64, unread: u64) -> Self {
        self.sizes.insert(
            inode,
            PipeState {
                capacity,
                unread: Some(unread),
            },
        );
        self
    }
}

impl PipeProbe for FakeProbe {
    fn probe(&self, proc_root: &Path, pid: i32, fd: i32, inode: u64) -> io::Result<PipeState> {
        // The real probe goes through the holder's descriptor; so does this one, to catch a
        // wrong (pid, fd) for the inode.
        let link = fs::read_link(
            proc_root
                .join(pid.to_string())
                .join("fd")
                .join(fd.to_string()),
        )?;
        if link != Path::new(&format!("pipe:[{inode}]")) {
            return Err(io::Error::other("descriptor is not that pipe"));
        }
        self.sizes
            .get(&inode)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}
