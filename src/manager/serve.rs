//! Serving: the shim's long-lived action (no `start` or `delete` verb on the command line).
//!
//! This takes the place of the serve branch of the containerd-shim crate's runner, which builds
//! the ttrpc service map inside itself: running it here lets [`crate::task::services`] put a
//! payload check in front of every Task handler. `start` and `delete` stay with the crate.
//!
//! It keeps every step of the crate's branch, in its order: SIGTERM, SIGINT and SIGPIPE caught
//! (so they do not end the shim), subreaper, `Shim::new`, the Task service, the listener (with
//! the crate's answer to a socket already in use), serving, and only then pointing stdout at
//! stderr, which closes the pipe `start` reads: `start` must not return before the socket
//! accepts connections. The shim ends when the service signals exit (Shutdown).

use std::{
    io::ErrorKind,
    os::unix::{
        fs::{DirBuilderExt, FileTypeExt},
        net::{UnixListener, UnixStream},
    },
    path::Path,
    sync::Arc,
    time::Duration,
};

use containerd_shim::{
    protos::ttrpc::{
        self,
        r#async::{transport::Listener, Server},
    },
    ExitSignal, Flags, Shim,
};
use log::{debug, error, info, warn};
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::{config, socket_path, SluiceShim, RUNTIME_ID};
use crate::{
    container::Env,
    events::Publisher,
    runc::Runc,
    task::{self, Service},
};

/// How often, and how many times, a socket already in use is probed for a live shim (the
/// crate's numbers: one second in all).
const PROBE_INTERVAL: Duration = Duration::from_millis(5);
const PROBES: u32 = 200;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Setup(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("connect to containerd's event service: {0}")]
    Publisher(String),
    #[error("start the ttrpc server: {0}")]
    Server(ttrpc::Error),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServeError {
    let what = what.into();
    move |source| ServeError::Io { what, source }
}

/// Serves the Task API on `flags.socket` until the service signals exit.
pub async fn run(flags: Flags) -> Result<(), ServeError> {
    let ttrpc_address = std::env::var("TTRPC_ADDRESS")
        .map_err(|e| ServeError::Setup(format!("TTRPC_ADDRESS: {e}")))?;
    let mut config = config();
    let signals = Ignored::install()?;
    if !config.no_sub_reaper {
        set_subreaper()?;
    }
    let mut shim = SluiceShim::new(RUNTIME_ID, &flags, &mut config).await;
    if flags.socket.is_empty() {
        return Err(ServeError::Setup("Shim socket cannot be empty".into()));
    }
    // The Go shim (and the crate's runner) fail without a connection to containerd, and so
    // does this one; the connection then carries the events, as the Go shim's does (one
    // connection per shim, not an idle one beside the events').
    let events = crate::events::connect(&ttrpc_address)
        .map_err(|e| ServeError::Publisher(format!("{ttrpc_address}: {e}")))?;
    let services = task::services(Arc::new(shim.task_service(Some(events))));

    let Some(listener) = listen(&flags.socket).await? else {
        // Another shim serves this socket already: tell `start`, and leave.
        server_started();
        return Ok(());
    };
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server.start().await.map_err(ServeError::Server)?;
    server_started();

    info!("Shim successfully started, waiting for exit signal...");
    tokio::spawn(signals.drain());
    shim.wait().await;

    info!("Shutting down shim instance");
    if let Err(e) = server.shutdown().await {
        debug!("ttrpc server shutdown: {e}");
    }
    // As the crate does: the socket named in the working directory's `address` file (the
    // shim's own socket is removed by `wait`).
    if let Ok(address) = tokio::fs::read_to_string("address").await {
        remove_socket(address.trim());
    }
    Ok(())
}

