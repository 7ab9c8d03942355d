//! The container's init process: create (with its rootfs), start or restore, pause, resume,
//! checkpoint and delete.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use log::{info, warn};
use sluice_shim_proto::{events::TaskEvent, options::CheckpointSettings};

use super::{
    error::{ContainerError, Failure},
    lock,
    spec::read_spec,
    stdio::run_with_io,
    transaction::{OnFailure, Outcome, Settle, Verb},
    Container, CreateRequest, Env, Restore, IO_DRAIN_LIMIT, OPTIONS_FILE,
};
use crate::{
    io::{IoContext, ProcessIo},
    process::{ExitInfo, Kind, Op, Process, State},
    runc::{files::read_pid, runc_for, CheckpointArgs, CreateOpts, Runc},
};

type Result<T> = std::result::Result<T, ContainerError>;

impl Container {
    /// `runc create` with the process's pipes already drained; publishes TaskCreate.
    pub async fn create(env: &Env, req: CreateRequest) -> Result<Arc<Container>> {
        let id = req.id.clone();
        let what = format!("create container {id}");
        let spec = read_spec(&req.bundle).map_err(|f| ContainerError::failed(&what, f))?;
        // One container's annotation, then its runtime options, then the shim's default.
        let deadline = spec
            .runc_timeout
            .or((req.options.runc_timeout_ms > 0)
                .then(|| Duration::from_millis(req.options.runc_timeout_ms)))
            .unwrap_or(env.deadline);
        let runc = runc_for(&req.options, &env.namespace, deadline)?;
        write_options(&req, &what)?;
        let rootfs = mount_rootfs(&req, &what).await?;
        let io_ctx = IoContext {
            container_id: id.clone(),
            namespace: env.namespace.clone(),
            uid: req.options.io_uid,
            gid: req.options.io_gid,
        };
        let opts = CreateOpts {
            no_pivot: req.options.no_pivot_root,
            no_new_keyring: req.options.no_new_keyring,
        };
        let restore = restore_plan(&req, &opts);
        let init = Arc::new(Process::new(
            id.clone(),
            id.clone(),
            Kind::Init,
            req.stdio.clone(),
            Vec::new(),
        ));
        if restore.is_none() {
            let (io, pid) =
                run_create(&what, &req, &runc, &opts, &io_ctx, rootfs.as_deref()).await?;
            init.set_pid(pid);
            init.set_io(io);
        }
        let pid = init.pid();
        let container = Arc::new(Container {
            id: id.clone(),
            bundle: req.bundle.clone(),
            runc,
            rootfs,
            io_ctx,
            kill_all_on_exit: !spec.own_pid_namespace,
            init: init.clone(),
            execs: Mutex::default(),
            lingering: Mutex::default(),
            order: Mutex::default(),
            publisher: env.publisher.clone(),
            oom_watch: Mutex::new(None),
            restore: Mutex::new(restore),
        });
        let mut created = Outcome::new((), Settle::Unchanged).told(create_event(&req, pid));
        if pid != 0 {
            created = created.watching(pid);
            info!("created container {id} with init pid {pid}");
        } else {
            info!(
                "created container {id}, to be restored from {}",
                req.checkpoint
            );
        }
        container.conclude(&init, created);
        Ok(container)
    }

    /// `runc start`, or `runc restore` of a container created from a checkpoint.
    pub(super) async fn start_init(self: &Arc<Self>) -> Result<u32> {
        let what = format!("start container {}", self.id);
        let verb = Verb::start(&what);
        let step = async {
            let restore = lock(&self.restore).take();
            let res = match &restore {
                Some(r) => self.run_restore(r, &what).await,
                None => self
                    .runc
                    .start(&self.id, &self.bundle)
                    .await
                    .map(|()| None)
                    .map_err(|e| ContainerError::runc(&what, e)),
            };
            if res.is_err() {
                // Start may be asked again, and must restore again.
                *lock(&self.restore) = restore;
            }
            let restored = res?;
            let pid = self.init.pid();
            let started = Outcome::new(pid, Settle::Running).told(TaskEvent::Start {
                container_id: self.id.clone(),
                pid,
            });
            Ok(match restored {
                Some(pid) => started.watching(pid),
                None => started,
            })
        };
        let pid = {
            let _start = self.begin_start();
            self.transact(&self.init, verb, step).await?
        };
        info!("started container {} (pid {pid})", self.id);
        Ok(pid)
    }

