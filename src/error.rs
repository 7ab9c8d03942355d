//! The shim's errors, and the one place they become ttrpc statuses.
//!
//! Every error reaches containerd with an explicit code: containerd turns NotFound,
//! AlreadyExists, FailedPrecondition and InvalidArgument into its own errdefs, and a generic
//! error would arrive as UNKNOWN with no way for the client to tell what happened.

use containerd_shim::protos::ttrpc::{self, Code};

use crate::{io::IoError, process::Refusal, runc::RuncError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// A runc call failed; `context` says for which process.
    #[error("{context}: {source}")]
    Runc {
        context: String,
        #[source]
        source: Box<RuncError>,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A refusal of the process state table, about `what` (a process label).
    pub fn refused(what: &str, r: Refusal) -> Error {
        match r {
            Refusal::Finished => Error::NotFound(format!("{what}: {r}")),
            Refusal::WrongState { .. } => Error::FailedPrecondition(format!("{what}: {r}")),
        }
    }

    pub fn runc(context: impl Into<String>, source: RuncError) -> Error {
        Error::Runc {
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub fn io(context: &str, e: IoError) -> Error {
        match e {
            IoError::Unsupported(_) => Error::InvalidArgument(format!("{context}: {e}")),
            IoError::Logger(_) => Error::FailedPrecondition(format!("{context}: {e}")),
            IoError::Terminal(_) => Error::Internal(format!("{context}: {e}")),
            IoError::Pipe { .. } | IoError::Chown { .. } => {
                Error::Internal(format!("{context}: {e}"))
            }
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Internal(_) => Code::INTERNAL,
            Error::Runc { source, .. } => match source.as_ref() {
                e if e.is_already_finished() || e.is_not_exist() => Code::NOT_FOUND,
                RuncError::Timeout { .. } => Code::DEADLINE_EXCEEDED,
                // The stock shim reports runc's failures as UNKNOWN ("OCI runtime ... failed");
                // clients match on that, so keep it, explicitly.
                _ => Code::UNKNOWN,
            },
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::runc::error::Words;

    fn failed(msg: &str) -> RuncError {
        RuncError::Failed {
            verb: "kill",
            container: "c".into(),
            status: 1,
            elapsed: Duration::ZERO,
            words: Words {
                log_error: Some(msg.into()),
                output: String::new(),
            },
        }
    }

    #[test]
    fn every_variant_has_its_code() {
        let cases = [
            (Error::NotFound("x".into()), Code::NOT_FOUND),
            (Error::AlreadyExists("x".into()), Code::ALREADY_EXISTS),
            (
                Error::FailedPrecondition("x".into()),
                Code::FAILED_PRECONDITION,
            ),
            (Error::InvalidArgument("x".into()), Code::INVALID_ARGUMENT),
            (Error::Unimplemented("x".into()), Code::UNIMPLEMENTED),
            (Error::Internal("x".into()), Code::INTERNAL),
            (Error::runc("c", failed("permission denied")), Code::UNKNOWN),
            (
                Error::runc("c", failed("container not running")),
                Code::NOT_FOUND,
            ),
            (
                Error::runc("c", failed("container \"c\" does not exist")),
                Code::NOT_FOUND,
            ),
            (
                Error::runc(
                    "c",
                    RuncError::Timeout {
                        verb: "exec",
                        container: "c".into(),
                        elapsed: Duration::from_secs(3),
                        words: Words::default(),
                    },
                ),
                Code::DEADLINE_EXCEEDED,
            ),
            (Error::refused("c", Refusal::Finished), Code::NOT_FOUND),
            (
                Error::refused(
                    "c",
                    Refusal::WrongState {
                        op: "start",
                        state: "running",
                    },
                ),
                Code::FAILED_PRECONDITION,
            ),
            (
                Error::io("c", IoError::Unsupported("binary:///x".into())),
                Code::INVALID_ARGUMENT,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let ttrpc::Error::RpcStatus(status) = ttrpc::Error::from(err) else {
                panic!("not a status");
            };
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
        }
    }
}