/// The Task service of this shim, publishing its events through our own ordered queue (the
/// crate's publisher can reorder on retries).
pub fn task_service(
    namespace: &str,
    id: &str,
    exit: Arc<ExitSignal>,
    events: Option<crate::events::Client>,
) -> Service {
    if let Err(e) = crate::reaper::start() {
        error!("cannot watch for child exits: {e}");
    }
    let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    info!("serving namespace {namespace} for {id}");
    // containerd starts the server in the first container's bundle; every bundle of this
    // namespace sits beside it.
    let bundle_root = std::env::current_dir()
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf));
    let env = Env {
        namespace: namespace.to_string(),
        publisher: Publisher::start(address, namespace.to_string(), events),
        deadline: Runc::deadline_from_env(),
        bundle_root,
    };
    Service::new(env, exit)
}

/// Removes the socket this shim was told to serve on (`-socket`), once it is done.
///
/// The crate removes the socket named in `./address`, but our working directory is the first
/// container's bundle, which containerd may have deleted already (a group outlives its first
/// container).
pub fn remove_own_socket(socket: &str) {
    if socket.is_empty() {
        return;
    }
    let path = socket_path(socket);
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != ErrorKind::NotFound {
            warn!("cannot remove socket {path}: {e}");
        }
    }
}

/// The signals the shim catches only so that they do not end it.
struct Ignored {
    term: Signal,
    int: Signal,
    pipe: Signal,
}

impl Ignored {
    fn install() -> Result<Ignored, ServeError> {
        let one = |kind: SignalKind, name: &str| signal(kind).map_err(io(format!("handle {name}")));
        Ok(Ignored {
            term: one(SignalKind::terminate(), "SIGTERM")?,
            int: one(SignalKind::interrupt(), "SIGINT")?,
            pipe: one(SignalKind::pipe(), "SIGPIPE")?,
        })
    }

    async fn drain(mut self) {
        loop {
            tokio::select! {
                Some(()) = self.term.recv() => debug!("received SIGTERM"),
                Some(()) = self.int.recv() => debug!("received SIGINT"),
                Some(()) = self.pipe.recv() => {}
                else => break,
            }
        }
    }
}

fn set_subreaper() -> Result<(), ServeError> {
    // SAFETY: PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        return Err(io("become a subreaper")(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn bind(socket: &str) -> std::io::Result<UnixListener> {
    let path = Path::new(socket_path(socket));
    if let Some(dir) = path.parent() {
        // `start` made it already, owner only; this covers a server started by hand.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    UnixListener::bind(path)
}

/// The listener for `socket`, or `None` when a live shim serves it already (then its address
/// is written to `./address`, as the crate does, so that containerd finds it).
async fn listen(socket: &str) -> Result<Option<Listener>, ServeError> {
    let what = || format!("listen on {socket}");
    let listener = match bind(socket) {
        Ok(l) => l,
        Err(e) if e.kind() == ErrorKind::AddrInUse => {
            for _ in 0..PROBES {
                if UnixStream::connect(socket_path(socket)).is_ok() {
                    tokio::fs::write("address", socket)
                        .await
                        .map_err(io("write address file"))?;
                    return Ok(None);
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            // Nobody answers: a socket left by a shim that died.
            remove_socket(socket);
            bind(socket).map_err(io(what()))?
        }
        Err(e) => return Err(io(what())(e)),
    };
    crate::frames::listener(listener)
        .map(Some)
        .map_err(io(format!("serve on {socket}")))
}

/// Removes `address` if it names a socket.
fn remove_socket(address: &str) {
    let path = socket_path(address);
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if is_socket {
        if let Err(e) = std::fs::remove_file(path) {
            warn!("failed to remove socket {path}: {e}");
        }
    }
}

/// Points stdout at stderr. `start` spawned this process with stdout on a pipe and waits for
/// its EOF: this closes the last write end of it.
fn server_started() {
    // SAFETY: dup2 on two descriptors this process owns; no memory is involved.
    if unsafe { libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO) } < 0 {
        // `start` then finds the socket by connecting to it, after its own wait for EOF.
        error!(
            "cannot point stdout at stderr: {}",
            std::io::Error::last_os_error()
        );
    }
}
