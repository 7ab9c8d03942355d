//! One container process, init or exec: its state, pid, exit and stdio.
//!
//! The state sits behind a short-lived lock that is never held across runc or IO; waiters for
//! the exit use a watch channel, so `Wait` never blocks any other call.

pub mod state;

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

pub use state::{ExitInfo, Op, Refusal, State};

use crate::io::{ProcessIo, StdioPaths};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Init,
    Exec,
}

pub struct Process {
    /// The exec ID, or the container ID for the init process.
    pub id: String,
    pub container_id: String,
    pub kind: Kind,
    pub stdio: StdioPaths,
    /// Exec only: the OCI process spec as JSON.
    pub spec: Vec<u8>,
    inner: Mutex<Inner>,
    exited: watch::Sender<Option<ExitInfo>>,
    /// How deletes of this process ended: a count of failed ones, and the answer of the one
    /// that succeeded. A Delete that finds the process being deleted (containerd gave up on
    /// the first and asks again) waits here and answers what the first answered.
    deletes: watch::Sender<(u64, Option<(u32, ExitInfo)>)>,
}

struct Inner {
    state: State,
    pid: u32,
    io: Option<Arc<ProcessIo>>,
    /// CloseIO came before the process had its stdio: close stdin as soon as it does.
    stdin_closed: bool,
}

/// What `State` reports about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub state: State,
    pub pid: u32,
}

impl Process {
    pub fn new(
        id: String,
        container_id: String,
        kind: Kind,
        stdio: StdioPaths,
        spec: Vec<u8>,
    ) -> Process {
        Process {
            id,
            container_id,
            kind,
            stdio,
            spec,
            inner: Mutex::new(Inner {
                state: State::Created,
                pid: 0,
                io: None,
                stdin_closed: false,
            }),
            exited: watch::channel(None).0,
            deletes: watch::channel((0, None)).0,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Names this process in logs and errors: `container` or `container/exec`.
    pub fn label(&self) -> String {
        match self.kind {
            Kind::Init => self.container_id.clone(),
            Kind::Exec => format!("{}/{}", self.container_id, self.id),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let i = self.inner();
        Snapshot {
            state: i.state,
            pid: i.pid,
        }
    }

    pub fn pid(&self) -> u32 {
        self.inner().pid
    }

    pub fn check(&self, op: Op) -> Result<(), Refusal> {
        self.inner().state.check(op)
    }

    /// Checks `op` and moves to the transitional state `next` in one step; returns the state
    /// it left, for [`Process::restore`] if the operation fails.
    pub fn begin(&self, op: Op, next: State) -> Result<State, Refusal> {
        let mut i = self.inner();
        i.state.check(op)?;
        Ok(std::mem::replace(&mut i.state, next))
    }

    /// Undoes [`Process::begin`], unless the process exited meanwhile.
    pub fn restore(&self, prev: State) {
        let mut i = self.inner();
        if !matches!(i.state, State::Stopped(_)) {
            i.state = prev;
        }
    }

    pub fn set_pid(&self, pid: u32) {
        self.inner().pid = pid;
    }

    /// Moves to `next` after a successful runc call, unless the process exited meanwhile.
    pub fn settle(&self, next: State) {
        let mut i = self.inner();
        if !matches!(i.state, State::Stopped(_)) {
            i.state = next;
        }
    }

    /// runc start/exec returned: running, unless the exit was already seen.
    pub fn set_running(&self) {
        let mut i = self.inner();
        if !matches!(i.state, State::Stopped(_)) {
            i.state = State::Running;
        }
    }

    /// The process has exited: record it and wake every waiter.
    pub fn set_exited(&self, exit: ExitInfo) {
        {
            let mut i = self.inner();
            if i.state != State::Deleting {
                i.state = State::Stopped(exit);
            }
        }
        self.exited.send_replace(Some(exit));
    }

    pub fn exit(&self) -> Option<ExitInfo> {
        *self.exited.borrow()
    }

    pub async fn wait(&self) -> ExitInfo {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(e) = *rx.borrow_and_update() {
                return e;
            }
            if rx.changed().await.is_err() {
                // The sender lives in `self`, so this cannot happen while we are borrowed.
                continue;
            }
        }
    }

    /// A delete of this process succeeded with this answer (the process stays "being deleted").
    pub fn set_deleted(&self, pid: u32, exit: ExitInfo) {
        self.deletes.send_modify(|d| d.1 = Some((pid, exit)));
    }

    /// A delete of this process failed (its state was restored): wake those waiting for it.
    pub fn delete_failed(&self) {
        self.deletes.send_modify(|d| d.0 += 1);
    }

    /// Waits for the delete under way, if any, to end: its answer if it succeeded, `None` if
    /// it failed or none was under way (the caller then deletes itself).
    pub async fn delete_under_way(&self) -> Option<(u32, ExitInfo)> {
        let mut rx = self.deletes.subscribe();
        let failures = rx.borrow_and_update().0;
        loop {
            let (failed, done) = *rx.borrow_and_update();
            if done.is_some() {
                return done;
            }
            if failed != failures || self.inner().state != State::Deleting {
                return None;
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    }

    pub fn set_io(&self, io: Arc<ProcessIo>) {
        let mut i = self.inner();
        if i.stdin_closed {
            io.close_stdin();
        }
        i.io = Some(io);
    }

    /// CloseIO: close stdin now, or as soon as the process has its stdio.
    pub fn close_stdin(&self) {
        let mut i = self.inner();
        i.stdin_closed = true;
        if let Some(io) = &i.io {
            io.close_stdin();
        }
    }

    pub fn io(&self) -> Option<Arc<ProcessIo>> {
        self.inner().io.clone()
    }
}
