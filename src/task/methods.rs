//! The Task API's methods, listed once.
//!
//! Each line of the list names a method as it goes on the wire, the [`Service`] handler that
//! answers it, and its request and response types. From the list come both the `Task` trait
//! impl that the generated ttrpc dispatcher calls and [`TASK_METHODS`], the table the guard
//! checks payloads with: a method added to one cannot be missing from the other.

use async_trait::async_trait;
use containerd_shim::protos::{
    api::{self, Empty},
    protobuf::Message,
    shim_async::Task,
    ttrpc::{self, r#async::TtrpcContext},
};

use super::Service;

/// Checks that a payload decodes as one method's request type.
pub type Decode = fn(&[u8]) -> Result<(), String>;

fn decodes<M: Message>(payload: &[u8]) -> Result<(), String> {
    M::parse_from_bytes(payload)
        .map(drop)
        .map_err(|e| e.to_string())
}

macro_rules! task_methods {
    ($($wire:literal => $name:ident($req:ty) -> $resp:ty;)*) => {
        #[async_trait]
        impl Task for Service {
            $(
                async fn $name(&self, _ctx: &TtrpcContext, req: $req) -> ttrpc::Result<$resp> {
                    let _serving = self.serving();
                    if $wire == "Wait" {
                        // Waits for an exit, as long as that takes: a client that gives up
                        // ends it.
                        return Service::$name(self, req).await.map_err(Into::into);
                    }
                    // The ttrpc crate drops a handler whose client's deadline passed. Cut
                    // there, a request would leave its transaction in its transitional state
                    // ("being deleted" for ever) and runc running unwatched; so it runs to its
                    // own bounds in a task of its own, and a retry finds its outcome
                    // (containerd retries a Delete it gave up on: #7496, #8981).
                    let this = self.clone();
                    let work = tokio::spawn(async move {
                        let _serving = this.serving();
                        Service::$name(&this, req).await
                    });
                    match work.await {
                        Ok(answer) => answer.map_err(Into::into),
                        Err(e) => Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                            ttrpc::Code::INTERNAL,
                            format!("{}: {e}", $wire),
                        ))),
                    }
                }
            )*
        }

        /// Every Task API method and the request type its payload must decode as.
        pub const TASK_METHODS: [(&str, Decode); [$($wire),*].len()] =
            [$(($wire, decodes::<$req>)),*];
    };
}

task_methods! {
    "State" => state(api::StateRequest) -> api::StateResponse;
    "Create" => create(api::CreateTaskRequest) -> api::CreateTaskResponse;
    "Start" => start(api::StartRequest) -> api::StartResponse;
    "Delete" => delete(api::DeleteRequest) -> api::DeleteResponse;
    "Pids" => pids(api::PidsRequest) -> api::PidsResponse;
    "Pause" => pause(api::PauseRequest) -> Empty;
    "Resume" => resume(api::ResumeRequest) -> Empty;
    "Checkpoint" => checkpoint(api::CheckpointTaskRequest) -> Empty;
    "Kill" => kill(api::KillRequest) -> Empty;
    "Exec" => exec(api::ExecProcessRequest) -> Empty;
    "ResizePty" => resize_pty(api::ResizePtyRequest) -> Empty;
    "CloseIO" => close_io(api::CloseIORequest) -> Empty;
    "Update" => update(api::UpdateTaskRequest) -> Empty;
    "Wait" => wait(api::WaitRequest) -> api::WaitResponse;
    "Stats" => stats(api::StatsRequest) -> api::StatsResponse;
    "Connect" => connect(api::ConnectRequest) -> api::ConnectResponse;
    "Shutdown" => shutdown(api::ShutdownRequest) -> Empty;
}
