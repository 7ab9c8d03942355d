//! Task events: their topics and protobuf payloads, built from plain values.
//!
//! containerd orders a task's life as create, start, exec-added, exec-started, exit, delete; the
//! shim keeps that order by publishing through one queue, and this module only names and packs.

use std::time::SystemTime;

use containerd_shim_protos::{
    events::task::{
        TaskCheckpointed, TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO,
        TaskOOM, TaskPaused, TaskResumed, TaskStart,
    },
    protobuf::{well_known_types::any::Any, Message, MessageField},
    topics,
    types::mount::Mount,
};

use crate::time::timestamp;

/// One task event, as the shim knows it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskEvent {
    Create {
        container_id: String,
        bundle: String,
        rootfs: Vec<Mount>,
        stdin: String,
        stdout: String,
        stderr: String,
        terminal: bool,
        checkpoint: String,
        pid: u32,
    },
    Start {
        container_id: String,
        pid: u32,
    },
    ExecAdded {
        container_id: String,
        exec_id: String,
    },
    ExecStarted {
        container_id: String,
        exec_id: String,
        pid: u32,
    },
    /// `id` is the exec ID, or the container ID for the init process (as the Go shim sends it).
    Exit {
        container_id: String,
        id: String,
        pid: u32,
        exit_status: u32,
        exited_at: SystemTime,
    },
    Delete {
        container_id: String,
        id: String,
        pid: u32,
        exit_status: u32,
        exited_at: SystemTime,
    },
    Paused {
        container_id: String,
    },
    Resumed {
        container_id: String,
    },
    Oom {
        container_id: String,
    },
    Checkpointed {
        container_id: String,
        checkpoint: String,
    },
}

impl TaskEvent {
    pub fn topic(&self) -> &'static str {
        match self {
            TaskEvent::Create { .. } => topics::TASK_CREATE_EVENT_TOPIC,
            TaskEvent::Start { .. } => topics::TASK_START_EVENT_TOPIC,
            TaskEvent::ExecAdded { .. } => topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            TaskEvent::ExecStarted { .. } => topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            TaskEvent::Exit { .. } => topics::TASK_EXIT_EVENT_TOPIC,
            TaskEvent::Delete { .. } => topics::TASK_DELETE_EVENT_TOPIC,
            TaskEvent::Paused { .. } => topics::TASK_PAUSED_EVENT_TOPIC,
            TaskEvent::Resumed { .. } => topics::TASK_RESUMED_EVENT_TOPIC,
            TaskEvent::Oom { .. } => topics::TASK_OOM_EVENT_TOPIC,
            TaskEvent::Checkpointed { .. } => topics::TASK_CHECKPOINTED_EVENT_TOPIC,
        }
    }

    pub fn container_id(&self) -> &str {
        match self {
            TaskEvent::Create { container_id, .. }
            | TaskEvent::Start { container_id, .. }
            | TaskEvent::ExecAdded { container_id, .. }
            | TaskEvent::ExecStarted { container_id, .. }
            | TaskEvent::Exit { container_id, .. }
            | TaskEvent::Delete { container_id, .. }
            | TaskEvent::Paused { container_id }
            | TaskEvent::Resumed { container_id }
            | TaskEvent::Oom { container_id }
            | TaskEvent::Checkpointed { container_id, .. } => container_id,
        }
    }

    /// The event packed as containerd's envelope wants it: an `Any` with the bare type URL
    /// (containerd 1.6 cannot resolve a `type.googleapis.com/` prefix).
    pub fn to_any(&self) -> Result<Any, containerd_shim_protos::protobuf::Error> {
        let (type_url, value) = match self.clone() {
            TaskEvent::Create {
                container_id,
                bundle,
                rootfs,
                stdin,
                stdout,
                stderr,
                terminal,
                checkpoint,
                pid,
            } => pack(TaskCreate {
                container_id,
                bundle,
                rootfs,
                io: MessageField::some(TaskIO {
                    stdin,
                    stdout,
                    stderr,
                    terminal,
                    ..Default::default()
                }),
                checkpoint,
                pid,
                ..Default::default()
            })?,
            TaskEvent::Start { container_id, pid } => pack(TaskStart {
                container_id,
                pid,
                ..Default::default()
            })?,
            TaskEvent::ExecAdded {
                container_id,
                exec_id,
            } => pack(TaskExecAdded {
                container_id,
                exec_id,
                ..Default::default()
            })?,
            TaskEvent::ExecStarted {
                container_id,
                exec_id,
                pid,
            } => pack(TaskExecStarted {
                container_id,
                exec_id,
                pid,
                ..Default::default()
            })?,
            TaskEvent::Exit {
                container_id,
                id,
                pid,
                exit_status,
                exited_at,
            } => pack(TaskExit {
                container_id,
                id,
                pid,
                exit_status,
                exited_at: MessageField::some(timestamp(exited_at)),
                ..Default::default()
            })?,
            TaskEvent::Delete {
                container_id,
                id,
                pid,
                exit_status,
                exited_at,
            } => pack(TaskDelete {
                container_id,
                id,
                pid,
                exit_status,
                exited_at: MessageField::some(timestamp(exited_at)),
                ..Default::default()
            })?,
            TaskEvent::Paused { container_id } => pack(TaskPaused {
                container_id,
                ..Default::default()
            })?,
            TaskEvent::Resumed { container_id } => pack(TaskResumed {
                container_id,
                ..Default::default()
            })?,
            TaskEvent::Oom { container_id } => pack(TaskOOM {
                container_id,
                ..Default::default()
            })?,
            TaskEvent::Checkpointed {
                container_id,
                checkpoint,
            } => pack(TaskCheckpointed {
                container_id,
                checkpoint,
                ..Default::default()
            })?,
        };
        Ok(Any {
            type_url,
            value,
            ..Default::default()
        })
    }
}

