//! A container: its init process, its execs, the runc calls that drive them, and the order in
//! which their exits are told to containerd.
//!
//! Read in this order: `transaction` (the one move every runc verb makes), `init` and `exec`
//! (the verbs), `exits` (how exits are told), `stdio` (IO around runc), `spec`, `error`.
//!
//! Locks here guard maps and counters only and are never held across runc or an `.await`:
//! a stuck runc call for one process leaves every other process of this and every other
//! container answering (DESIGN.md, invariant 6).

mod error;
mod exec;
mod exits;
mod init;
mod spec;
mod stdio;
mod transaction;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use containerd_shim::protos::{api::Mount, protobuf::well_known_types::any::Any};
use sluice_shim_proto::options::RuncOptions;

pub use error::{ContainerError, Failure};

use crate::{
    cgroup::CgroupFs,
    events::Publisher,
    io::{IoContext, ProcessIo, StdioPaths},
    process::{ExitInfo, Kind, Op, Process, Snapshot, State},
    runc::{files::Scratch, CheckpointArgs, CreateOpts, Runc},
};
use exits::{ExitOrder, OomWatch};

type Result<T> = std::result::Result<T, ContainerError>;

/// How long Delete waits for a process's output to reach containerd before closing it: the Go
/// shim's `waitTimeout(ctx, &wg, 2*time.Second)` in `process/exec.go` and `init.go`, on every
/// line. A child the process left behind may hold the pipe open for ever; the client gets EOF
/// after this, and the pipe is drained in the background (see `Container::lingering`).
const IO_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// The options of a container, kept in its bundle for the `delete` command.
pub const OPTIONS_FILE: &str = "options.json";

/// What the whole shim shares with each container.
#[derive(Clone)]
pub struct Env {
    pub namespace: String,
    pub publisher: Publisher,
    pub deadline: Duration,
    /// Where containerd keeps this namespace's bundles (`.../io.containerd.runtime.v2.task/<ns>`):
    /// a bundle elsewhere is refused. None: no check (tests).
    pub bundle_root: Option<PathBuf>,
}

/// A `Create` request, in the shim's terms.
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<Mount>,
    pub stdio: StdioPaths,
    pub checkpoint: String,
    pub options: RuncOptions,
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    runc: Runc,
    /// Where the shim mounted the rootfs, to unmount at delete.
    rootfs: Option<PathBuf>,
    /// Stdio settings every exec of this container shares.
    io_ctx: IoContext,
    init: Arc<Process>,
    /// Guarded: the exec map only; never held across runc.
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// Output of deleted execs whose pipes another process (a child they left behind) still
    /// holds open: drained and discarded until EOF, stopped at the latest with the container.
    lingering: Mutex<Vec<Arc<ProcessIo>>>,
    order: Mutex<ExitOrder>,
    publisher: Publisher,
    /// Publishes TaskOOM for this container's cgroup; stopped at delete.
    oom_watch: Mutex<Option<OomWatch>>,
    /// Set until Start restores the container from a checkpoint.
    restore: Mutex<Option<Restore>>,
    /// The container shares the host's (or another) pid namespace: its processes do not die
    /// with init, so they are killed when init exits (the Go shim's `ShouldKillAllOnExit`).
    kill_all_on_exit: bool,
}

struct Restore {
    args: CheckpointArgs,
    opts: CreateOpts,
}