    /// `runc restore`: Start's work for a container created from a checkpoint. Returns the
    /// restored init's pid, which is new.
    async fn run_restore(&self, r: &Restore, what: &str) -> Result<Option<u32>> {
        let pid_file = self.bundle.join("init.pid");
        let io = run_with_io(what, &self.id, &self.init.stdio, &self.io_ctx, |rio| {
            self.runc
                .restore(&self.id, &self.bundle, &pid_file, &r.opts, &r.args, rio)
        })
        .await
        .map_err(|f| f.shut())?;
        let pid = read_pid(&pid_file).map_err(|source| {
            ContainerError::failed(
                what,
                Failure::NoPid {
                    verb: "restore",
                    in_file: None,
                    source,
                },
            )
        })?;
        self.init.set_pid(pid);
        self.init.set_io(io);
        Ok(Some(pid))
    }

    /// `runc checkpoint`; publishes TaskCheckpointed.
    pub async fn checkpoint(&self, path: &str, s: &CheckpointSettings) -> Result<()> {
        let what = format!("checkpoint container {}", self.id);
        let failed = |f| ContainerError::failed(&what, f);
        match self.init.snapshot().state {
            State::Running | State::Paused => {}
            other => return Err(failed(Failure::NotCheckpointable(other.name()))),
        }
        let image_path = if s.image_path.is_empty() {
            path
        } else {
            &s.image_path
        };
        if image_path.is_empty() {
            return Err(failed(Failure::NoCheckpointPath));
        }
        let args = CheckpointArgs {
            image_path: PathBuf::from(image_path),
            work_path: self.criu_work_path(&s.work_path),
            leave_running: !s.exit,
            tcp_established: s.open_tcp,
            ext_unix_sk: s.external_unix_sockets,
            shell_job: s.terminal,
            file_locks: s.file_locks,
            empty_ns: s.empty_namespaces.clone(),
            cgroups_mode: s.cgroups_mode.clone(),
        };
        self.runc
            .checkpoint(&self.id, &self.bundle, &args)
            .await
            .map_err(|e| ContainerError::runc(&what, e))?;
        self.publisher.publish(TaskEvent::Checkpointed {
            container_id: self.id.clone(),
            checkpoint: image_path.to_string(),
        });
        Ok(())
    }

    fn criu_work_path(&self, asked: &str) -> PathBuf {
        if asked.is_empty() {
            self.bundle.join("criu-work")
        } else {
            PathBuf::from(asked)
        }
    }

    /// Deletes the container: `runc delete`, unmount, close IO; publishes TaskDelete.
    pub async fn delete_init(self: &Arc<Self>) -> Result<(u32, ExitInfo)> {
        let what = format!("delete container {}", self.id);
        let step = async {
            let io = self.init.io();
            if let Some(io) = &io {
                if !io.wait_delivered(IO_DRAIN_LIMIT).await {
                    warn!("{}: output not fully delivered before delete", self.id);
                }
            }
            match self.runc.delete(&self.id, Some(&self.bundle), true).await {
                Ok(()) => {}
                Err(e) if e.is_not_exist() => {}
                Err(e) => return Err(ContainerError::runc(&what, e)),
            }
            if let Some(io) = &io {
                io.shutdown();
                io.stop();
            }
            for io in lock(&self.lingering).drain(..) {
                io.stop();
            }
            if let Some(r) = &self.rootfs {
                unmount(r).await;
            }
            self.stop_oom_watch();
            let exit = self.init_exit_after_delete().await;
            let pid = self.init.pid();
            Ok(
                Outcome::new((pid, exit), Settle::Unchanged).told(TaskEvent::Delete {
                    container_id: self.id.clone(),
                    id: String::new(),
                    pid,
                    exit_status: exit.status,
                    exited_at: exit.at,
                }),
            )
        };
        let done = self.delete_once(&self.init, &what, step).await?;
        info!("deleted container {}", self.id);
        Ok(done)
    }

    /// A created (never started) init is killed by runc delete; its exit comes via the reaper.
    async fn init_exit_after_delete(&self) -> ExitInfo {
        match self.init.exit() {
            Some(e) => e,
            None => tokio::time::timeout(Duration::from_secs(2), self.init.wait())
                .await
                .unwrap_or(ExitInfo {
                    status: 128 + libc::SIGKILL as u32,
                    at: SystemTime::now(),
                }),
        }
    }

    pub async fn pause(self: &Arc<Self>) -> Result<()> {
        let what = format!("pause container {}", self.id);
        self.freeze(&what, Op::Pause).await
    }

    pub async fn resume(self: &Arc<Self>) -> Result<()> {
        let what = format!("resume container {}", self.id);
        self.freeze(&what, Op::Resume).await
    }