/// Every task event lives in the `containerd.events` package. The name is spelled out rather than
/// taken from the message descriptor: building protobuf's reflection tables costs every shim
/// some 400 KiB of heap.
fn pack<M: Message>(m: M) -> Result<(String, Vec<u8>), containerd_shim_protos::protobuf::Error> {
    Ok((
        format!("containerd.events.{}", M::NAME),
        m.write_to_bytes()?,
    ))
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::protobuf::Message;

    use super::*;

    #[test]
    fn exit_event_round_trips_with_bare_type_url() {
        let ev = TaskEvent::Exit {
            container_id: "c1".into(),
            id: "e1".into(),
            pid: 42,
            exit_status: 137,
            exited_at: SystemTime::UNIX_EPOCH,
        };
        assert_eq!(ev.topic(), "/tasks/exit");
        let any = ev.to_any().expect("encode");
        assert_eq!(any.type_url, "containerd.events.TaskExit");
        let back = TaskExit::parse_from_bytes(&any.value).expect("decode");
        assert_eq!(back.container_id, "c1");
        assert_eq!(back.id, "e1");
        assert_eq!(back.exit_status, 137);
    }

    #[test]
    fn every_event_has_its_own_topic() {
        let t = SystemTime::UNIX_EPOCH;
        let events = [
            TaskEvent::Create {
                container_id: "c".into(),
                bundle: "/b".into(),
                rootfs: vec![],
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                terminal: false,
                checkpoint: String::new(),
                pid: 1,
            },
            TaskEvent::Start {
                container_id: "c".into(),
                pid: 1,
            },
            TaskEvent::ExecAdded {
                container_id: "c".into(),
                exec_id: "e".into(),
            },
            TaskEvent::ExecStarted {
                container_id: "c".into(),
                exec_id: "e".into(),
                pid: 2,
            },
            TaskEvent::Exit {
                container_id: "c".into(),
                id: "c".into(),
                pid: 1,
                exit_status: 0,
                exited_at: t,
            },
            TaskEvent::Delete {
                container_id: "c".into(),
                id: "c".into(),
                pid: 1,
                exit_status: 0,
                exited_at: t,
            },
            TaskEvent::Paused {
                container_id: "c".into(),
            },
            TaskEvent::Resumed {
                container_id: "c".into(),
            },
            TaskEvent::Oom {
                container_id: "c".into(),
            },
            TaskEvent::Checkpointed {
                container_id: "c".into(),
                checkpoint: "/cp".into(),
            },
        ];
        let topics: std::collections::HashSet<_> = events.iter().map(|e| e.topic()).collect();
        assert_eq!(topics.len(), events.len());
        for e in &events {
            let any = e.to_any().expect("encode");
            assert!(
                any.type_url.starts_with("containerd.events.Task"),
                "{}",
                any.type_url
            );
        }
    }
}
