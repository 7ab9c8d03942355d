//! A process's stdio set up around the runc call that starts it.

use std::sync::Arc;

use super::error::ContainerError;
use crate::{
    io::{IoContext, ProcessIo, StdioPaths},
    runc::{ProcessStdio, RuncError, RuncIo},
};

/// A failed start, with the IO that was set up, so that what the process wrote before runc
/// failed can still be delivered (or closed).
pub(super) struct Failed {
    pub io: Option<Arc<ProcessIo>>,
    pub error: ContainerError,
}

impl Failed {
    /// Closes the IO and keeps the error: for callers with nobody to deliver to.
    pub fn shut(self) -> ContainerError {
        if let Some(io) = self.io {
            io.shutdown();
        }
        self.error
    }
}

/// Runs a runc create, exec or restore (`call`) with the process's stdio set up around it:
/// pipes already being drained before runc starts (DESIGN.md's invariant: runc can never block
/// on a full pipe while we wait for it), or a console socket being accepted on.
pub(super) async fn run_with_io<F, Fut>(
    what: &str,
    name: &str,
    stdio: &StdioPaths,
    ctx: &IoContext,
    call: F,
) -> Result<Arc<ProcessIo>, Failed>
where
    F: FnOnce(RuncIo) -> Fut,
    Fut: std::future::Future<Output = Result<(), RuncError>>,
{
    let alone = |error| Failed { io: None, error };
    if stdio.terminal {
        let pending = ProcessIo::prepare_terminal(name, stdio)
            .map_err(|e| alone(ContainerError::io(what, e)))?;
        let socket = pending.socket_path().to_path_buf();
        call(RuncIo::Console(socket))
            .await
            .map_err(|e| alone(ContainerError::runc(what, e)))?;
        let io = pending
            .finish()
            .await
            .map_err(|e| alone(ContainerError::io(what, e)))?;
        return Ok(Arc::new(io));
    }
    let (io, child) = ProcessIo::start(name, stdio, ctx)
        .await
        .map_err(|e| alone(ContainerError::io(what, e)))?;
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
        Err(e) => Err(Failed {
            io: Some(io),
            error: ContainerError::runc(what, e),
        }),
    }
}
