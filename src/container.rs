//! A container: its init process, its execs, the runc calls that drive them, and the order in
//! which their exits are told to containerd.
//!
//! Locks here guard maps and counters only and are never held across runc or an `.await`:
//! a stuck runc call for one process leaves every other process of this and every other
//! container answering (DESIGN.md, invariant 6).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, SystemTime},
};

use containerd_shim::protos::api::Mount;
use log::{debug, info, warn};
use sluice_shim_proto::{
    events::TaskEvent,
    options::{CheckpointSettings, RuncOptions},
};

use crate::{
    arg_limits,
    cgroup::{CgroupError, CgroupFs},
    error::{Error, Result},
    events::Publisher,
    io::{IoContext, ProcessIo, StdioPaths},
    process::{ExitInfo, Kind, Op, Process, Snapshot, State},
    reaper::{self, ExitWatch},
    runc::{CheckpointArgs, CreateOpts, ProcessStdio, Runc, RuncError, RuncIo},
};

/// How long Delete waits for a process's output to reach containerd before closing it.
const IO_DRAIN_LIMIT: Duration = Duration::from_secs(5);
/// How long an exit waits for the process's output to be read (see `settle_output`).
const EXIT_SETTLE_LIMIT: Duration = Duration::from_millis(500);
/// Where runc keeps state when the options name no root (the Go shim's default).
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";
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
    rootfs: Option<PathBuf>,
    /// Stdio settings every exec of this container shares.
    io_ctx: IoContext,
    init: Arc<Process>,
    /// Guarded: the exec map only; never held across runc.
    execs: Mutex<HashMap<String, Arc<Process>>>,
    /// Guarded: the exit order. Held while an exit is published so that an init's exit can
    /// never overtake the exit of an exec that is still running.
    order: Mutex<ExitOrder>,
    publisher: Publisher,
    /// Publishes TaskOOM for this container's cgroup; stopped at delete.
    oom_watch: Mutex<Option<tokio::task::JoinHandle<()>>>,
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

#[derive(Default)]
struct ExitOrder {
    running_execs: usize,
    pending_init_exit: Option<ExitInfo>,
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

/// The runc to use for `options` in `namespace`.
pub fn runc_for(options: &RuncOptions, namespace: &str, deadline: Duration) -> Result<Runc> {
    let name = if options.binary_name.is_empty() {
        "runc"
    } else {
        options.binary_name.as_str()
    };
    let binary = find_binary(name).ok_or_else(|| {
        Error::FailedPrecondition(format!("runtime binary {name:?} not found in PATH"))
    })?;
    let root = if options.root.is_empty() {
        DEFAULT_RUNC_ROOT
    } else {
        options.root.as_str()
    };
    Ok(Runc {
        binary,
        root: Path::new(root).join(namespace),
        systemd_cgroup: options.systemd_cgroup,
        criu: (!options.criu_path.is_empty()).then(|| PathBuf::from(&options.criu_path)),
        deadline,
    })
}

fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

async fn read_pid(path: &Path) -> std::io::Result<u32> {
    let text = tokio::fs::read_to_string(path).await?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {text:?}")))
}

/// Annotation that sets the deadline of every runc call for one container, in seconds.
pub const TIMEOUT_ANNOTATION: &str = "io.sluice.runc-timeout-seconds";

/// What the shim reads from the bundle's `config.json`.
struct BundleSpec {
    own_pid_namespace: bool,
    runc_timeout: Option<Duration>,
}

fn read_spec(bundle: &Path, id: &str) -> Result<BundleSpec> {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        // runc will say what is wrong with the bundle.
        return Ok(BundleSpec {
            own_pid_namespace: true,
            runc_timeout: None,
        });
    };
    let runc_timeout = match spec
        .annotations()
        .as_ref()
        .and_then(|a| a.get(TIMEOUT_ANNOTATION))
    {
        None => None,
        Some(v) => match v.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && s > 0.0 => Some(Duration::from_secs_f64(s)),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "create container {id}: annotation {TIMEOUT_ANNOTATION}={v:?} is not a positive number of seconds"
                )))
            }
        },
    };
    if let Some(p) = spec.process() {
        let stack = p.rlimits().as_ref().and_then(|rs| {
            rs.iter()
                .find(|r| r.typ() == oci_spec::runtime::PosixRlimitType::RlimitStack)
                .map(|r| r.soft())
        });
        let none = Vec::new();
        arg_limits::check_process(
            p.args().as_ref().unwrap_or(&none),
            p.env().as_ref().unwrap_or(&none),
            stack,
        )
        .map_err(|e| Error::InvalidArgument(format!("create container {id}: {e}")))?;
    }
    Ok(BundleSpec {
        own_pid_namespace: has_own_pid_namespace(&spec),
        runc_timeout,
    })
}

