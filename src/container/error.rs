//! What can go wrong in a container's verbs, as values; the messages users see are fixed here.
//!
//! Every failure names what was being done ("start exec e1 in container c1") and why; the
//! ttrpc code is chosen once, in the conversion to the shim's [`Error`].

use std::{io, path::PathBuf};

use crate::{
    arg_limits::TooBig,
    cgroup::CgroupError,
    error::Error,
    io::IoError,
    process::Refusal,
    runc::{LocateError, RuncError},
};

/// A failed container verb.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("exec {exec_id} not found in container {container}")]
    ExecNotFound { container: String, exec_id: String },
    #[error("exec {exec_id} already exists in container {container}")]
    ExecExists { container: String, exec_id: String },
    /// Said as it is: the runtime binary's name is the whole story.
    #[error(transparent)]
    Locate(#[from] LocateError),
    /// `what` is the verb and its subject, e.g. "kill exec e1 in container c1".
    #[error("{what}: {failure}")]
    Failed { what: String, failure: Failure },
}

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    Refused(Refusal),
    #[error(transparent)]
    Runc(Box<RuncError>),
    #[error(transparent)]
    Io(IoError),
    #[error("annotation {annotation}={value:?} is not a positive number of seconds")]
    BadTimeout {
        annotation: &'static str,
        value: String,
    },
    #[error(transparent)]
    TooBig(TooBig),
    #[error("{0}")]
    BadSpec(String),
    #[error("the container is {0}")]
    NotCheckpointable(&'static str),
    #[error("no checkpoint path")]
    NoCheckpointPath,
    #[error("the process has not started")]
    NotStarted,
    #[error("process already finished")]
    AlreadyFinished,
    #[error("the process has stopped")]
    Stopped,
    /// A file the shim keeps in the bundle could not be written or made; `file` says which.
    #[error("{file}: {source}")]
    File { file: String, source: io::Error },
    #[error("mount {source_name} on {}: {reason}", target.display())]
    Mount {
        source_name: String,
        target: PathBuf,
        reason: String,
    },
    /// runc returned without the pid file it was asked to write.
    #[error("runc {verb} left no pid{}: {source}", in_file.as_ref().map(|f| format!(" in {}", f.display())).unwrap_or_default())]
    NoPid {
        verb: &'static str,
        in_file: Option<PathBuf>,
        source: io::Error,
    },
    #[error("kill pid {pid}: {source}")]
    Kill { pid: u32, source: io::Error },
    #[error("{0}")]
    Resize(IoError),
    #[error(transparent)]
    Cgroup(CgroupError),
}

impl ContainerError {
    pub fn failed(what: impl Into<String>, failure: Failure) -> ContainerError {
        ContainerError::Failed {
            what: what.into(),
            failure,
        }
    }

    pub fn runc(what: impl Into<String>, e: RuncError) -> ContainerError {
        Self::failed(what, Failure::Runc(Box::new(e)))
    }

    pub fn refused(what: impl Into<String>, r: Refusal) -> ContainerError {
        Self::failed(what, Failure::Refused(r))
    }

    pub fn io(what: impl Into<String>, e: IoError) -> ContainerError {
        Self::failed(what, Failure::Io(e))
    }

    pub fn file(what: impl Into<String>, file: impl Into<String>, source: io::Error) -> Self {
        Self::failed(
            what,
            Failure::File {
                file: file.into(),
                source,
            },
        )
    }
}

