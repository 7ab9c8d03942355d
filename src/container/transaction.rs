//! The one move every verb that runs runc makes: begin → runc → restore on failure → settle →
//! publish. A verb hands [`Container::transact`] its runc step; the step says, on success, how
//! the process settles, which event tells it, and whether there is now a pid to watch.

use std::{future::Future, sync::Arc, time::SystemTime};

use sluice_shim_proto::events::TaskEvent;

use super::{error::ContainerError, lock, Container};
use crate::{
    process::{ExitInfo, Kind, Op, Process, State},
    reaper,
};

/// Where the process goes once its runc step succeeded.
pub(super) enum Settle {
    /// `runc start`, `exec` or `restore` returned: running, unless the exit was already seen.
    Running,
    To(State),
    /// The step left the state where it wants it (delete stays "being deleted").
    Unchanged,
}

/// A successful runc step.
pub(super) struct Outcome<T> {
    pub value: T,
    pub settle: Settle,
    pub event: Option<TaskEvent>,
    /// The process has a new pid: from now on its exit (and, for init, OOM kills) are watched.
    pub watch: Option<u32>,
}

impl<T> Outcome<T> {
    pub fn new(value: T, settle: Settle) -> Outcome<T> {
        Outcome {
            value,
            settle,
            event: None,
            watch: None,
        }
    }

    pub fn told(mut self, event: TaskEvent) -> Outcome<T> {
        self.event = Some(event);
        self
    }

    pub fn watching(mut self, pid: u32) -> Outcome<T> {
        self.watch = Some(pid);
        self
    }
}

/// What a failed runc step leaves behind.
#[derive(Clone, Copy)]
pub(super) enum OnFailure {
    /// The state the process had before.
    Restore,
    /// An exec that never ran is stopped with 255, so that Wait and Delete see it ended.
    NeverRan,
}

/// A verb, as the transaction needs it: what to say in errors, the operation the state table
/// must allow, the state the process is in while runc runs, and what a failure leaves.
pub(super) struct Verb<'a> {
    pub what: &'a str,
    pub op: Op,
    pub busy: State,
    pub on_failure: OnFailure,
}