/// Whether the spec gives the container its own pid namespace.
fn has_own_pid_namespace(spec: &oci_spec::runtime::Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|nss| {
            nss.iter().any(|ns| {
                ns.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && ns.path().is_none()
            })
        })
}

/// The exec's process spec with `terminal` set to the request's flag: the Go shim's
/// `Init.exec` (`process/init.go`, `spec.Terminal = r.Terminal`) lets the flag win, and clients
/// send a spec copied from the container's with only the flag set. Like the Go shim, a spec
/// that is not a JSON object is refused here, not at Start.
fn with_terminal(spec: &[u8], terminal: bool) -> std::result::Result<Vec<u8>, String> {
    match serde_json::from_slice(spec) {
        Ok(serde_json::Value::Object(mut process)) => {
            process.insert("terminal".into(), terminal.into());
            serde_json::to_vec(&process).map_err(|e| e.to_string())
        }
        Ok(_) => Err("the process spec is not a JSON object".into()),
        Err(e) => Err(format!("the process spec is not JSON: {e}")),
    }
}

/// Runs a runc create or exec (`call`) with the process's stdio set up around it: pipes already
/// being drained, or a console socket being accepted on. On failure the IO that was set up is
/// returned with the error, so that what the process wrote can still be delivered.
async fn run_with_io<F, Fut>(
    what: &str,
    name: &str,
    stdio: &StdioPaths,
    ctx: &IoContext,
    call: F,
) -> std::result::Result<Arc<ProcessIo>, (Option<Arc<ProcessIo>>, Error)>
where
    F: FnOnce(RuncIo) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<(), RuncError>>,
{
    if stdio.terminal {
        let pending =
            ProcessIo::prepare_terminal(name, stdio).map_err(|e| (None, Error::io(what, e)))?;
        let socket = pending.socket_path().to_path_buf();
        call(RuncIo::Console(socket))
            .await
            .map_err(|e| (None, Error::runc(what, e)))?;
        let io = pending
            .finish()
            .await
            .map_err(|e| (None, Error::io(what, e)))?;
        return Ok(Arc::new(io));
    }
    let (io, child) = ProcessIo::start(name, stdio, ctx)
        .await
        .map_err(|e| (None, Error::io(what, e)))?;
    let io = Arc::new(io);
    let res = call(RuncIo::Pipes(ProcessStdio {
        stdin: child.stdin,
        stdout: child.stdout,
        stderr: child.stderr,
        tail: io.runc_tail(),
    }))
    .await;
    io.end_runc_phase();
    match res {
        Ok(()) => Ok(io),
        Err(e) => Err((Some(io), Error::runc(what, e))),
    }
}

