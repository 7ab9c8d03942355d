//! The Task API (containerd's `task/service.go`): checks each request's input, finds the
//! container, and hands over.
//!
//! Thin on purpose: no runc, no pipes, no state rules here; those live in `container`,
//! `process` and `io`. The container map is locked for lookup and insert only.
//!
//! `methods.rs` lists the methods once; `guard.rs` checks payloads before they reach them;
//! `checks.rs` holds the request field checks; [`services`] is what the ttrpc server serves.

mod checks;
mod guard;
mod in_flight;
mod methods;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard},
};

use containerd_shim::{
    protos::{
        api::{self, Empty, Status},
        protobuf::MessageField,
        shim_async::create_task,
        ttrpc::r#async::Service as TtrpcService,
    },
    ExitSignal,
};
use log::{debug, info};
use sluice_shim_proto::{options, pids::process_details, time::timestamp};

use self::{
    checks::{check_bundle, check_exec_id, check_id, check_signal},
    in_flight::{InFlight, Serving},
};
use crate::{
    container::{Container, CreateRequest, Env},
    error::{Error, Result},
    io::StdioPaths,
    process::State,
};

/// The Task service's name on the wire in task API v2, which every containerd speaks.
pub const TASK_SERVICE: &str = "containerd.task.v2.Task";
/// Its name in task API v3 (containerd 2.x): the same methods and message types.
pub const TASK_SERVICE_V3: &str = "containerd.task.v3.Task";
/// Every name the Task service answers to.
pub const TASK_SERVICES: [&str; 2] = [TASK_SERVICE, TASK_SERVICE_V3];

/// The ttrpc services of `task`, keyed by service name, each method behind the payload guard.
///
/// One implementation answers under both API versions: the generated `create_task` registers
/// v2 only, so it is called twice and the second set of handlers (boxes, which do not clone)
/// is registered under the v3 name.
pub fn services(task: Arc<Service>) -> HashMap<String, TtrpcService> {
    let mut services = create_task(task.clone());
    if let Some(v3) = create_task(task).remove(TASK_SERVICE) {
        services.insert(TASK_SERVICE_V3.to_string(), v3);
    }
    guard::check_payloads(services)
}

#[derive(Clone)]
pub struct Service {
    env: Env,
    containers: Arc<Mutex<Containers>>,
    exit: Arc<ExitSignal>,
    /// RPCs being served: the shim exits only once every reply has been sent.
    in_flight: Arc<InFlight>,
}

/// How long Shutdown waits for other RPCs (a Kill whose reply is still on its way).
const SHUTDOWN_DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
struct Containers {
    live: HashMap<String, Arc<Container>>,
    /// IDs whose Create is in progress: taken, but not yet usable.
    creating: HashSet<String>,
}

fn status_of(state: State) -> Status {
    match state {
        State::Created | State::Starting => Status::CREATED,
        State::Running => Status::RUNNING,
        State::Paused => Status::PAUSED,
        State::Stopped(_) | State::Deleting => Status::STOPPED,
    }
}

impl Service {
    pub fn new(env: Env, exit: Arc<ExitSignal>) -> Service {
        Service {
            env,
            containers: Arc::default(),
            exit,
            in_flight: Arc::default(),
        }
    }

    fn serving(&self) -> Serving {
        self.in_flight.enter()
    }