    /// `runc pause` or `runc resume`: the process stays as it is while runc runs.
    async fn freeze(self: &Arc<Self>, what: &str, op: Op) -> Result<()> {
        let (busy, settled) = match op {
            Op::Pause => (State::Running, State::Paused),
            _ => (State::Paused, State::Running),
        };
        let verb = Verb {
            what,
            op,
            busy,
            on_failure: OnFailure::Restore,
        };
        let step = async {
            let container_id = self.id.clone();
            let (res, event) = if op == Op::Pause {
                let res = self.runc.pause(&self.id, &self.bundle).await;
                (res, TaskEvent::Paused { container_id })
            } else {
                let res = self.runc.resume(&self.id, &self.bundle).await;
                (res, TaskEvent::Resumed { container_id })
            };
            res.map_err(|e| ContainerError::runc(what, e))?;
            Ok(Outcome::new((), Settle::To(settled)).told(event))
        };
        self.transact(&self.init, verb, step).await
    }
}

/// Keeps the runtime options in the bundle, for the `delete` command (written in place, as
/// `runc::files` says why).
fn write_options(req: &CreateRequest, what: &str) -> Result<()> {
    let json = serde_json::to_vec(&req.options)
        .map_err(|e| ContainerError::file(what, "encode options", std::io::Error::other(e)))?;
    std::fs::write(req.bundle.join(OPTIONS_FILE), json)
        .map_err(|e| ContainerError::file(what, "write options", e))
}

/// Mounts the request's rootfs on `<bundle>/rootfs`; None when containerd mounted it itself.
async fn mount_rootfs(req: &CreateRequest, what: &str) -> Result<Option<PathBuf>> {
    if req.rootfs.is_empty() {
        return Ok(None);
    }
    let target = req.bundle.join("rootfs");
    tokio::fs::create_dir_all(&target)
        .await
        .map_err(|e| ContainerError::file(what, format!("mkdir {}", target.display()), e))?;
    for m in &req.rootfs {
        if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
            unmount(&target).await;
            return Err(ContainerError::failed(
                what,
                Failure::Mount {
                    source_name: m.source.clone(),
                    target,
                    reason: e.to_string(),
                },
            ));
        }
    }
    Ok(Some(target))
}

/// A container created from a checkpoint is restored by Start, as the Go shim does.
fn restore_plan(req: &CreateRequest, opts: &CreateOpts) -> Option<Restore> {
    (!req.checkpoint.is_empty()).then(|| Restore {
        args: CheckpointArgs {
            image_path: PathBuf::from(&req.checkpoint),
            work_path: if req.options.criu_work_path.is_empty() {
                req.bundle.join("criu-work")
            } else {
                PathBuf::from(&req.options.criu_work_path)
            },
            ..Default::default()
        },
        opts: opts.clone(),
    })
}

fn create_event(req: &CreateRequest, pid: u32) -> TaskEvent {
    TaskEvent::Create {
        container_id: req.id.clone(),
        bundle: req.bundle.display().to_string(),
        rootfs: req.rootfs.clone(),
        stdin: req.stdio.stdin.clone(),
        stdout: req.stdio.stdout.clone(),
        stderr: req.stdio.stderr.clone(),
        terminal: req.stdio.terminal,
        checkpoint: req.checkpoint.clone(),
        pid,
    }
}

/// `runc create` with the process's stdio set up around it; on failure, undoes what it can
/// (runc's state, the rootfs mount) so that nothing is left behind.
async fn run_create(
    what: &str,
    req: &CreateRequest,
    runc: &Runc,
    opts: &CreateOpts,
    io_ctx: &IoContext,
    rootfs: Option<&Path>,
) -> Result<(Arc<ProcessIo>, u32)> {
    let id = req.id.as_str();
    let pid_file = req.bundle.join("init.pid");
    let created = async {
        let io = run_with_io(what, id, &req.stdio, io_ctx, |rio| {
            runc.create(id, &req.bundle, &pid_file, opts, rio)
        })
        .await
        .map_err(|f| f.shut())?;
        match read_pid(&pid_file) {
            Ok(pid) => Ok((io, pid)),
            Err(source) => {
                io.shutdown();
                let in_file = Some(pid_file.clone());
                let failure = Failure::NoPid {
                    verb: "create",
                    in_file,
                    source,
                };
                Err(ContainerError::failed(what, failure))
            }
        }
    }
    .await;
    if created.is_err() {
        if let Err(de) = runc.delete(id, Some(&req.bundle), true).await {
            if !de.is_not_exist() {
                warn!("cleaning up failed create of {id}: {de}");
            }
        }
        if let Some(r) = rootfs {
            unmount(r).await;
        }
    }
    created
}

pub(super) async fn unmount(rootfs: &Path) {
    let target = rootfs.display().to_string();
    let res = tokio::task::spawn_blocking(move || {
        containerd_shim::mount::umount_recursive(Some(&target), libc::MNT_DETACH)
    })
    .await;
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("unmounting {}: {e}", rootfs.display()),
        Err(e) => warn!("unmounting {}: {e}", rootfs.display()),
    }
}
