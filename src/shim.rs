//! The shim's life outside the Task service: `start` (find or spawn the shim that serves this
//! container's group), `delete` (clean up after a shim that died), and serving.
//!
//! Matches containerd's `cmd/containerd-shim-runc-v2/manager`: one shim per group of containers
//! sharing `io.kubernetes.cri.sandbox-id` or `io.containerd.runc.v2.group`, its socket address
//! derived from containerd's address, namespace and group, and an `address` file in the bundle.

use std::{
    io::Read,
    os::unix::{
        fs::{DirBuilderExt, PermissionsExt},
        net::UnixStream,
        process::CommandExt,
    },
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use async_trait::async_trait;
use containerd_shim::{
    publisher::RemotePublisher, Config, DeleteResponse, Error as ShimError, ExitSignal, Flags,
    StartOpts,
};
use log::{info, warn};
use sluice_shim_proto::{
    bootstrap::{self, StartInput},
    options::RuncOptions,
    protobuf::MessageField,
    time::timestamp,
};

use crate::{
    container::{Env, OPTIONS_FILE},
    events::Publisher,
    runc::Runc,
    service::Service,
};

/// Annotations that put containers into one shim (the Go shim's list).
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];
/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.sluice.v2";
/// How long `start` waits for the new shim to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SluiceShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    bundle: PathBuf,
    /// The socket this server listens on (`-socket`).
    socket: String,
}

/// The config the crate's runner needs: our own reaper and logger.
pub fn config() -> Config {
    Config {
        no_setup_logger: true,
        default_log_level: "info".into(),
        no_reaper: true,
        no_sub_reaper: false,
    }
}

fn other(msg: String) -> ShimError {
    ShimError::Other(msg)
}

/// The group this bundle's container belongs to: a group annotation, or its own ID.
fn group_of(bundle: &Path, id: &str) -> String {
    let Ok(spec) = oci_spec::runtime::Spec::load(bundle.join("config.json")) else {
        return id.to_string();
    };
    spec.annotations()
        .as_ref()
        .and_then(|a| {
            GROUP_ANNOTATIONS
                .iter()
                .find_map(|k| a.get(*k).filter(|v| !v.is_empty()).cloned())
        })
        .unwrap_or_else(|| id.to_string())
}

pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn serving(address: &str) -> bool {
    UnixStream::connect(socket_path(address)).is_ok()
}