/// The code each failure reaches containerd with.
impl From<ContainerError> for Error {
    fn from(e: ContainerError) -> Error {
        let text = e.to_string();
        let (what, failure) = match e {
            ContainerError::ExecNotFound { .. } => return Error::NotFound(text),
            ContainerError::ExecExists { .. } => return Error::AlreadyExists(text),
            ContainerError::Locate(_) => return Error::FailedPrecondition(text),
            ContainerError::Failed { what, failure } => (what, failure),
        };
        match failure {
            Failure::Refused(r) => Error::refused(&what, r),
            Failure::Runc(source) => Error::Runc {
                context: what,
                source,
            },
            Failure::Io(e) => Error::io(&what, e),
            Failure::NotCheckpointable(_) | Failure::NotStarted => Error::FailedPrecondition(text),
            Failure::Stopped | Failure::Resize(_) => Error::FailedPrecondition(text),
            Failure::BadTimeout { .. }
            | Failure::TooBig(_)
            | Failure::BadSpec(_)
            | Failure::NoCheckpointPath => Error::InvalidArgument(text),
            Failure::AlreadyFinished => Error::NotFound(text),
            Failure::Cgroup(CgroupError::Gone { .. } | CgroupError::ProcCgroup { .. }) => {
                Error::NotFound(text)
            }
            Failure::Cgroup(_)
            | Failure::File { .. }
            | Failure::Mount { .. }
            | Failure::NoPid { .. }
            | Failure::Kill { .. } => Error::Internal(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use containerd_shim::protos::ttrpc::Code;

    use super::*;

    /// The text and code each failure reaches the client with; the texts are the ones the
    /// shim has always sent.
    #[test]
    fn each_failure_has_its_code_and_text() {
        let what = "kill exec e1 in container c1";
        let io = || io::Error::from_raw_os_error(libc::EPERM);
        let rows: Vec<(ContainerError, Code, &str)> = vec![
            (
                ContainerError::ExecNotFound {
                    container: "c1".into(),
                    exec_id: "e1".into(),
                },
                Code::NOT_FOUND,
                "exec e1 not found in container c1",
            ),
            (
                ContainerError::ExecExists {
                    container: "c1".into(),
                    exec_id: "e1".into(),
                },
                Code::ALREADY_EXISTS,
                "exec e1 already exists in container c1",
            ),
            (
                LocateError::NotFound("crun".into()).into(),
                Code::FAILED_PRECONDITION,
                "runtime binary \"crun\" not found in PATH",
            ),
            (
                ContainerError::refused(what, Refusal::Finished),
                Code::NOT_FOUND,
                "kill exec e1 in container c1: process already finished",
            ),
            (
                ContainerError::failed(what, Failure::AlreadyFinished),
                Code::NOT_FOUND,
                "kill exec e1 in container c1: process already finished",
            ),
            (
                ContainerError::failed(what, Failure::NotStarted),
                Code::FAILED_PRECONDITION,
                "kill exec e1 in container c1: the process has not started",
            ),
            (
                ContainerError::failed(what, Failure::Kill { pid: 7, source: io() }),
                Code::INTERNAL,
                "kill exec e1 in container c1: kill pid 7: Operation not permitted (os error 1)",
            ),
            (
                ContainerError::failed("checkpoint container c1", Failure::NoCheckpointPath),
                Code::INVALID_ARGUMENT,
                "checkpoint container c1: no checkpoint path",
            ),
            (
                ContainerError::failed(
                    "checkpoint container c1",
                    Failure::NotCheckpointable("created"),
                ),
                Code::FAILED_PRECONDITION,
                "checkpoint container c1: the container is created",
            ),
            (
                ContainerError::failed(
                    "start exec e1 in container c1",
                    Failure::NoPid {
                        verb: "exec",
                        in_file: None,
                        source: io(),
                    },
                ),
                Code::INTERNAL,
                "start exec e1 in container c1: runc exec left no pid: Operation not permitted (os error 1)",
            ),
            (
                ContainerError::failed(
                    "create container c1",
                    Failure::NoPid {
                        verb: "create",
                        in_file: Some(PathBuf::from("/b/init.pid")),
                        source: io(),
                    },
                ),
                Code::INTERNAL,
                "create container c1: runc create left no pid in /b/init.pid: Operation not permitted (os error 1)",
            ),
            (
                ContainerError::file("update container c1", "write resources", io()),
                Code::INTERNAL,
                "update container c1: write resources: Operation not permitted (os error 1)",
            ),
            (
                ContainerError::failed(
                    "resize the terminal of c1/e1",
                    Failure::Stopped,
                ),
                Code::FAILED_PRECONDITION,
                "resize the terminal of c1/e1: the process has stopped",
            ),
        ];
        for (e, code, text) in rows {
            let e = Error::from(e);
            assert_eq!((e.code(), e.to_string().as_str()), (code, text));
        }
    }
}
