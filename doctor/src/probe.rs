//! Measuring a pipe that another process holds: its capacity (`F_GETPIPE_SZ`) and how much sits
//! unread in it (`FIONREAD`).
//!
//! Behind a trait so the checks run on fixture trees, where `fd/<n>` is a dangling symlink and
//! the sizes come from the test.
//!
//! On the live system the holder's descriptor is duplicated with `pidfd_getfd` (Linux 5.6): the
//! same open file description, so the pipe's reader and writer counts do not change and nothing
//! is woken. Where that is not available (older kernel, a proc root of another pid namespace) the
//! descriptor is opened through `/proc/<pid>/fd/<n>` read-only and non-blocking: a new open file
//! description of the same pipe that adds a reader for a moment, never a writer, so it cannot keep
//! anybody from seeing EOF. Either way the result is checked against the inode the symlink named,
//! since the descriptor number may have been reused in between.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// A pipe's size and fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PipeState {
    /// Bytes the pipe can hold (`F_GETPIPE_SZ`).
    pub capacity: u64,
    /// Bytes written and not yet read (`FIONREAD`); `None` if that could not be asked.
    pub unread: Option<u64>,
}

/// Measures the pipe `inode` that process `pid` holds as descriptor `fd`.
pub trait PipeProbe {
    fn probe(&self, proc_root: &Path, pid: i32, fd: i32, inode: u64) -> io::Result<PipeState>;
}

/// The live system's probe.
pub struct SysPipeProbe {
    /// `pidfd_getfd` only makes sense when the proc root shows our own pid namespace.
    use_pidfd: bool,
}

impl SysPipeProbe {
    pub fn new(proc_root: &Path) -> SysPipeProbe {
        SysPipeProbe {
            use_pidfd: proc_root == Path::new("/proc"),
        }
    }
}

impl PipeProbe for SysPipeProbe {
    fn probe(&self, proc_root: &Path, pid: i32, fd: i32, inode: u64) -> io::Result<PipeState> {
        let file = match self.use_pidfd.then(|| dup_from(pid, fd)) {
            Some(Ok(f)) => f,
            _ => open_via_proc(proc_root, pid, fd)?,
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_fifo() || meta.ino() != inode {
            return Err(io::Error::other(format!(
                "fd {fd} of pid {pid} is no longer pipe:[{inode}]"
            )));
        }
        // SAFETY: fcntl on a descriptor we own; F_GETPIPE_SZ takes no argument.
        let capacity = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETPIPE_SZ) };
        if capacity < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut unread: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points at `unread`.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::FIONREAD, &mut unread) };
        Ok(PipeState {
            capacity: capacity as u64,
            unread: (rc == 0).then_some(unread.max(0) as u64),
        })
    }
}

/// `pidfd_getfd(pidfd_open(pid), fd)`: a duplicate of the holder's own open file description.
fn dup_from(pid: i32, fd: i32) -> io::Result<File> {
    // SAFETY: plain syscalls with integer arguments; a returned descriptor is ours to own.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if pidfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pidfd was just returned by the kernel and is owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: as above.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup is a new descriptor (with O_CLOEXEC) owned by nobody else.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(dup as i32) }))
}

/// Opens `<proc_root>/<pid>/fd/<fd>` read-only and non-blocking (never blocks, never a writer).
fn open_via_proc(proc_root: &Path, pid: i32, fd: i32) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(
            proc_root
                .join(pid.to_string())
                .join("fd")
                .join(fd.to_string()),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The live probe on our own pipes: capacity, fill, and the shrunken one-page pipe of the
    /// case study. Needs no root: a process may inspect its own descriptors.
    #[test]
    fn measures_own_pipes() {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills the two-element array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: both descriptors were just created and are owned here only.
        let (r, w) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let inode = r.metadata().expect("fstat").ino();
        let me = std::process::id() as i32;
        let probe = SysPipeProbe::new(Path::new("/proc"));
        let st = probe
            .probe(Path::new("/proc"), me, fds[1], inode)
            .expect("probe the write end");
        assert_eq!(st.capacity, 65536);
        assert_eq!(st.unread, Some(0));

        (&w).write_all(b"hello").expect("write");
        // SAFETY: fcntl on our own pipe.
        assert_eq!(
            unsafe { libc::fcntl(fds[0], libc::F_SETPIPE_SZ, 4096) },
            4096
        );
        // Through /proc rather than pidfd_getfd, as on an older kernel.
        let by_path = SysPipeProbe { use_pidfd: false };
        let st = by_path
            .probe(Path::new("/proc"), me, fds[0], inode)
            .expect("probe the read end through /proc");
        assert_eq!(
            st,
            PipeState {
                capacity: 4096,
                unread: Some(5)
            }
        );
        // A wrong inode (the descriptor was reused) is refused rather than misreported.
        assert!(probe
            .probe(Path::new("/proc"), me, fds[0], inode + 1)
            .is_err());
        drop((r, w));
    }
}
