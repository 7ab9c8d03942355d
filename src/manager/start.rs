//! `start`: find or spawn the shim that serves this container's group, and tell containerd
//! where it listens.
//!
//! Matches containerd's `manager.Start`: one shim per group of containers sharing
//! `io.kubernetes.cri.sandbox-id` or `io.containerd.runc.v2.group`, its socket address derived
//! from containerd's address, namespace and group, and an `address` file in the bundle.

use std::{
    io::Read,
    os::unix::{
        fs::{DirBuilderExt, PermissionsExt},
        net::UnixStream,
        process::CommandExt,
    },
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use containerd_shim::{Error as ShimError, StartOpts};
use log::{debug, warn};
use sluice_shim_proto::{
    bootstrap::{
        self,
        reply::{choose_reply, MountCapabilities, Served, StartFacts},
        StartInput,
    },
    options::RuncOptions,
};

use super::{daemon, other, socket_path};

/// Annotations that put containers into one shim (the Go shim's list).
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.kubernetes.cri.sandbox-id",
    "io.containerd.runc.v2.group",
];
/// How long `start` waits for the new shim to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes sure a shim serves this container's group; returns what `start` prints on stdout.
pub fn start(bundle: &Path, mut opts: StartOpts) -> Result<String, ShimError> {
    let input = read_input(&mut opts)?;
    let runc_options = input
        .runc_options()
        .map_err(|e| other(format!("start container {}: {e}", opts.id)))?;
    let group = group_of(bundle, &opts.id);
    let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
    let serves_v3 = if serving(&address) {
        daemon::server_is_this_binary(socket_path(&address))
    } else {
        spawn_for_group(&opts, &address, &runc_options)?;
        true
    };
    std::fs::write(bundle.join("address"), &address)
        .map_err(|e| other(format!("write address file: {e}")))?;
    bootstrap_reply(bundle, &input, &opts, &address, serves_v3)
}

/// The reply containerd reads from `start`'s stdout: the newest task API both the daemon and
/// the group's server speak, in the form that daemon reads (docs/bootstrap.md).
fn bootstrap_reply(
    bundle: &Path,
    input: &StartInput,
    opts: &StartOpts,
    address: &str,
    serves_v3: bool,
) -> Result<String, ShimError> {
    let max_shim_version = std::env::var("MAX_SHIM_VERSION").ok();
    // Asked only where it decides something: a daemon that sets MAX_SHIM_VERSION and sends no
    // BootstrapParams is 1.7 (task v2 only) or 2.0–2.2 (task v3), and nothing else tells which.
    let daemon_version = match (input, &max_shim_version) {
        (StartInput::Bootstrap(_), _) | (_, None) => None,
        _ => daemon::version(&opts.publish_binary, bundle),
    };
    let facts = StartFacts {
        stdin: input,
        cli_id: &opts.id,
        cli_namespace: &opts.namespace,
        max_shim_version: max_shim_version.as_deref(),
        daemon_version,
    };
    let mounts = MountCapabilities::default();
    let served = Served {
        address,
        serves_v3,
        mount_capabilities: Some(&mounts),
    };
    let what = || format!("start container {}", opts.id);
    let reply = choose_reply(&facts, &served).map_err(|e| other(format!("{}: {e}", what())))?;
    debug!(
        "{}: daemon {:?}, task API {:?}, reply as {:?}",
        what(),
        reply.daemon,
        reply.task_api,
        reply.form
    );
    // The crate writes a String; a result for an address under 128 bytes is ASCII throughout.
    String::from_utf8(reply.bytes)
        .map_err(|_| other(format!("{}: the bootstrap result is not UTF-8", what())))
}

/// Reads what containerd writes to stdin (its options or, from 2.3 on, BootstrapParams) and
/// fills in from it what the flags left empty.
fn read_input(opts: &mut StartOpts) -> Result<StartInput, ShimError> {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    // Checked against the flags: a pre-2.3 options `Any` can decode as BootstrapParams.
    let input = bootstrap::parse_checked(&stdin, &opts.id, &opts.namespace)
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
    Ok(input)
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

fn serving(address: &str) -> bool {
    UnixStream::connect(socket_path(address)).is_ok()
}

/// Starts the group's shim on `address`: its socket owner-only, in the shim cgroup asked for,
/// with containerd's OOM score.
fn spawn_for_group(
    opts: &StartOpts,
    address: &str,
    runc_options: &RuncOptions,
) -> Result<(), ShimError> {
    let path = socket_path(address);
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
    let pid = spawn_server(opts, address)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| other(format!("restrict {path}: {e}")))?;
    if !runc_options.shim_cgroup.is_empty() {
        crate::cgroup::add_process(Path::new("/sys/fs/cgroup"), &runc_options.shim_cgroup, pid)
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
    Ok(())
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
    // a pipe that reaches EOF once it listens (serve.rs points stdout at stderr then).
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