/// Spawns the serving shim and waits until it listens on `address`.
fn spawn_server(opts: &StartOpts, address: &str) -> Result<u32, ShimError> {
    let exe = std::env::current_exe().map_err(|e| other(format!("locate own binary: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &opts.namespace,
        "-id",
        &opts.id,
        "-address",
        &opts.address,
        "-socket",
        address,
    ]);
    if opts.debug {
        cmd.arg("-debug");
    }
    // containerd waits for EOF on start's output: the server must not inherit it. Its stdout is
    // a pipe that reaches EOF once it listens (the crate points stdout at stderr then).
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| other(format!("spawn shim server: {e}")))?;
    let pid = child.id();
    if let Some(mut out) = child.stdout.take() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = out.read_to_end(&mut sink);
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(LISTEN_TIMEOUT);
    }
    let deadline = Instant::now() + LISTEN_TIMEOUT;
    while !serving(address) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(other(format!(
                "shim server exited with {status} before listening on {address}"
            )));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(other(format!(
                "shim server did not listen on {address} within {LISTEN_TIMEOUT:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(pid)
}

#[async_trait]
impl containerd_shim::Shim for SluiceShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        if !matches!(args.action.as_str(), "start" | "delete") {
            crate::logger::init(&bundle.join("log"), args.debug, &args.namespace, &args.id);
        }
        SluiceShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            socket: args.socket.clone(),
        }
    }

    async fn start_shim(&mut self, mut opts: StartOpts) -> Result<String, ShimError> {
        // containerd writes its options (or, from 2.3 on, BootstrapParams) to stdin.
        let mut stdin = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut stdin);
        let input = bootstrap::parse(&stdin)
            .map_err(|e| other(format!("start container {}: {e}", opts.id)))?;
        if let StartInput::Bootstrap(p) = &input {
            if opts.namespace.is_empty() {
                opts.namespace = p.namespace.clone();
            }
            if opts.id.is_empty() {
                opts.id = p.instance_id.clone();
            }
        }
        opts.debug |= input.wants_debug();
        let runc_options = input
            .runc_options()
            .map_err(|e| other(format!("start container {}: {e}", opts.id)))?;
        let group = group_of(&self.bundle, &opts.id);
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        if !serving(&address) {
            let path = socket_path(&address);
            if Path::new(path).exists() {
                // A shim of this group died and left its socket behind.
                let _ = std::fs::remove_file(path);
            }
            // Only root may reach a shim: it runs anything as anyone.
            if let Some(dir) = Path::new(path).parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| other(format!("create {}: {e}", dir.display())))?;
            }
            let pid = spawn_server(&opts, &address)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| other(format!("restrict {path}: {e}")))?;
            if !runc_options.shim_cgroup.is_empty() {
                crate::cgroup::add_process(
                    Path::new("/sys/fs/cgroup"),
                    &runc_options.shim_cgroup,
                    pid,
                )
                .map_err(|e| {
                    // A server outside its cgroup is not what was asked for: stop it.
                    // SAFETY: kill(2) has no memory effects.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    other(format!(
                        "move shim {pid} into cgroup {}: {e}",
                        runc_options.shim_cgroup
                    ))
                })?;
            }
            if let Err(e) = containerd_shim::cgroup::adjust_oom_score(pid) {
                // Without CAP_SYS_RESOURCE a negative score cannot be inherited; run without it.
                warn!("cannot adjust the oom score of shim {pid}: {e}");
            }
        }
        std::fs::write(self.bundle.join("address"), &address)
            .map_err(|e| other(format!("write address file: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, ShimError> {
        crate::reaper::start().map_err(|e| other(format!("start reaper: {e}")))?;
        let options: RuncOptions = std::fs::read(self.bundle.join(OPTIONS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let runc: Runc =
            crate::runc::runc_for(&options, &self.namespace, Runc::deadline_from_env())
                .map_err(|e| other(format!("delete container {}: {e}", self.id)))?;
        if let Err(e) = runc.delete(&self.id, Some(&self.bundle), true).await {
            if !e.is_not_exist() {
                warn!("delete container {}: {e}", self.id);
            }
        }
        let rootfs = self.bundle.join("rootfs");
        let target = rootfs.display().to_string();
        let _ = tokio::task::spawn_blocking(move || {
            containerd_shim::mount::umount_recursive(Some(&target), libc::MNT_DETACH)
        })
        .await;
        Ok(DeleteResponse {
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // The crate removes the socket named in `./address`, but our working directory is the
        // first container's bundle, which containerd may have deleted already (a group outlives
        // its first container): remove the socket we were told to serve on ourselves.
        if !self.socket.is_empty() {
            let path = socket_path(&self.socket);
            if let Err(e) = std::fs::remove_file(path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!("cannot remove socket {path}: {e}");
                }
            }
        }
    }

    async fn create_task_service(&self, _publisher: RemotePublisher) -> Service {
        // Our own ordered queue replaces the crate's publisher (which can reorder on retries).
        if let Err(e) = crate::reaper::start() {
            log::error!("cannot watch for child exits: {e}");
        }
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        info!("serving namespace {} for {}", self.namespace, self.id);
        // containerd starts the server in the first container's bundle; every bundle of this
        // namespace sits beside it.
        let bundle_root = std::env::current_dir()
            .ok()
            .and_then(|d| d.parent().map(Path::to_path_buf));
        let env = Env {
            namespace: self.namespace.clone(),
            publisher: Publisher::connect(address, self.namespace.clone()),
            deadline: Runc::deadline_from_env(),
            bundle_root,
        };
        Service::new(env, self.exit.clone())
    }
}