    fn containers(&self) -> MutexGuard<'_, Containers> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, id: &str) -> Result<Arc<Container>> {
        check_id("container", id)?;
        self.containers()
            .live
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id} not found")))
    }

    pub async fn state(&self, req: api::StateRequest) -> Result<api::StateResponse> {
        check_exec_id(&req.exec_id)?;
        let v = self.get(&req.id)?.view(&req.exec_id)?;
        let (exit_status, exited_at) = match v.exit {
            Some(e) => (e.status, MessageField::some(timestamp(e.at))),
            None => (0, MessageField::none()),
        };
        Ok(api::StateResponse {
            id: if v.exec_id.is_empty() {
                v.id
            } else {
                v.exec_id.clone()
            },
            bundle: v.bundle,
            pid: v.snapshot.pid,
            status: status_of(v.snapshot.state).into(),
            stdin: v.stdio.stdin,
            stdout: v.stdio.stdout,
            stderr: v.stdio.stderr,
            terminal: v.stdio.terminal,
            exit_status,
            exited_at,
            exec_id: v.exec_id,
            ..Default::default()
        })
    }

    pub async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        debug!("create container {}", req.id);
        check_id("container", &req.id)?;
        {
            let mut c = self.containers();
            if c.live.contains_key(&req.id) || c.creating.contains(&req.id) {
                return Err(Error::AlreadyExists(format!(
                    "container {} already exists",
                    req.id
                )));
            }
            c.creating.insert(req.id.clone());
        }
        let result = self.create_reserved(&req).await;
        let mut c = self.containers();
        c.creating.remove(&req.id);
        let container = result?;
        let pid = container.init_pid();
        c.live.insert(req.id.clone(), container);
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn create_reserved(&self, req: &api::CreateTaskRequest) -> Result<Arc<Container>> {
        let options = options::decode(req.options.as_ref())
            .map_err(|e| Error::InvalidArgument(format!("create container {}: {e}", req.id)))?;
        check_bundle(&req.id, &req.bundle, self.env.bundle_root.as_deref())?;
        let created = Container::create(
            &self.env,
            CreateRequest {
                id: req.id.clone(),
                bundle: PathBuf::from(&req.bundle),
                rootfs: req.rootfs.clone(),
                stdio: StdioPaths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                checkpoint: req.checkpoint.clone(),
                options,
            },
        )
        .await?;
        Ok(created)
    }

    pub async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse> {
        debug!("start container {} exec {:?}", req.id, req.exec_id);
        check_exec_id(&req.exec_id)?;
        let pid = self.get(&req.id)?.start(&req.exec_id).await?;
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    pub async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse> {
        debug!("delete container {} exec {:?}", req.id, req.exec_id);
        check_exec_id(&req.exec_id)?;
        let c = self.get(&req.id)?;
        let (pid, exit) = if req.exec_id.is_empty() {
            let done = c.delete_init().await?;
            self.containers().live.remove(&req.id);
            done
        } else {
            c.delete_exec(&req.exec_id).await?
        };
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    pub async fn pids(&self, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let pids = self.get(&req.id)?.pids().await?;
        let mut processes = Vec::with_capacity(pids.len());
        for (pid, exec_id) in pids {
            let info = match exec_id {
                Some(e) => MessageField::some(process_details(&e).map_err(|err| {
                    Error::Internal(format!("pids of container {}: {err}", req.id))
                })?),
                None => MessageField::none(),
            };
            processes.push(api::ProcessInfo {
                pid,
                info,
                ..Default::default()
            });
        }
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub async fn pause(&self, req: api::PauseRequest) -> Result<Empty> {
        self.get(&req.id)?.pause().await?;
        Ok(Empty::new())
    }

    pub async fn resume(&self, req: api::ResumeRequest) -> Result<Empty> {
        self.get(&req.id)?.resume().await?;
        Ok(Empty::new())
    }

    pub async fn checkpoint(&self, req: api::CheckpointTaskRequest) -> Result<Empty> {
        let c = self.get(&req.id)?;
        let settings = options::decode_checkpoint(req.options.as_ref())
            .map_err(|e| Error::InvalidArgument(format!("checkpoint container {}: {e}", req.id)))?;
        c.checkpoint(&req.path, &settings).await?;
        Ok(Empty::new())
    }

    pub async fn kill(&self, req: api::KillRequest) -> Result<Empty> {
        debug!(
            "kill container {} exec {:?} signal {} all {}",
            req.id, req.exec_id, req.signal, req.all
        );
        check_exec_id(&req.exec_id)?;
        check_signal(req.signal)?;
        self.get(&req.id)?
            .kill(&req.exec_id, req.signal, req.all)
            .await?;
        Ok(Empty::new())
    }

    pub async fn exec(&self, req: api::ExecProcessRequest) -> Result<Empty> {
        debug!("exec {} in container {}", req.exec_id, req.id);
        check_id("exec", &req.exec_id)?;
        let c = self.get(&req.id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .unwrap_or_default();
        if spec.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "exec {} in container {}: no process spec",
                req.exec_id, req.id
            )));
        }
        c.add_exec(
            &req.exec_id,
            spec,
            StdioPaths {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
            },
        )?;
        Ok(Empty::new())
    }

    pub async fn resize_pty(&self, req: api::ResizePtyRequest) -> Result<Empty> {
        check_exec_id(&req.exec_id)?;
        self.get(&req.id)?
            .resize_pty(&req.exec_id, req.width, req.height)?;
        Ok(Empty::new())
    }

    pub async fn close_io(&self, req: api::CloseIORequest) -> Result<Empty> {
        check_exec_id(&req.exec_id)?;
        let c = self.get(&req.id)?;
        if req.stdin {
            c.close_stdin(&req.exec_id)?;
        }
        Ok(Empty::new())
    }

    pub async fn update(&self, req: api::UpdateTaskRequest) -> Result<Empty> {
        let c = self.get(&req.id)?;
        let resources = req
            .resources
            .as_ref()
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        // Validate here so a malformed request is InvalidArgument, not a runc failure.
        if let Err(e) = serde_json::from_slice::<oci_spec::runtime::LinuxResources>(resources) {
            return Err(Error::InvalidArgument(format!(
                "update container {}: resources are not OCI LinuxResources JSON: {e}",
                req.id
            )));
        }
        c.update(resources).await?;
        Ok(Empty::new())
    }

    pub async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse> {
        check_exec_id(&req.exec_id)?;
        let exit = self.get(&req.id)?.wait(&req.exec_id).await?;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    pub async fn stats(&self, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let stats = self.get(&req.id)?.stats()?;
        Ok(api::StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    pub async fn connect(&self, req: api::ConnectRequest) -> Result<api::ConnectResponse> {
        let task_pid = self.get(&req.id).map(|c| c.init_pid()).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    /// Exits the shim once no container is left; containerd asks after every task delete.
    pub async fn shutdown(&self, _req: api::ShutdownRequest) -> Result<Empty> {
        let c = self.containers();
        if !(c.live.is_empty() && c.creating.is_empty()) {
            debug!("shutdown ignored: {} container(s) left", c.live.len());
            return Ok(Empty::new());
        }
        drop(c);
        info!("no container left; shutting down once every reply is sent");
        let in_flight = self.in_flight.clone();
        let exit = self.exit.clone();
        let containers = self.containers.clone();
        tokio::spawn(async move {
            let drained = tokio::time::timeout(SHUTDOWN_DRAIN, in_flight.idle()).await;
            if drained.is_err() {
                log::warn!("shutting down with RPCs still in flight after {SHUTDOWN_DRAIN:?}");
            }
            let c = containers.lock().unwrap_or_else(|p| p.into_inner());
            if c.live.is_empty() && c.creating.is_empty() {
                exit.signal();
            } else {
                info!("a container arrived meanwhile; not shutting down");
            }
        });
        Ok(Empty::new())
    }
}

#[cfg(test)]
mod tests;