impl<'a> Verb<'a> {
    /// `runc start` of an init (or its restore): back to Created if it fails.
    pub fn start(what: &'a str) -> Verb<'a> {
        Verb {
            what,
            op: Op::Start,
            busy: State::Starting,
            on_failure: OnFailure::Restore,
        }
    }

    /// `runc exec`: an exec whose start failed never ran, and says so.
    pub fn start_exec(what: &'a str) -> Verb<'a> {
        Verb {
            on_failure: OnFailure::NeverRan,
            ..Verb::start(what)
        }
    }

    pub fn delete(what: &'a str) -> Verb<'a> {
        Verb {
            what,
            op: Op::Delete,
            busy: State::Deleting,
            on_failure: OnFailure::Restore,
        }
    }
}

impl Container {
    /// Runs `step` as `verb` of `p`. The state moves under the process's own short lock, never
    /// held while `step` runs: a second caller meanwhile is refused, not made to wait.
    pub(super) async fn transact<T, F>(
        self: &Arc<Self>,
        p: &Arc<Process>,
        verb: Verb<'_>,
        step: F,
    ) -> Result<T, ContainerError>
    where
        F: Future<Output = Result<Outcome<T>, ContainerError>>,
    {
        let prev = p
            .begin(verb.op, verb.busy)
            .map_err(|r| ContainerError::refused(verb.what, r))?;
        match step.await {
            Ok(outcome) => Ok(self.conclude(p, outcome)),
            Err(e) => {
                match verb.on_failure {
                    OnFailure::Restore => p.restore(prev),
                    OnFailure::NeverRan if prev == State::Created => p.set_exited(ExitInfo {
                        status: 255,
                        at: SystemTime::now(),
                    }),
                    OnFailure::NeverRan => {}
                }
                Err(e)
            }
        }
    }

    /// Delete as a transaction that a retry may join: containerd retries a Delete it gave up
    /// waiting for (a slow unmount or `runc delete`), and a refusal ("being deleted") would
    /// leave it with a task it can never remove and a shim it never shuts down (containerd
    /// #7496, #8981). So a Delete that finds one under way waits for it and answers what it
    /// answered; if that one failed, it deletes itself. The wait is bounded by the first
    /// one's own bounds (the drain limit, runc's deadline).
    pub(super) async fn delete_once<F>(
        self: &Arc<Self>,
        p: &Arc<Process>,
        what: &str,
        step: F,
    ) -> Result<(u32, ExitInfo), ContainerError>
    where
        F: Future<Output = Result<Outcome<(u32, ExitInfo)>, ContainerError>>,
    {
        if p.snapshot().state == State::Deleting {
            if let Some(done) = p.delete_under_way().await {
                return Ok(done);
            }
        }
        match self.transact(p, Verb::delete(what), step).await {
            Ok((pid, exit)) => {
                p.set_deleted(pid, exit);
                Ok((pid, exit))
            }
            Err(e) => {
                p.delete_failed();
                Err(e)
            }
        }
    }

    /// Settle, publish, watch: the end of every transaction, and all of Create's, whose
    /// process is new and so has no state to begin from or restore.
    pub(super) fn conclude<T>(self: &Arc<Self>, p: &Arc<Process>, out: Outcome<T>) -> T {
        if out.watch.is_some() && p.kind == Kind::Exec {
            // Counted before the exec can exit, so the init's exit waits for this one's.
            lock(&self.order).running_execs += 1;
        }
        match out.settle {
            Settle::Running => p.set_running(),
            Settle::To(state) => p.settle(state),
            Settle::Unchanged => {}
        }
        if let Some(event) = out.event {
            self.publisher.publish(event);
        }
        // Watched only once the start is told: an exit event never precedes its start event.
        if let Some(pid) = out.watch {
            if p.kind == Kind::Init {
                self.watch_oom(pid);
            }
            self.watch_exit(p.clone(), reaper::watch(pid as i32));
        }
        out.value
    }
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, sync::Mutex, time::Duration};

    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::{
        events::Publisher,
        io::{IoContext, StdioPaths},
        runc::Runc,
    };

    type Events = UnboundedReceiver<(TaskEvent, std::time::Instant)>;

    /// A container whose runc is never run: the steps below stand in for it.
    fn container() -> (Arc<Container>, Events) {
        let (publisher, events) = Publisher::channel();
        let init = Arc::new(Process::new(
            "c1".into(),
            "c1".into(),
            Kind::Init,
            StdioPaths::default(),
            Vec::new(),
        ));
        let c = Container {
            id: "c1".into(),
            bundle: PathBuf::from("/nonexistent"),
            runc: Runc {
                binary: PathBuf::from("/bin/false"),
                criu: None,
                root: PathBuf::from("/nonexistent"),
                systemd_cgroup: false,
                deadline: Duration::from_secs(1),
            },
            rootfs: None,
            io_ctx: IoContext {
                container_id: "c1".into(),
                namespace: "ns".into(),
                uid: 0,
                gid: 0,
            },
            init,
            execs: Mutex::default(),
            lingering: Default::default(),
            order: Mutex::default(),
            publisher,
            oom_watch: Mutex::new(None),
            restore: Mutex::new(None),
            kill_all_on_exit: false,
        };
        (Arc::new(c), events)
    }

    fn start(on_failure: OnFailure) -> Verb<'static> {
        Verb {
            what: "start container c1",
            op: Op::Start,
            busy: State::Starting,
            on_failure,
        }
    }

    async fn started() -> Result<Outcome<u32>, ContainerError> {
        let ev = TaskEvent::Start {
            container_id: "c1".into(),
            pid: 42,
        };
        Ok(Outcome::new(42, Settle::Running).told(ev))
    }

    /// The init dies (SIGKILL) and its exit is seen.
    async fn killed(c: &Container) {
        let exit = ExitInfo {
            status: 137,
            at: SystemTime::now(),
        };
        c.on_exit(&c.init, exit).await;
    }

    fn failing() -> Result<Outcome<u32>, ContainerError> {
        Err(ContainerError::failed(
            "start container c1",
            crate::container::Failure::NotStarted,
        ))
    }

    #[tokio::test]
    async fn a_failed_step_restores_the_state_and_tells_nothing() {
        let (c, mut events) = container();
        let p = c.init.clone();
        let e = c
            .transact(&p, start(OnFailure::Restore), async {
                // While the step runs, the process says so, and a second start is refused.
                assert_eq!(p.snapshot().state, State::Starting);
                let second = p.begin(Op::Start, State::Starting).expect_err("busy");
                assert_eq!(
                    second.to_string(),
                    "cannot start a process that is starting"
                );
                failing()
            })
            .await
            .expect_err("the step failed");
        assert_eq!(
            e.to_string(),
            "start container c1: the process has not started"
        );
        assert_eq!(p.snapshot().state, State::Created);
        assert!(events.try_recv().is_err(), "a failure publishes no event");
    }

    #[tokio::test]
    async fn an_exec_that_never_ran_is_stopped_with_255() {
        let (c, _events) = container();
        let p = c.init.clone();
        c.transact(&p, start(OnFailure::NeverRan), async { failing() })
            .await
            .expect_err("the step failed");
        assert!(matches!(p.snapshot().state, State::Stopped(e) if e.status == 255));
        assert_eq!(p.wait().await.status, 255);
    }

    #[tokio::test]
    async fn a_refused_verb_never_runs_its_step() {
        let (c, _events) = container();
        let p = c.init.clone();
        p.begin(Op::Delete, State::Deleting).expect("created");
        let e = c
            .transact::<u32, _>(&p, start(OnFailure::Restore), async {
                panic!("the step of a refused verb ran")
            })
            .await
            .expect_err("refused");
        assert_eq!(
            e.to_string(),
            "start container c1: cannot start a process that is being deleted"
        );
        assert_eq!(p.snapshot().state, State::Deleting);
    }

    /// The init is watched from Create on; an exit seen while `runc start` runs (an OOM kill
    /// at once, a Kill) is told after TaskStart, never before it.
    #[tokio::test]
    async fn an_init_exit_during_start_is_told_after_the_start() {
        let (c, mut events) = container();
        let p = c.init.clone();
        let starting = c.begin_start();
        killed(&c).await;
        assert!(events.try_recv().is_err(), "the exit overtook the start");
        c.transact(&p, start(OnFailure::Restore), started())
            .await
            .expect("started");
        drop(starting);
        let topics: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|(ev, _)| ev.topic())
            .collect();
        assert_eq!(topics, ["/tasks/start", "/tasks/exit"]);
        assert!(matches!(p.snapshot().state, State::Stopped(e) if e.status == 137));
    }

    /// A Start that fails still lets the held exit go.
    #[tokio::test]
    async fn an_init_exit_held_for_a_failed_start_is_told() {
        let (c, mut events) = container();
        let p = c.init.clone();
        let starting = c.begin_start();
        killed(&c).await;
        c.transact(&p, start(OnFailure::Restore), async { failing() })
            .await
            .expect_err("the step failed");
        assert!(events.try_recv().is_err(), "told while the start was held");
        drop(starting);
        match events.try_recv() {
            Ok((TaskEvent::Exit { exit_status, .. }, _)) => assert_eq!(exit_status, 137),
            other => panic!("expected TaskExit, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_success_settles_then_publishes() {
        let (c, mut events) = container();
        let p = c.init.clone();
        let pid = c
            .transact(&p, start(OnFailure::Restore), started())
            .await
            .expect("started");
        assert_eq!(pid, 42);
        assert_eq!(p.snapshot().state, State::Running);
        match events.try_recv() {
            Ok((TaskEvent::Start { container_id, pid }, _)) => {
                assert_eq!((container_id.as_str(), pid), ("c1", 42))
            }
            other => panic!("expected TaskStart, got {other:?}"),
        }
    }
}
