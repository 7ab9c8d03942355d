//! OOM notification of a container's memory controller, as an async stream of "an OOM kill
//! happened" with an end when the cgroup goes away.
//!
//! v1: an eventfd registered through `cgroup.event_control` for `memory.oom_control`, as
//! containerd's `cgroup1` `memoryEvent` and the Go shim's `oom/v1` epoller do. The kernel signals
//! it on each OOM of the cgroup and once more when the cgroup is removed; which of the two it was
//! is told by whether `memory.oom_control` still exists (`oom/v1` checks the cgroup's state).
//!
//! v2: inotify `IN_MODIFY` on `memory.events` (and `cgroup.events`, to end when the cgroup has
//! no process left), as `cgroup2` `EventChan` does; an event is reported when `oom_kill`
//! increases, which is when the Go shim's `oom/v2` watcher publishes `TaskOOM`. A kernel
//! without `oom_kill` in `memory.events` (before 4.13) is watched on `oom`.
//!
//! Both descriptors are non-blocking and driven by tokio's reactor, so waiting never blocks a
//! current-thread runtime. `next` is cancel safe: state changes only between awaits.

use std::{
    ffi::CString,
    fs::{File, OpenOptions},
    io::{self, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::{Path, PathBuf},
};

use tokio::io::{unix::AsyncFd, Interest};

use super::{parse, CgroupError};

/// Waits for OOM kills in one container's cgroup. Dropping it unregisters the notification.
#[derive(Debug)]
pub struct OomWatcher {
    pid: u32,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    V1 {
        eventfd: AsyncFd<File>,
        /// Exists as long as the cgroup does.
        oom_control: PathBuf,
        ended: bool,
    },
    V2 {
        inotify: AsyncFd<File>,
        memory_events: PathBuf,
        /// `cgroup.events`, when the kernel has it and it is watched.
        cgroup_events: Option<PathBuf>,
        /// The watch descriptor of `memory.events`.
        events_wd: i32,
        /// The OOM counter as last reported.
        last: u64,
        /// An increase seen while setting up, reported by the first `next`.
        pending: bool,
        ended: bool,
    },
}

impl OomWatcher {
    pub(super) fn v1(pid: u32, dir: &Path) -> Result<OomWatcher, CgroupError> {
        let oom_control = dir.join("memory.oom_control");
        let event_control = dir.join("cgroup.event_control");
        let os = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| CgroupError::Os {
                pid,
                action,
                path,
                source,
            }
        };
        need_runtime().map_err(os("watch", &oom_control))?;
        let eventfd = eventfd().map_err(os("create an eventfd for", &oom_control))?;
        let control = File::open(&oom_control).map_err(os("open", &oom_control))?;
        // `<eventfd> <fd of memory.oom_control>`: the kernel resolves both in this process's
        // table during the write; the control file may be closed afterwards.
        let line = format!("{} {}", eventfd.as_raw_fd(), control.as_raw_fd());
        OpenOptions::new()
            .write(true)
            .open(&event_control)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(os("register the OOM eventfd in", &event_control))?;
        drop(control);
        let eventfd = register(eventfd).map_err(os("watch", &oom_control))?;
        Ok(OomWatcher {
            pid,
            kind: Kind::V1 {
                eventfd,
                oom_control,
                ended: false,
            },
        })
    }

    pub(super) fn v2(pid: u32, dir: &Path) -> Result<OomWatcher, CgroupError> {
        let memory_events = dir.join("memory.events");
        let os = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| CgroupError::Os {
                pid,
                action,
                path,
                source,
            }
        };
        need_runtime().map_err(os("watch", &memory_events))?;
        if !memory_events.exists() {
            return Err(CgroupError::NoController {
                pid,
                controller: "memory",
                path: dir.to_path_buf(),
            });
        }
        // Read the counter before the watch exists and again after: an OOM kill in between shows
        // as a difference, and every later one raises an inotify event. Nothing is lost.
        let before = oom_count(&memory_events);
        let inotify = inotify_init().map_err(os("create an inotify for", &memory_events))?;
        let events_wd = add_watch(&inotify, &memory_events, libc::IN_MODIFY)
            .map_err(os("watch", &memory_events))?;
        let cgroup_events = {
            let path = dir.join("cgroup.events");
            match add_watch(&inotify, &path, libc::IN_MODIFY) {
                Ok(_) => Some(path),
                Err(e) => {
                    log::debug!("cgroup: not watching {}: {e}", path.display());
                    None
                }
            }
        };
        let after = oom_count(&memory_events).unwrap_or(0);
        let inotify = register(inotify).map_err(os("watch", &memory_events))?;
        Ok(OomWatcher {
            pid,
            kind: Kind::V2 {
                inotify,
                memory_events,
                cgroup_events,
                events_wd,
                last: after,
                pending: after > before.unwrap_or(after),
                ended: false,
            },
        })
    }

    /// Waits for the next OOM kill. `None` when the cgroup is gone (or, on v2, has no process
    /// left) and nothing more can come; also `None`, logged, if the descriptor fails. Once it has
    /// answered `None` it always does, at once.
    pub async fn next(&mut self) -> Option<()> {
        let pid = self.pid;
        match &mut self.kind {
            Kind::V1 {
                eventfd,
                oom_control,
                ended,
            } => loop {
                if *ended {
                    return None;
                }
                let mut guard = match eventfd.readable().await {
                    Ok(g) => g,
                    Err(e) => {
                        log::warn!("cgroup: OOM eventfd of pid {pid} failed: {e}");
                        *ended = true;
                        return None;
                    }
                };
                let mut count = [0u8; 8];
                match guard.try_io(|fd| fd.get_ref().read(&mut count)) {
                    Err(_would_block) => continue,
                    Ok(Err(e)) => {
                        log::warn!("cgroup: reading the OOM eventfd of pid {pid}: {e}");
                        *ended = true;
                        return None;
                    }
                    // Several OOMs between two reads add up in the counter; one report, as in Go.
                    Ok(Ok(_)) => {
                        *ended = !oom_control.exists();
                        return (!*ended).then_some(());
                    }
                }
            },
            Kind::V2 {
                inotify,
                memory_events,
                cgroup_events,
                events_wd,
                last,
                pending,
                ended,
            } => loop {
                if *pending {
                    *pending = false;
                    return Some(());
                }
                if *ended {
                    return None;
                }
                let mut guard = match inotify.readable().await {
                    Ok(g) => g,
                    Err(e) => {
                        log::warn!("cgroup: OOM inotify of pid {pid} failed: {e}");
                        *ended = true;
                        return None;
                    }
                };
                let mut buf = [0u8; 4096];
                let n = match guard.try_io(|fd| fd.get_ref().read(&mut buf)) {
                    Err(_would_block) => continue,
                    Ok(Err(e)) => {
                        log::warn!("cgroup: reading the OOM inotify of pid {pid}: {e}");
                        *ended = true;
                        return None;
                    }
                    Ok(Ok(n)) => n,
                };
                let watch_removed = inotify_events(&buf[..n])
                    .any(|(wd, mask)| wd == *events_wd && mask & libc::IN_IGNORED != 0);
                // Re-read on any event (a queue overflow included): the file is the truth.
                match oom_count(memory_events) {
                    Some(count) if count > *last => {
                        *last = count;
                        *pending = true;
                    }
                    Some(_) => {}
                    None => *ended = true,
                }
                if watch_removed || cgroup_events.as_deref().is_some_and(unpopulated) {
                    *ended = true;
                }
            },
        }
    }
}