/// What `State` tells about one process.
pub struct ProcessView {
    pub id: String,
    pub exec_id: String,
    pub bundle: String,
    pub snapshot: Snapshot,
    pub stdio: StdioPaths,
    pub exit: Option<ExitInfo>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Container {
    pub fn init_pid(&self) -> u32 {
        self.init.pid()
    }

    /// The init for an empty exec ID, else the exec.
    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        lock(&self.execs)
            .get(exec_id)
            .cloned()
            .ok_or_else(|| ContainerError::ExecNotFound {
                container: self.id.clone(),
                exec_id: exec_id.to_string(),
            })
    }

    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        if exec_id.is_empty() {
            self.start_init().await
        } else {
            self.start_exec(exec_id).await
        }
    }

    /// Sends `signal` to a process (or, for init with `all`, to every process in the container).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let p = self.process(exec_id)?;
        let what = match p.kind {
            Kind::Init => format!("kill container {}", self.id),
            Kind::Exec => format!("kill exec {exec_id} in container {}", self.id),
        };
        p.check(Op::Kill)
            .map_err(|r| ContainerError::refused(&what, r))?;
        if p.kind == Kind::Exec {
            return self.kill_exec(&p, &what, signal);
        }
        match self.runc.kill(&self.id, &self.bundle, signal, all).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_already_finished() => {
                Err(ContainerError::failed(what, Failure::AlreadyFinished))
            }
            Err(e) => Err(ContainerError::runc(what, e)),
        }
    }

    /// The container's cgroup metrics, as the `Any` containerd's `Stats` expects.
    pub fn stats(&self) -> Result<Any> {
        CgroupFs::host()
            .for_pid(self.init.pid())
            .and_then(|cg| cg.metrics_any())
            .map_err(|e| {
                ContainerError::failed(
                    format!("stats of container {}", self.id),
                    Failure::Cgroup(e),
                )
            })
    }

    /// `runc update` with OCI `LinuxResources` JSON.
    pub async fn update(&self, resources: &[u8]) -> Result<()> {
        let what = format!("update container {}", self.id);
        let file = Scratch::write(self.bundle.join(".sluice-update.json"), resources)
            .map_err(|e| ContainerError::file(&what, "write resources", e))?;
        self.runc
            .update(&self.id, &self.bundle, file.path())
            .await
            .map_err(|e| ContainerError::runc(what, e))
    }

    pub fn view(&self, exec_id: &str) -> Result<ProcessView> {
        let p = self.process(exec_id)?;
        Ok(ProcessView {
            id: self.id.clone(),
            exec_id: exec_id.to_string(),
            bundle: self.bundle.display().to_string(),
            snapshot: p.snapshot(),
            stdio: p.stdio.clone(),
            exit: p.exit(),
        })
    }

    pub async fn wait(&self, exec_id: &str) -> Result<ExitInfo> {
        let p = self.process(exec_id)?;
        Ok(p.wait().await)
    }

    /// As the Go shim (`process/exec_state.go`, `init_state.go`): a stopped process is refused,
    /// and a process without a console (no terminal, or not started yet) is left alone with OK.
    pub fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let p = self.process(exec_id)?;
        let what = format!("resize the terminal of {}", p.label());
        if let State::Stopped(_) = p.snapshot().state {
            return Err(ContainerError::failed(what, Failure::Stopped));
        }
        let Some(io) = p.io().filter(|_| p.stdio.terminal) else {
            return Ok(());
        };
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        io.resize(clamp(width), clamp(height))
            .map_err(|e| ContainerError::failed(what, Failure::Resize(e)))
    }

    pub fn close_stdin(&self, exec_id: &str) -> Result<()> {
        self.process(exec_id)?.close_stdin();
        Ok(())
    }

    /// The pids in the container, each with the exec ID it belongs to, if any.
    pub async fn pids(&self) -> Result<Vec<(u32, Option<String>)>> {
        let pids = self.runc.ps(&self.id, &self.bundle).await.map_err(|e| {
            ContainerError::runc(format!("list processes of container {}", self.id), e)
        })?;
        let execs: HashMap<u32, String> = lock(&self.execs)
            .values()
            .filter(|p| p.pid() != 0)
            .map(|p| (p.pid(), p.id.clone()))
            .collect();
        Ok(pids
            .into_iter()
            .map(|pid| (pid, execs.get(&pid).cloned()))
            .collect())
    }
}
