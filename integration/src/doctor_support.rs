//! Helpers for the `containerd-shim-sluice-v2 doctor` tests (`tests/doctor.rs`): running the
//! doctor with a deadline, reading its JSON, and creating the conditions it looks for (a process
//! holding shrunken pipes, a container at its `pids.max`).
//!
//! The JSON is read with serde into the doctor crate's report types (`sluice_doctor::report`),
//! the definitions that wrote it.

use std::fs::{self, File};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub use sluice_doctor::report::{
    Access, BlockedPipe, Finding, JsonReport, OldRunc, PidsNearMax, ShimTrouble, SmallPipe,
};

use crate::cmd::{self, CmdOutput};
use crate::system;

/// Deadline for one doctor run; it reads /proc and cgroupfs and takes milliseconds.
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `containerd-shim-sluice-v2 doctor <args>` (the binary under test) to completion.
/// Panics if it does not finish, or exits with anything but 0 (healthy) or 1 (findings).
pub fn doctor(args: &[&str]) -> CmdOutput {
    let mut c = Command::new(system::sluice_shim_bin());
    c.arg("doctor").args(args);
    let out = cmd::run(c, None, DOCTOR_TIMEOUT);
    assert!(
        matches!(out.code(), Some(0) | Some(1)),
        "the doctor itself failed (exit 2 means bad flags or /proc unreadable):\n{out}"
    );
    out
}

/// Prints one doctor run, so `--nocapture` shows a sample of each condition.
pub fn show(title: &str, out: &CmdOutput) {
    eprintln!(
        "\n----- doctor sample: {title} -----\n$ {} (exit {})\n{}{}----- end of sample -----",
        out.argv.join(" "),
        out.code().map(|c| c.to_string()).unwrap_or("?".into()),
        out.stdout_str(),
        out.stderr_str()
    );
}

/// Runs the doctor with `--json` added and reads its report into the doctor's own types, so a
/// missing key or a wrong type fails here.
pub fn doctor_json(args: &[&str]) -> (CmdOutput, JsonReport) {
    let mut a = args.to_vec();
    a.push("--json");
    let out = doctor(&a);
    let report = serde_json::from_str(&out.stdout_str())
        .unwrap_or_else(|e| panic!("doctor --json printed no report ({e}):\n{out}"));
    (out, report)
}

/// The `small_pipe` findings of a report.
pub fn small_pipes(r: &JsonReport) -> Vec<&SmallPipe> {
    r.findings
        .iter()
        .filter_map(|f| match f {
            Finding::SmallPipe(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// The `old_runc` findings of a report.
pub fn old_runcs(r: &JsonReport) -> Vec<&OldRunc> {
    r.findings
        .iter()
        .filter_map(|f| match f {
            Finding::OldRunc(o) => Some(o),
            _ => None,
        })
        .collect()
}

/// The `pids_near_max` findings of a report.
pub fn pids_near_max(r: &JsonReport) -> Vec<&PidsNearMax> {
    r.findings
        .iter()
        .filter_map(|f| match f {
            Finding::PidsNearMax(c) => Some(c),
            _ => None,
        })
        .collect()
}

/// The `shim_runc_child` findings of a report.
pub fn shim_runc_children(r: &JsonReport) -> Vec<&ShimTrouble> {
    r.findings
        .iter()
        .filter_map(|f| match f {
            Finding::ShimRuncChild(t) => Some(t),
            _ => None,
        })
        .collect()
}

// ---- conditions --------------------------------------------------------------------------

/// A `sleep` holding two pipes that were shrunk with `F_SETPIPE_SZ` (the case study's small
/// pipes, made on purpose): pipe 0 with both ends (fd 0 read, fd 1 write) and pipe 1's write end
/// (fd 2). Killed and reaped on drop.
pub struct PipeHolder {
    child: Child,
    pub pid: i32,
    /// The inodes of pipe 0 and pipe 1 (`pipe:[inode]`).
    pub inodes: [u64; 2],
    /// Their capacity in bytes.
    pub capacity: i32,
}

/// One pipe: (read end, write end), close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl PipeHolder {
    /// `size`: bytes to shrink both pipes to (`F_SETPIPE_SZ`), or `None` for the default.
    pub fn spawn(size: Option<i32>) -> PipeHolder {
        let sleep = system::which("sleep").expect("`sleep` (coreutils) not found");
        let (r0, w0) = pipe();
        let (r1, w1) = pipe();
        let mut capacity = 0;
        for f in [&w0, &w1] {
            use std::os::fd::AsRawFd;
            if let Some(size) = size {
                // SAFETY: fcntl on our own pipe descriptor.
                let got = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
                assert_eq!(
                    got,
                    size,
                    "F_SETPIPE_SZ {size}: {}",
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: as above.
            capacity = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        let inodes = [
            r0.metadata().expect("fstat pipe 0").ino(),
            r1.metadata().expect("fstat pipe 1").ino(),
        ];
        drop(r1); // nobody reads pipe 1; sleep never writes
        let child = Command::new(sleep)
            .arg("1000")
            .stdin(Stdio::from(r0))
            .stdout(Stdio::from(w0))
            .stderr(Stdio::from(w1))
            .spawn()
            .expect("spawn sleep with the pipes");
        PipeHolder {
            pid: child.id() as i32,
            child,
            inodes,
            capacity,
        }
    }
}

impl Drop for PipeHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of `pid`'s pids cgroup: `/sys/fs/cgroup/pids/<path>` on a v1 (or hybrid) host,
/// `/sys/fs/cgroup/<path>` on a v2 host; and the cgroup path itself.
pub fn pids_cgroup_of(pid: i32) -> (PathBuf, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let root = Path::new("/sys/fs/cgroup");
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrl.split(',').any(|c| c == "pids") {
            return (
                root.join("pids").join(path.trim_start_matches('/')),
                path.to_string(),
            );
        }
        if ctrl.is_empty() && root.join("cgroup.controllers").is_file() {
            return (root.join(path.trim_start_matches('/')), path.to_string());
        }
    }
    panic!("pid {pid} is in no pids cgroup:\n{text}");
}

/// Sets a cgroup's `pids.max` and puts `max` back on drop (so teardown's kills and deletes never
/// meet the limit).
pub struct PidsMax {
    dir: PathBuf,
}

impl PidsMax {
    pub fn set(dir: &Path, max: u64) -> PidsMax {
        let file = dir.join("pids.max");
        fs::write(&file, format!("{max}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        PidsMax {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for PidsMax {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("pids.max"), "max\n");
    }
}

/// `pids.current` of a cgroup directory.
pub fn pids_current(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}