async fn unmount(rootfs: &Path) {
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

impl Container {
    /// `runc create` with the process's pipes already drained; publishes TaskCreate.
    pub async fn create(env: &Env, req: CreateRequest) -> Result<Arc<Container>> {
        let id = req.id.clone();
        let spec = read_spec(&req.bundle, &id)?;
        // One container's annotation, then its runtime options, then the shim's default.
        let deadline = spec
            .runc_timeout
            .or((req.options.runc_timeout_ms > 0)
                .then(|| Duration::from_millis(req.options.runc_timeout_ms)))
            .unwrap_or(env.deadline);
        let runc = runc_for(&req.options, &env.namespace, deadline)?;
        let options_json = serde_json::to_vec(&req.options)
            .map_err(|e| Error::Internal(format!("create container {id}: encode options: {e}")))?;
        tokio::fs::write(req.bundle.join(OPTIONS_FILE), options_json)
            .await
            .map_err(|e| Error::Internal(format!("create container {id}: write options: {e}")))?;

        let rootfs = if req.rootfs.is_empty() {
            None
        } else {
            let target = req.bundle.join("rootfs");
            tokio::fs::create_dir_all(&target).await.map_err(|e| {
                Error::Internal(format!(
                    "create container {id}: mkdir {}: {e}",
                    target.display()
                ))
            })?;
            for m in &req.rootfs {
                if let Err(e) = containerd_shim::util::mount_rootfs(m, &target).await {
                    unmount(&target).await;
                    return Err(Error::Internal(format!(
                        "create container {id}: mount {} on {}: {e}",
                        m.source,
                        target.display()
                    )));
                }
            }
            Some(target)
        };

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
        // A container created from a checkpoint is restored by Start, as the Go shim does.
        let restore = (!req.checkpoint.is_empty()).then(|| Restore {
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
        });
        let (io, pid) = if restore.is_some() {
            (None, 0)
        } else {
            let (io, pid) =
                Self::run_create(&id, &req, &runc, &opts, &io_ctx, rootfs.as_deref()).await?;
            (Some(io), pid)
        };

        let init = Arc::new(Process::new(
            id.clone(),
            id.clone(),
            Kind::Init,
            req.stdio.clone(),
            Vec::new(),
        ));
        init.set_pid(pid);
        if let Some(io) = io {
            init.set_io(io);
        }
        let container = Arc::new(Container {
            id: id.clone(),
            bundle: req.bundle.clone(),
            runc,
            rootfs,
            io_ctx,
            kill_all_on_exit: !spec.own_pid_namespace,
            init: init.clone(),
            execs: Mutex::new(HashMap::new()),
            order: Mutex::new(ExitOrder::default()),
            publisher: env.publisher.clone(),
            oom_watch: Mutex::new(None),
            restore: Mutex::new(restore),
        });
        container.publisher.publish(TaskEvent::Create {
            container_id: id.clone(),
            bundle: req.bundle.display().to_string(),
            rootfs: req.rootfs,
            stdin: req.stdio.stdin,
            stdout: req.stdio.stdout,
            stderr: req.stdio.stderr,
            terminal: req.stdio.terminal,
            checkpoint: req.checkpoint.clone(),
            pid,
        });
        if pid != 0 {
            container.watch_oom(pid);
            container.watch_exit(init, reaper::watch(pid as i32));
            info!("created container {id} with init pid {pid}");
        } else {
            info!(
                "created container {id}, to be restored from {}",
                req.checkpoint
            );
        }
        Ok(container)
    }

    /// `runc create` with the process's stdio set up around it; undoes what it can on failure.
    async fn run_create(
        id: &str,
        req: &CreateRequest,
        runc: &Runc,
        opts: &CreateOpts,
        io_ctx: &IoContext,
        rootfs: Option<&Path>,
    ) -> Result<(Arc<ProcessIo>, u32)> {
        let pid_file = req.bundle.join("init.pid");
        let what = format!("create container {id}");
        let created = run_with_io(&what, id, &req.stdio, io_ctx, |rio| {
            runc.create(id, &req.bundle, &pid_file, opts, rio)
        })
        .await;
        let created = match created {
            Ok(io) => read_pid(&pid_file)
                .await
                .map(|pid| (io.clone(), pid))
                .map_err(|e| {
                    io.shutdown();
                    Error::Internal(format!(
                        "{what}: runc create left no pid in {}: {e}",
                        pid_file.display()
                    ))
                }),
            Err((io, e)) => {
                if let Some(io) = io {
                    io.shutdown();
                }
                Err(e)
            }
        };
        let (io, pid) = match created {
            Ok(v) => v,
            Err(e) => {
                if let Err(de) = runc.delete(id, Some(&req.bundle), true).await {
                    if !de.is_not_exist() {
                        warn!("cleaning up failed create of {id}: {de}");
                    }
                }
                if let Some(r) = rootfs {
                    unmount(r).await;
                }
                return Err(e);
            }
        };

        Ok((io, pid))
    }

    pub fn init_pid(&self) -> u32 {
        self.init.pid()
    }

    fn process(&self, exec_id: &str) -> Result<Arc<Process>> {
        if exec_id.is_empty() {
            return Ok(self.init.clone());
        }
        lock(&self.execs).get(exec_id).cloned().ok_or_else(|| {
            Error::NotFound(format!("exec {exec_id} not found in container {}", self.id))
        })
    }

    /// Registers an exec (not started); publishes TaskExecAdded.
    pub fn add_exec(&self, exec_id: &str, spec: Vec<u8>, stdio: StdioPaths) -> Result<()> {
        let spec = with_terminal(&spec, stdio.terminal).map_err(|e| {
            Error::InvalidArgument(format!("exec {exec_id} in container {}: {e}", self.id))
        })?;
        arg_limits::check_process_json(&spec).map_err(|e| {
            Error::InvalidArgument(format!("exec {exec_id} in container {}: {e}", self.id))
        })?;
        self.init
            .check(Op::Exec)
            .map_err(|r| Error::refused(&format!("exec {exec_id} in container {}", self.id), r))?;
        {
            let mut execs = lock(&self.execs);
            if execs.contains_key(exec_id) {
                return Err(Error::AlreadyExists(format!(
                    "exec {exec_id} already exists in container {}",
                    self.id
                )));
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

    pub async fn start(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        if exec_id.is_empty() {
            self.start_init().await
        } else {
            self.start_exec(exec_id).await
        }
    }

    async fn start_init(self: &Arc<Self>) -> Result<u32> {
        let what = format!("start container {}", self.id);
        let prev = self
            .init
            .begin(Op::Start, State::Starting)
            .map_err(|r| Error::refused(&what, r))?;
        let restore = lock(&self.restore).take();
        let started = match &restore {
            Some(r) => self.restore_init(r, &what).await,
            None => self
                .runc
                .start(&self.id, &self.bundle)
                .await
                .map_err(|e| Error::runc(&what, e)),
        };
        if let Err(e) = started {
            self.init.restore(prev);
            *lock(&self.restore) = restore;
            return Err(e);
        }
        self.init.set_running();
        let pid = self.init.pid();
        self.publisher.publish(TaskEvent::Start {
            container_id: self.id.clone(),
            pid,
        });
        info!("started container {} (pid {pid})", self.id);
        Ok(pid)
    }

    /// `runc restore` of a container created from a checkpoint: Start's work in that case.
    async fn restore_init(self: &Arc<Self>, r: &Restore, what: &str) -> Result<()> {
        let pid_file = self.bundle.join("init.pid");
        let res = run_with_io(what, &self.id, &self.init.stdio, &self.io_ctx, |rio| {
            self.runc
                .restore(&self.id, &self.bundle, &pid_file, &r.opts, &r.args, rio)
        })
        .await;
        let io = match res {
            Ok(io) => io,
            Err((io, e)) => {
                if let Some(io) = io {
                    io.shutdown();
                }
                return Err(e);
            }
        };
        let pid = read_pid(&pid_file)
            .await
            .map_err(|e| Error::Internal(format!("{what}: runc restore left no pid: {e}")))?;
        self.init.set_pid(pid);
        self.init.set_io(io);
        self.watch_oom(pid);
        self.watch_exit(self.init.clone(), reaper::watch(pid as i32));
        Ok(())
    }

    /// `runc checkpoint`; publishes TaskCheckpointed.
    pub async fn checkpoint(&self, path: &str, s: &CheckpointSettings) -> Result<()> {
        let what = format!("checkpoint container {}", self.id);
        match self.init.snapshot().state {
            State::Running | State::Paused => {}
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "{what}: the container is {}",
                    other.name()
                )))
            }
        }
        let image_path = if s.image_path.is_empty() {
            path
        } else {
            &s.image_path
        };
        if image_path.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{what}: no checkpoint path"
            )));
        }
        let args = CheckpointArgs {
            image_path: PathBuf::from(image_path),
            work_path: if s.work_path.is_empty() {
                self.bundle.join("criu-work")
            } else {
                PathBuf::from(&s.work_path)
            },
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
            .map_err(|e| Error::runc(&what, e))?;
        self.publisher.publish(TaskEvent::Checkpointed {
            container_id: self.id.clone(),
            checkpoint: image_path.to_string(),
        });
        Ok(())
    }

    async fn start_exec(self: &Arc<Self>, exec_id: &str) -> Result<u32> {
        let p = self.process(exec_id)?;
        let what = format!("start exec {exec_id} in container {}", self.id);
        self.init
            .check(Op::Exec)
            .map_err(|r| Error::refused(&what, r))?;
        let prev = p
            .begin(Op::Start, State::Starting)
            .map_err(|r| Error::refused(&what, r))?;
        self.warn_if_near_pids_max(exec_id);
        match self.run_exec(&p, &what).await {
            Ok(pid) => Ok(pid),
            Err(e) => {
                // The exec never ran: let Wait and Delete see it ended.
                if prev == State::Created {
                    p.set_exited(ExitInfo {
                        status: 255,
                        at: SystemTime::now(),
                    });
                }
                Err(e)
            }
        }
    }

    async fn run_exec(self: &Arc<Self>, p: &Arc<Process>, what: &str) -> Result<u32> {
        let exec_id = p.id.as_str();
        let spec_file = self.bundle.join(format!(".sluice-exec-{exec_id}.json"));
        let pid_file = self.bundle.join(format!(".sluice-exec-{exec_id}.pid"));
        tokio::fs::write(&spec_file, &p.spec)
            .await
            .map_err(|e| Error::Internal(format!("{what}: write process spec: {e}")))?;
        let res = run_with_io(what, &p.label(), &p.stdio, &self.io_ctx, |rio| {
            self.runc
                .exec(&self.id, &self.bundle, &spec_file, &pid_file, rio)
        })
        .await;
        let _ = tokio::fs::remove_file(&spec_file).await;
        match res {
            Ok(io) => p.set_io(io),
            Err((io, e)) => {
                // What the exec wrote before it failed still reaches the client.
                if let Some(io) = io {
                    p.set_io(io);
                }
                return Err(e);
            }
        }
        let pid = read_pid(&pid_file)
            .await
            .map_err(|e| Error::Internal(format!("{what}: runc exec left no pid: {e}")))?;
        let _ = tokio::fs::remove_file(&pid_file).await;
        p.set_pid(pid);
        lock(&self.order).running_execs += 1;
        p.set_running();
        self.publisher.publish(TaskEvent::ExecStarted {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
            pid,
        });
        self.watch_exit(p.clone(), reaper::watch(pid as i32));
        debug!(
            "started exec {exec_id} in container {} (pid {pid})",
            self.id
        );
        Ok(pid)
    }

    /// Publishes TaskOOM whenever the kernel's OOM killer acts in this container's cgroup.
    fn watch_oom(&self, pid: u32) {
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
        let task = tokio::spawn(async move {
            while watcher.next().await.is_some() {
                info!("container {id}: out of memory");
                publisher.publish(TaskEvent::Oom {
                    container_id: id.clone(),
                });
            }
        });
        *lock(&self.oom_watch) = Some(task);
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

    /// The container's cgroup metrics, as the `Any` containerd's `Stats` expects.
    pub fn stats(&self) -> Result<containerd_shim::protos::protobuf::well_known_types::any::Any> {
        let what = format!("stats of container {}", self.id);
        let pid = self.init.pid();
        CgroupFs::host()
            .for_pid(pid)
            .and_then(|cg| cg.metrics_any())
            .map_err(|e| match e {
                CgroupError::Gone { .. } | CgroupError::ProcCgroup { .. } => {
                    Error::NotFound(format!("{what}: {e}"))
                }
                e => Error::Internal(format!("{what}: {e}")),
            })
    }

    fn watch_exit(self: &Arc<Self>, p: Arc<Process>, watch: ExitWatch) {
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

    async fn on_exit(&self, p: &Process, exit: ExitInfo) {
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
                if order.running_execs == 0 {
                    if let Some(init_exit) = order.pending_init_exit.take() {
                        self.finish_init_exit(init_exit);
                    }
                }
            }
            Kind::Init => {
                if self.kill_all_on_exit {
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
                self.settle_output(p).await;
                let mut order = lock(&self.order);
                if order.running_execs > 0 {
                    // Told after the last exec's exit, as containerd expects.
                    order.pending_init_exit = Some(exit);
                } else {
                    self.finish_init_exit(exit);
                }
            }
        }
    }

    /// Before an exit is told (Wait returns, TaskExit goes out): lets the output reach its
    /// reader, briefly. Clients close their FIFOs when they see the exit (ctr 1.6 even before
    /// it waits for EOF), so output still on its way then is lost. Bounded, because a child
    /// that outlives the process may hold its pipes open for ever.
    async fn settle_output(&self, p: &Process) {
        if let Some(io) = p.io() {
            if !io.wait_delivered(EXIT_SETTLE_LIMIT).await {
                debug!(
                    "{}: output still open {EXIT_SETTLE_LIMIT:?} after the exit; telling the exit",
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

    /// Sends `signal` to a process (or, for init with `all`, to every process in the container).
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let p = self.process(exec_id)?;
        let what = match p.kind {
            Kind::Init => format!("kill container {}", self.id),
            Kind::Exec => format!("kill exec {exec_id} in container {}", self.id),
        };
        p.check(Op::Kill).map_err(|r| Error::refused(&what, r))?;
        match p.kind {
            Kind::Init => match self.runc.kill(&self.id, &self.bundle, signal, all).await {
                Ok(()) => Ok(()),
                Err(e) if e.is_already_finished() => {
                    Err(Error::NotFound(format!("{what}: process already finished")))
                }
                Err(e) => Err(Error::runc(what, e)),
            },
            Kind::Exec => {
                let pid = p.pid();
                if pid == 0 {
                    return Err(Error::FailedPrecondition(format!(
                        "{what}: the process has not started"
                    )));
                }
                // SAFETY: kill(2) with a pid and a validated signal number has no memory effects.
                let rc = unsafe { libc::kill(pid as i32, signal as i32) };
                if rc == 0 {
                    return Ok(());
                }
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::ESRCH) {
                    Err(Error::NotFound(format!("{what}: process already finished")))
                } else {
                    Err(Error::Internal(format!("{what}: kill pid {pid}: {err}")))
                }
            }
        }
    }

    /// Deletes an exec; returns its pid and exit.
    pub async fn delete_exec(&self, exec_id: &str) -> Result<(u32, ExitInfo)> {
        let p = self.process(exec_id)?;
        let what = format!("delete exec {exec_id} in container {}", self.id);
        p.begin(Op::Delete, State::Deleting)
            .map_err(|r| Error::refused(&what, r))?;
        if let Some(io) = p.io() {
            if !io.wait_delivered(IO_DRAIN_LIMIT).await {
                warn!("{}: output not fully delivered before delete", p.label());
            }
            io.shutdown();
        }
        lock(&self.execs).remove(exec_id);
        let exit = p.exit().unwrap_or(ExitInfo {
            status: 0,
            at: SystemTime::now(),
        });
        Ok((p.pid(), exit))
    }

    /// Deletes the container: `runc delete`, unmount, close IO; publishes TaskDelete.
    pub async fn delete_init(&self) -> Result<(u32, ExitInfo)> {
        let what = format!("delete container {}", self.id);
        let prev = self
            .init
            .begin(Op::Delete, State::Deleting)
            .map_err(|r| Error::refused(&what, r))?;
        let io = self.init.io();
        if let Some(io) = &io {
            if !io.wait_delivered(IO_DRAIN_LIMIT).await {
                warn!("{}: output not fully delivered before delete", self.id);
            }
        }
        match self.runc.delete(&self.id, Some(&self.bundle), true).await {
            Ok(()) => {}
            Err(e) if e.is_not_exist() => {}
            Err(e) => {
                self.init.restore(prev);
                return Err(Error::runc(what, e));
            }
        }
        if let Some(io) = &io {
            io.shutdown();
        }
        if let Some(r) = &self.rootfs {
            unmount(r).await;
        }
        if let Some(t) = lock(&self.oom_watch).take() {
            t.abort();
        }
        // A created (never started) init is killed by runc delete; its exit comes via the reaper.
        let exit = match self.init.exit() {
            Some(e) => e,
            None => tokio::time::timeout(Duration::from_secs(2), self.init.wait())
                .await
                .unwrap_or(ExitInfo {
                    status: 128 + libc::SIGKILL as u32,
                    at: SystemTime::now(),
                }),
        };
        let pid = self.init.pid();
        self.publisher.publish(TaskEvent::Delete {
            container_id: self.id.clone(),
            id: String::new(),
            pid,
            exit_status: exit.status,
            exited_at: exit.at,
        });
        info!("deleted container {}", self.id);
        Ok((pid, exit))
    }

    pub async fn pause(&self) -> Result<()> {
        let what = format!("pause container {}", self.id);
        let prev = self
            .init
            .begin(Op::Pause, State::Running)
            .map_err(|r| Error::refused(&what, r))?;
        if let Err(e) = self.runc.pause(&self.id, &self.bundle).await {
            self.init.restore(prev);
            return Err(Error::runc(what, e));
        }
        self.init.settle(State::Paused);
        self.publisher.publish(TaskEvent::Paused {
            container_id: self.id.clone(),
        });
        Ok(())
    }

    pub async fn resume(&self) -> Result<()> {
        let what = format!("resume container {}", self.id);
        let prev = self
            .init
            .begin(Op::Resume, State::Paused)
            .map_err(|r| Error::refused(&what, r))?;
        if let Err(e) = self.runc.resume(&self.id, &self.bundle).await {
            self.init.restore(prev);
            return Err(Error::runc(what, e));
        }
        self.init.settle(State::Running);
        self.publisher.publish(TaskEvent::Resumed {
            container_id: self.id.clone(),
        });
        Ok(())
    }

    /// `runc update` with OCI `LinuxResources` JSON.
    pub async fn update(&self, resources: &[u8]) -> Result<()> {
        let what = format!("update container {}", self.id);
        let file = self.bundle.join(".sluice-update.json");
        tokio::fs::write(&file, resources)
            .await
            .map_err(|e| Error::Internal(format!("{what}: write resources: {e}")))?;
        let res = self.runc.update(&self.id, &self.bundle, &file).await;
        let _ = tokio::fs::remove_file(&file).await;
        res.map_err(|e| Error::runc(what, e))
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
            return Err(Error::FailedPrecondition(format!(
                "{what}: the process has stopped"
            )));
        }
        let Some(io) = p.io().filter(|_| p.stdio.terminal) else {
            return Ok(());
        };
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        io.resize(clamp(width), clamp(height))
            .map_err(|e| Error::FailedPrecondition(format!("{what}: {e}")))
    }

    pub fn close_stdin(&self, exec_id: &str) -> Result<()> {
        self.process(exec_id)?.close_stdin();
        Ok(())
    }

    /// The pids in the container, each with the exec ID it belongs to, if any.
    pub async fn pids(&self) -> Result<Vec<(u32, Option<String>)>> {
        let pids = self
            .runc
            .ps(&self.id, &self.bundle)
            .await
            .map_err(|e| Error::runc(format!("list processes of container {}", self.id), e))?;
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
