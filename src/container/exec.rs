//! Execs: added, started with `runc exec`, signalled and deleted.

use std::{sync::Arc, time::SystemTime};

use log::{debug, warn};
use sluice_shim_proto::events::TaskEvent;

use super::{
    error::{ContainerError, Failure},
    lock,
    spec::exec_spec,
    stdio::run_with_io,
    transaction::{Outcome, Settle, Verb},
    Container, IO_DRAIN_LIMIT,
};
use crate::{
    cgroup::CgroupFs,
    io::StdioPaths,
    process::{ExitInfo, Kind, Op, Process},
    runc::files::{read_pid, Scratch},
};

type Result<T> = std::result::Result<T, ContainerError>;

impl Container {
    /// Registers an exec (not started); publishes TaskExecAdded.
    pub fn add_exec(&self, exec_id: &str, spec: Vec<u8>, stdio: StdioPaths) -> Result<()> {
        let what = format!("exec {exec_id} in container {}", self.id);
        let spec =
            exec_spec(&spec, stdio.terminal).map_err(|f| ContainerError::failed(&what, f))?;
        self.init
            .check(Op::Exec)
            .map_err(|r| ContainerError::refused(&what, r))?;
        {
            let mut execs = lock(&self.execs);
            if execs.contains_key(exec_id) {
                return Err(ContainerError::ExecExists {
                    container: self.id.clone(),
                    exec_id: exec_id.to_string(),
                });
            }
            let p = Process::new(
                exec_id.to_string(),
                self.id.clone(),
                Kind::Exec,
                stdio,
                spec,
            );
            execs.insert(exec_id.to_string(), Arc::new(p));
        }
        debug!("added exec {exec_id} to container {}", self.id);
        self.publisher.publish(TaskEvent::ExecAdded {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    /// `runc exec` with the exec's pipes already drained; publishes TaskExecStarted.
    pub(super) async fn start_exec(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let p = self.process(exec_id)?;
        let what = format!("start exec {exec_id} in container {}", self.id);
        self.init
            .check(Op::Exec)
            .map_err(|r| ContainerError::refused(&what, r))?;
        let verb = Verb::start_exec(&what);
        let step = async {
            self.warn_if_near_pids_max(exec_id);
            let pid = self.run_exec(&p, &what).await?;
            let started = TaskEvent::ExecStarted {
                container_id: self.id.clone(),
                exec_id: exec_id.to_string(),
                pid,
            };
            Ok(Outcome::new(pid, Settle::Running)
                .told(started)
                .watching(pid))
        };
        let pid = self.transact(&p, verb, step).await?;
        debug!(
            "started exec {exec_id} in container {} (pid {pid})",
            self.id
        );
        Ok(pid)
    }

    /// `runc exec` itself: the spec and pid files exist for the call only.
    async fn run_exec(&self, p: &Arc<Process>, what: &str) -> Result<u32> {
        let exec_id = p.id.as_str();
        let spec_file = Scratch::write(
            self.bundle.join(format!(".sluice-exec-{exec_id}.json")),
            &p.spec,
        )
        .map_err(|e| ContainerError::file(what, "write process spec", e))?;
        let pid_file = Scratch::named(self.bundle.join(format!(".sluice-exec-{exec_id}.pid")));
        let res = run_with_io(what, &p.label(), &p.stdio, &self.io_ctx, |rio| {
            self.runc.exec(
                &self.id,
                &self.bundle,
                spec_file.path(),
                pid_file.path(),
                rio,
            )
        })
        .await;
        drop(spec_file);
        match res {
            Ok(io) => p.set_io(io),
            Err(failed) => {
                // What the exec wrote before it failed still reaches the client.
                if let Some(io) = failed.io {
                    p.set_io(io);
                }
                return Err(failed.error);
            }
        }
        let pid = read_pid(pid_file.path()).map_err(|source| {
            let failure = Failure::NoPid {
                verb: "exec",
                in_file: None,
                source,
            };
            ContainerError::failed(what, failure)
        })?;
        p.set_pid(pid);
        Ok(pid)
    }

    /// An exec into a container at its `pids.max` makes `runc init` crash (the case study):
    /// say so before it happens.
    fn warn_if_near_pids_max(&self, exec_id: &str) {
        let Ok(cg) = CgroupFs::host().for_pid(self.init.pid()) else {
            return;
        };
        if let Some((current, Some(max))) = cg.pids() {
            // runc init needs a few threads of its own to start the exec.
            if current + 4 >= max {
                warn!(
                    "exec {exec_id} in container {}: {current} of pids.max {max} in use; \
                     runc init may fail to start its threads",
                    self.id
                );
            }
        }
    }

    /// Deletes an exec once its output is delivered; returns its pid and exit.
    pub async fn delete_exec(self: &Arc<Self>, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let p = self.process(exec_id)?;
        let what = format!("delete exec {exec_id} in container {}", self.id);
        let step = async {
            if let Some(io) = p.io() {
                if !io.wait_delivered(IO_DRAIN_LIMIT).await {
                    warn!(
                        "{}: output still open {IO_DRAIN_LIMIT:?} after the exit (a child \
                         holds it?); closing it for the client, draining it until the \
                         container is deleted",
                        p.label()
                    );
                }
                io.shutdown();
                if !io.finished() {
                    let mut lingering = lock(&self.lingering);
                    lingering.retain(|l| !l.finished());
                    lingering.push(io);
                }
            }
            lock(&self.execs).remove(exec_id);
            crate::memory::give_back();
            let exit = p.exit().unwrap_or(ExitInfo {
                status: 0,
                at: SystemTime::now(),
            });
            Ok(Outcome::new((p.pid(), exit), Settle::Unchanged))
        };
        self.delete_once(&p, &what, step).await
    }

    /// Signals an exec directly: it is our child's child, and runc knows only the init.
    pub(super) fn kill_exec(&self, p: &Process, what: &str, signal: u32) -> Result<()> {
        let failed = |f| ContainerError::failed(what, f);
        let pid = p.pid();
        if pid == 0 {
            return Err(failed(Failure::NotStarted));
        }
        // SAFETY: kill(2) with a pid and a validated signal number has no memory effects.
        let rc = unsafe { libc::kill(pid as i32, signal as i32) };
        if rc == 0 {
            return Ok(());
        }
        let source = std::io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::ESRCH) {
            Err(failed(Failure::AlreadyFinished))
        } else {
            Err(failed(Failure::Kill { pid, source }))
        }
    }
}
