//! The shim as a program: everything before and around the Task API, as containerd's
//! `cmd/containerd-shim-runc-v2/manager` is to its `task` package.
//!
//! containerd runs the binary three ways: `start` ([`start`]: find or spawn the shim that serves
//! this container's group, and tell containerd its address), `delete` ([`delete`]: clean up
//! after a shim that died), and with neither verb, serving ([`serve`]: the socket and the ttrpc
//! server in front of [`crate::task`]). containerd 2.x also asks `-info` ([`info`]).

mod daemon;
mod delete;
mod info;
mod serve;
mod start;

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use containerd_shim::{
    publisher::RemotePublisher, Config, DeleteResponse, Error as ShimError, ExitSignal, Flags,
    StartOpts,
};
use tokio::runtime::Runtime;

use crate::task::Service;

/// The runtime name containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.sluice.v2";

/// Runs the action the command line asks for; returns the process exit code (`-info` exits
/// here, the crate's runner exits itself on failure).
pub fn run(runtime: &Runtime, args: &[String]) -> i32 {
    if args
        .iter()
        .skip(1)
        .any(|a| matches!(a.as_str(), "-info" | "--info"))
    {
        std::process::exit(runtime.block_on(info::print()));
    }
    // Serving is ours (serve.rs); `start`, `delete` and flags that do not parse (whose error
    // the crate reports) stay with the crate's runner.
    let os_args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    match containerd_shim::parse(&os_args) {
        Ok(flags) if !matches!(flags.action.as_str(), "start" | "delete") => {
            if let Err(e) = runtime.block_on(serve::run(flags)) {
                log::error!("serve: {e}");
                eprintln!("{RUNTIME_ID}: {e}");
                return 1;
            }
        }
        _ => runtime.block_on(containerd_shim::run::<SluiceShim>(
            RUNTIME_ID,
            Some(config()),
        )),
    }
    0
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

/// The filesystem path of a `unix://` socket address.
pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

fn other(msg: String) -> ShimError {
    ShimError::Other(msg)
}

/// What the crate's runner and [`serve`] hold the shim's command line in; each verb is in
/// its own file.
pub struct SluiceShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    bundle: PathBuf,
    /// The socket this server listens on (`-socket`).
    socket: String,
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

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, ShimError> {
        start::start(&self.bundle, opts)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, ShimError> {
        delete::delete(&self.bundle, &self.namespace, &self.id).await
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        serve::remove_own_socket(&self.socket);
    }

    /// Not called: serving is ours (serve.rs), which hands the service the connection it made
    /// itself. Kept for the trait, it publishes over connections of its own.
    async fn create_task_service(&self, _publisher: RemotePublisher) -> Service {
        self.task_service(None)
    }
}

impl SluiceShim {
    fn task_service(&self, events: Option<crate::events::Client>) -> Service {
        serve::task_service(&self.namespace, &self.id, self.exit.clone(), events)
    }
}
