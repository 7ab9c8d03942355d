//! Owns every `waitpid` in the shim and routes each exit to whoever waits for that pid.
//!
//! The shim is a subreaper: runc, `runc init` orphans, container processes and loggers all end up
//! as its children, so one loop reaps them all with `waitpid(-1)` on SIGCHLD. Nothing else in the
//! shim may wait for a child (`Child::wait` would race this loop and lose the status).
//!
//! Invariants:
//! - A spawn that wants its exit registers under the same lock the router takes, so the exit of a
//!   child that dies at once cannot be routed before anyone listens ([`spawn_watched`]).
//! - An exit nobody waits for yet is kept (bounded) until someone asks for that pid: a container
//!   process can exit before runc has even told us its pid ([`watch`]).

use std::{
    collections::{HashMap, VecDeque},
    process::{Child, Command},
    sync::{Mutex, MutexGuard, OnceLock},
    time::SystemTime,
};

use log::{debug, warn};
use nix::{
    errno::Errno,
    sys::wait::{waitpid, WaitPidFlag, WaitStatus},
    unistd::Pid,
};
use tokio::sync::oneshot;

/// How many unclaimed exits are kept; orphans nobody asks about (grandchildren of runc hooks,
/// for example) must not grow the shim without bound.
const UNCLAIMED_CAP: usize = 4096;

/// A reaped child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// Exit code, or 128 + signal for a child killed by a signal, as runc shims report it.
    pub status: i32,
    pub at: SystemTime,
}

/// The exit of one pid, delivered once.
pub struct ExitWatch {
    pid: i32,
    rx: oneshot::Receiver<Exit>,
}

impl ExitWatch {
    /// Waits for the exit. Cancel-safe: dropping the future keeps nothing registered that
    /// matters (the router finds the receiver gone and drops the exit).
    pub async fn wait(self) -> Exit {
        match self.rx.await {
            Ok(exit) => exit,
            // The router never drops a registered sender without sending, so this is
            // unreachable in practice; report an unknown status rather than panicking.
            Err(_) => Exit {
                pid: self.pid,
                status: 255,
                at: SystemTime::now(),
            },
        }
    }
}

#[derive(Default)]
struct Routes {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    unclaimed: VecDeque<Exit>,
}

fn routes() -> MutexGuard<'static, Routes> {
    static ROUTES: OnceLock<Mutex<Routes>> = OnceLock::new();
    ROUTES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Routes {
    fn register(&mut self, pid: i32) -> ExitWatch {
        let (tx, rx) = oneshot::channel();
        if let Some(i) = self.unclaimed.iter().position(|e| e.pid == pid) {
            if let Some(exit) = self.unclaimed.remove(i) {
                let _ = tx.send(exit);
            }
        } else {
            self.waiters.insert(pid, tx);
        }
        ExitWatch { pid, rx }
    }

    fn route(&mut self, exit: Exit) {
        match self.waiters.remove(&exit.pid) {
            Some(tx) => {
                let _ = tx.send(exit);
            }
            None => {
                if self.unclaimed.len() >= UNCLAIMED_CAP {
                    self.unclaimed.pop_front();
                }
                self.unclaimed.push_back(exit);
            }
        }
    }
}

/// Spawns `cmd` and registers for its exit before the child can be reaped.
pub fn spawn_watched(cmd: &mut Command) -> std::io::Result<(Child, ExitWatch)> {
    let mut routes = routes();
    let child = cmd.spawn()?;
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    // A stale entry for a recycled pid would be a previous process's exit.
    routes.unclaimed.retain(|e| e.pid != pid);
    let watch = routes.register(pid);
    Ok((child, watch))
}

/// Registers for the exit of `pid`, a process the shim learned about after it was started
/// (a container's init or exec process). Returns at once if it has already been reaped.
pub fn watch(pid: i32) -> ExitWatch {
    routes().register(pid)
}

/// Reaps every exited child and routes the exits. Returns when nothing is left to reap.
pub fn reap_all() {
    loop {
        let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => Exit {
                pid: pid.as_raw(),
                status: code,
                at: SystemTime::now(),
            },
            Ok(WaitStatus::Signaled(pid, sig, _)) => Exit {
                pid: pid.as_raw(),
                status: 128 + sig as i32,
                at: SystemTime::now(),
            },
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(e) => {
                warn!("waitpid failed: {e}");
                return;
            }
        };
        debug!("reaped pid {} with status {}", exit.pid, exit.status);
        routes().route(exit);
    }
}

/// Starts the SIGCHLD loop on the current tokio runtime. Call once, before the first spawn.
pub fn start() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigchld = signal(SignalKind::child())?;
    tokio::spawn(async move {
        // Children that exited before the handler was installed.
        reap_all();
        while sigchld.recv().await.is_some() {
            reap_all();
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_before_watch_is_kept() {
        let mut r = Routes::default();
        let at = SystemTime::now();
        r.route(Exit {
            pid: 10,
            status: 3,
            at,
        });
        let w = r.register(10);
        let got = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(w.wait());
        assert_eq!(got.status, 3);
        assert!(r.unclaimed.is_empty());
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let mut r = Routes::default();
        for pid in 0..(UNCLAIMED_CAP as i32 + 10) {
            r.route(Exit {
                pid,
                status: 0,
                at: SystemTime::now(),
            });
        }
        assert_eq!(r.unclaimed.len(), UNCLAIMED_CAP);
        assert_eq!(r.unclaimed.front().map(|e| e.pid), Some(10));
    }
}
