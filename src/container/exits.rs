//! How a container's exits (and OOM kills) are told: an exec's when it exits, the init's only
//! after every running exec's, each once its output has reached the reader.

use std::{sync::Arc, time::Duration};

use log::{debug, info, warn};
use sluice_shim_proto::events::TaskEvent;
use tokio::sync::{mpsc, oneshot};

use super::{lock, Container};
use crate::{
    cgroup::CgroupFs,
    process::{ExitInfo, Kind, Process},
    reaper::ExitWatch,
};

/// How long an exit waits for the process's output to be read (see `settle_output`).
const EXIT_SETTLE_LIMIT: Duration = Duration::from_millis(500);
/// How long an init's exit waits for the OOM watch's final read (see `last_oom_check`).
const OOM_CHECK_LIMIT: Duration = Duration::from_millis(200);

/// A container's OOM watch: the task that publishes TaskOOM, and a way to ask it for a final
/// read now.
pub(super) struct OomWatch {
    task: tokio::task::JoinHandle<()>,
    check: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// Guarded by `Container::order`, which is held while an exit is published so that an init's
/// exit can never overtake the exit of an exec that is still running, nor the TaskStart of a
/// Start that is still in flight (the init is watched from Create on, and may die while
/// `runc start` runs: an OOM kill, a Kill).
#[derive(Default)]
pub(super) struct ExitOrder {
    pub running_execs: usize,
    pub starts_in_flight: usize,
    pub pending_init_exit: Option<ExitInfo>,
}

impl ExitOrder {
    /// Whether an init exit seen now must wait.
    fn must_hold_init_exit(&self) -> bool {
        self.running_execs > 0 || self.starts_in_flight > 0
    }
}

/// A Start of the init in flight ([`Container::begin_start`]).
pub(super) struct StartInFlight<'a>(&'a Container);

impl Drop for StartInFlight<'_> {
    fn drop(&mut self) {
        let c = self.0;
        let mut order = lock(&c.order);
        order.starts_in_flight = order.starts_in_flight.saturating_sub(1);
        c.release_init_exit(&mut order);
    }
}

impl Container {
    pub(super) fn watch_exit(self: &Arc<Self>, p: Arc<Process>, watch: ExitWatch) {
        let c = self.clone();
        tokio::spawn(async move {
            let e = watch.wait().await;
            let exit = ExitInfo {
                status: u32::try_from(e.status).unwrap_or(255),
                at: e.at,
            };
            c.on_exit(&p, exit).await;
        });
    }

    pub(super) async fn on_exit(&self, p: &Process, exit: ExitInfo) {
        debug!("{} exited with status {}", p.label(), exit.status);
        match p.kind {
            Kind::Exec => {
                self.settle_output(p).await;
                p.set_exited(exit);
                let mut order = lock(&self.order);
                self.publisher.publish(TaskEvent::Exit {
                    container_id: self.id.clone(),
                    id: p.id.clone(),
                    pid: p.pid(),
                    exit_status: exit.status,
                    exited_at: exit.at,
                });
                order.running_execs = order.running_execs.saturating_sub(1);
                self.release_init_exit(&mut order);
            }
            Kind::Init => {
                self.last_oom_check().await;
                if self.kill_all_on_exit {
                    self.kill_leftovers().await;
                }
                self.settle_output(p).await;
                let mut order = lock(&self.order);
                if order.must_hold_init_exit() {
                    // Told after the last exec's exit and after TaskStart, as containerd
                    // expects.
                    order.pending_init_exit = Some(exit);
                } else {
                    self.finish_init_exit(exit);
                }
            }
        }
    }

    /// A Start of the init is under way: its exit, if it comes now, waits for the Start's
    /// event. Until the guard is dropped (TaskStart published, the Start failed, or its request
    /// was dropped), then an exit held for it is told.
    pub(super) fn begin_start(&self) -> StartInFlight<'_> {
        lock(&self.order).starts_in_flight += 1;
        StartInFlight(self)
    }

    /// Tells a held init exit once nothing it must follow is left. Called with `order` held.
    fn release_init_exit(&self, order: &mut ExitOrder) {
        if !order.must_hold_init_exit() {
            if let Some(init_exit) = order.pending_init_exit.take() {
                self.finish_init_exit(init_exit);
            }
        }
    }

    /// Without a pid namespace of its own, a container's processes outlive its init: kill them
    /// (the Go shim's `ShouldKillAllOnExit`).
    async fn kill_leftovers(&self) {
        if let Err(e) = self
            .runc
            .kill(&self.id, &self.bundle, libc::SIGKILL as u32, true)
            .await
        {
            if !e.is_already_finished() && !e.is_not_exist() {
                warn!("killing the processes left in container {}: {e}", self.id);
            }
        }
    }

    /// Before an exit is told (Wait returns, TaskExit goes out): lets the output reach its
    /// reader, briefly. Clients close their FIFOs when they see the exit (ctr 1.6 even before
    /// it waits for EOF), so output still on its way then is lost. What the process wrote is
    /// in its pipes when it exits, so this waits for the pipes to be empty and delivered, not
    /// for EOF: a child that outlives the process may hold its pipes open for ever.
    async fn settle_output(&self, p: &Process) {
        if let Some(io) = p.io() {
            if !io.wait_settled(EXIT_SETTLE_LIMIT).await {
                debug!(
                    "{}: output still flowing {EXIT_SETTLE_LIMIT:?} after the exit; telling the exit",
                    p.label()
                );
            }
        }
    }

    /// Called with `order` held.
    fn finish_init_exit(&self, exit: ExitInfo) {
        self.init.set_exited(exit);
        info!("container {} exited with status {}", self.id, exit.status);
        self.publisher.publish(TaskEvent::Exit {
            container_id: self.id.clone(),
            id: self.id.clone(),
            pid: self.init.pid(),
            exit_status: exit.status,
            exited_at: exit.at,
        });
    }

    /// Publishes TaskOOM whenever the kernel's OOM killer acts in this container's cgroup.
    pub(super) fn watch_oom(&self, pid: u32) {
        let watcher = CgroupFs::host()
            .for_pid(pid)
            .and_then(|cg| cg.oom_watcher());
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                warn!("container {}: no OOM events: {e}", self.id);
                return;
            }
        };
        let publisher = self.publisher.clone();
        let id = self.id.clone();
        let (check, mut checks) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
        let oom = move || {
            info!("container {id}: out of memory");
            publisher.publish(TaskEvent::Oom {
                container_id: id.clone(),
            });
        };
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    seen = watcher.next() => match seen {
                        Some(()) => oom(),
                        // Checks still queued are answered by their sender's drop.
                        None => break,
                    },
                    Some(done) = checks.recv() => {
                        if watcher.check_now() {
                            oom();
                        }
                        let _ = done.send(());
                    }
                }
            }
        });
        *lock(&self.oom_watch) = Some(OomWatch { task, check });
    }

    /// The final OOM read when init exits: a kill not yet told is published now, before the
    /// exit. Bounded: the watch task answers at once unless it is gone.
    async fn last_oom_check(&self) {
        let check = lock(&self.oom_watch).as_ref().map(|w| w.check.clone());
        let Some(check) = check else { return };
        let (done, answered) = oneshot::channel();
        if check.send(done).is_ok() {
            let _ = tokio::time::timeout(OOM_CHECK_LIMIT, answered).await;
        }
    }

    /// Stops the OOM watch (at delete).
    pub(super) fn stop_oom_watch(&self) {
        if let Some(w) = lock(&self.oom_watch).take() {
            w.task.abort();
        }
    }
}
