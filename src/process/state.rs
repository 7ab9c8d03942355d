//! The life of one process (init or exec) as a table: which operation is legal in which state.
//!
//! Matches containerd's `process/init_state.go` and `exec_state.go`, with transitional states so
//! that no lock is held while runc runs: a process being started or deleted says so, and a second
//! caller gets a clear refusal instead of waiting.

use std::time::SystemTime;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub status: u32,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Init: `runc create` done, not started. Exec: known, `runc exec` not run yet.
    Created,
    /// `runc start` or `runc exec` is running.
    Starting,
    Running,
    /// Init only: frozen by `runc pause`.
    Paused,
    Stopped(ExitInfo),
    /// `runc delete` (init) or cleanup (exec) is running.
    Deleting,
}

/// What a caller wants to do to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Start,
    Kill,
    Delete,
    /// Add an exec to this (init) process's container.
    Exec,
    Pause,
    Resume,
}

/// Why an operation is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The process is in the wrong state for this operation (FailedPrecondition).
    #[error("cannot {op} a process that is {state}")]
    WrongState {
        op: &'static str,
        state: &'static str,
    },
    /// The process has already exited (NotFound, as containerd expects from Kill).
    #[error("process already finished")]
    Finished,
}

impl State {
    pub fn name(&self) -> &'static str {
        match self {
            State::Created => "created",
            State::Starting => "starting",
            State::Running => "running",
            State::Paused => "paused",
            State::Stopped(_) => "stopped",
            State::Deleting => "being deleted",
        }
    }

    /// Whether `op` is legal now. Transitions are made by the caller after runc succeeds.
    pub fn check(&self, op: Op) -> Result<(), Refusal> {
        use State::*;
        let wrong = |op| Refusal::WrongState {
            op,
            state: self.name(),
        };
        match (op, self) {
            (Op::Start, Created) => Ok(()),
            (Op::Start, _) => Err(wrong("start")),
            (Op::Kill, Created | Starting | Running | Paused) => Ok(()),
            (Op::Kill, Stopped(_) | Deleting) => Err(Refusal::Finished),
            (Op::Delete, Created | Stopped(_)) => Ok(()),
            (Op::Delete, _) => Err(wrong("delete")),
            (Op::Exec, Created | Starting | Running) => Ok(()),
            (Op::Exec, _) => Err(wrong("exec in")),
            (Op::Pause, Running) => Ok(()),
            (Op::Pause, _) => Err(wrong("pause")),
            (Op::Resume, Paused) => Ok(()),
            (Op::Resume, _) => Err(wrong("resume")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let stopped = State::Stopped(ExitInfo {
            status: 0,
            at: SystemTime::UNIX_EPOCH,
        });
        let states = [
            State::Created,
            State::Starting,
            State::Running,
            State::Paused,
            stopped,
            State::Deleting,
        ];
        // Rows: states above; columns: Start, Kill, Delete, Exec, Pause, Resume. 'y' legal,
        // 'p' wrong state (FailedPrecondition), 'f' already finished (NotFound).
        let table = ["yyyypp", "pypypp", "pypyyp", "pypppy", "pfyppp", "pfpppp"];
        for (state, row) in states.iter().zip(table) {
            for (op, want) in [
                Op::Start,
                Op::Kill,
                Op::Delete,
                Op::Exec,
                Op::Pause,
                Op::Resume,
            ]
            .into_iter()
            .zip(row.chars())
            {
                let got = match state.check(op) {
                    Ok(()) => 'y',
                    Err(Refusal::WrongState { .. }) => 'p',
                    Err(Refusal::Finished) => 'f',
                };
                assert_eq!(got, want, "{op:?} on {state:?}");
            }
        }
    }

    #[test]
    fn refusal_text_names_op_and_state() {
        assert_eq!(
            State::Running.check(Op::Delete).unwrap_err().to_string(),
            "cannot delete a process that is running"
        );
        assert_eq!(
            State::Running.check(Op::Start).unwrap_err().to_string(),
            "cannot start a process that is running"
        );
    }
}