impl OomWatcher {
    /// Whether an OOM kill happened that `next` has not reported yet, without waiting: the
    /// final read when the container's init exits, so that its OOM is told before its exit
    /// (containerd #12714). What it reports, `next` will not report again.
    pub fn check_now(&mut self) -> bool {
        match &mut self.kind {
            Kind::V1 { eventfd, ended, .. } => {
                if *ended {
                    return false;
                }
                let mut count = [0u8; 8];
                // Non-blocking: EAGAIN when the kernel signalled nothing since the last read.
                matches!(eventfd.get_ref().read(&mut count), Ok(8))
            }
            Kind::V2 {
                memory_events,
                last,
                pending,
                ..
            } => {
                let grew = match oom_count(memory_events) {
                    Some(count) if count > *last => {
                        *last = count;
                        true
                    }
                    _ => false,
                };
                std::mem::take(pending) || grew
            }
        }
    }
}

/// `oom_kill` of `memory.events`, or `oom` on a kernel without `oom_kill`; `None` if the file
/// cannot be read (the cgroup is gone).
fn oom_count(memory_events: &Path) -> Option<u64> {
    let kv = parse::flat_keyed(memory_events)?;
    Some(
        kv.get("oom_kill")
            .or_else(|| kv.get("oom"))
            .copied()
            .unwrap_or(0),
    )
}

/// `populated 0` in `cgroup.events`: no process left in the cgroup or below it.
fn unpopulated(cgroup_events: &Path) -> bool {
    parse::flat_keyed(cgroup_events).is_some_and(|kv| kv.get("populated") == Some(&0))
}

/// Registering with the reactor panics outside a runtime; say so as an error instead.
fn need_runtime() -> io::Result<()> {
    tokio::runtime::Handle::try_current()
        .map(drop)
        .map_err(|e| io::Error::other(format!("no tokio runtime: {e}")))
}

fn register(file: File) -> io::Result<AsyncFd<File>> {
    // SAFETY: the `File` owns its descriptor, stays inside the `AsyncFd` until that drops, and is
    // never swapped for another (`get_mut` is not used).
    unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }.map_err(io::Error::from)
}

fn eventfd() -> io::Result<File> {
    // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    owned(fd)
}

fn inotify_init() -> io::Result<File> {
    // SAFETY: inotify_init1 takes no pointers; a non-negative result is a new descriptor we own.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    owned(fd)
}

fn owned(fd: libc::c_int) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel to us and nothing else holds it.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn add_watch(inotify: &File, path: &Path, mask: u32) -> io::Result<i32> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    // SAFETY: the descriptor is open for the call and `c_path` is a valid C string that outlives it.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c_path.as_ptr(), mask) };
    if wd < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(wd)
    }
}

/// `(watch descriptor, mask)` of each `struct inotify_event` in a read buffer: a 16-byte header
/// (`wd`, `mask`, `cookie`, `len`) followed by `len` bytes of name.
fn inotify_events(buf: &[u8]) -> impl Iterator<Item = (i32, u32)> + '_ {
    let mut rest = buf;
    std::iter::from_fn(move || {
        let header = rest.get(..16)?;
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&header[i..i + 4]);
            b
        };
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let len = u32::from_ne_bytes(word(12)) as usize;
        rest = rest.get(16usize.saturating_add(len)..).unwrap_or_default();
        Some((wd, mask))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inotify_events_decodes_records_and_stops_at_a_short_tail() {
        let mut buf = Vec::new();
        for (wd, mask, name) in [
            (1i32, libc::IN_MODIFY, &b""[..]),
            (2, libc::IN_IGNORED, b"abcd"),
        ] {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&mask.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            buf.extend_from_slice(name);
        }
        buf.extend_from_slice(&[1, 2, 3]);
        let events: Vec<_> = inotify_events(&buf).collect();
        assert_eq!(events, vec![(1, libc::IN_MODIFY), (2, libc::IN_IGNORED)]);
    }
}
