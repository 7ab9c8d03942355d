//! runc's failures, in runc's own words.
//!
//! Only this module reads runc's message text: the last error of `log.json`, the head and tail of
//! what runc wrote, and the few phrases that mean "the process is already gone".

use std::{fmt, time::Duration};

/// What runc said while it failed: the last `log.json` error and what it wrote to its output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Words {
    pub log_error: Option<String>,
    pub output: String,
}

impl fmt::Display for Words {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = self.output.trim();
        // runc prints its fatal error to stderr as well as to log.json: say it once.
        if let Some(e) = self
            .log_error
            .as_ref()
            .filter(|e| !out.contains(e.as_str()))
        {
            write!(f, ": {e}")?;
        }
        if !out.is_empty() {
            write!(f, ": runc wrote: {out}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    #[error("runc {verb} for container {container}: cannot run {binary}: {source}")]
    Spawn {
        verb: &'static str,
        container: String,
        binary: String,
        source: std::io::Error,
    },
    #[error("runc {verb} for container {container}: cannot prepare the call: {reason}")]
    Prepare {
        verb: &'static str,
        container: String,
        reason: String,
    },
    #[error(
        "runc {verb} for container {container} did not finish within {}; runc and its children were killed{words}",
        secs(*.elapsed)
    )]
    Timeout {
        verb: &'static str,
        container: String,
        elapsed: Duration,
        words: Words,
    },
    #[error(
        "runc {verb} for container {container} failed with exit status {}{} after {}{words}",
        status,
        killed_by(*.status),
        secs(*.elapsed)
    )]
    Failed {
        verb: &'static str,
        container: String,
        status: i32,
        elapsed: Duration,
        words: Words,
    },
    #[error("runc {verb} for container {container}: unreadable output: {reason}")]
    BadOutput {
        verb: &'static str,
        container: String,
        reason: String,
    },
}

/// Names the signal behind a 128+N status (the reaper's convention for a killed child).
fn killed_by(status: i32) -> String {
    match status
        .checked_sub(128)
        .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
    {
        Some(sig) => format!(" (killed by {sig})"),
        None => String::new(),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl RuncError {
    /// runc says the container or process is already gone (Go shim: `checkKillError`).
    pub fn is_already_finished(&self) -> bool {
        let RuncError::Failed { words, .. } = self else {
            return false;
        };
        let text = format!("{words}");
        [
            "container not running",
            "process already finished",
            "no such process",
        ]
        .iter()
        .any(|p| text.contains(p))
    }

    /// runc does not know the container at all.
    pub fn is_not_exist(&self) -> bool {
        let RuncError::Failed { words, .. } = self else {
            return false;
        };
        format!("{words}").contains("does not exist")
    }
}

/// The message of the last `"level":"error"` record in `log.json` text.
pub fn last_log_error(log: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Record {
        #[serde(default)]
        level: String,
        #[serde(default)]
        msg: String,
    }
    log.lines()
        .filter_map(|l| serde_json::from_str::<Record>(l).ok())
        .rfind(|r| r.level == "error" && !r.msg.is_empty())
        .map(|r| r.msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_error_of_log_json_wins() {
        let log = concat!(
            r#"{"level":"error","msg":"first","time":"t"}"#,
            "\n",
            r#"{"level":"info","msg":"noise","time":"t"}"#,
            "\n",
            "not json\n",
            r#"{"level":"error","msg":"exec failed: no such file","time":"t"}"#,
            "\n"
        );
        assert_eq!(
            last_log_error(log).as_deref(),
            Some("exec failed: no such file")
        );
        assert_eq!(last_log_error(""), None);
    }

    #[test]
    fn failure_text_names_verb_container_time_and_words() {
        let e = RuncError::Failed {
            verb: "exec",
            container: "c1".into(),
            status: 2,
            elapsed: Duration::from_millis(1500),
            words: Words {
                log_error: None,
                output: "runtime/cgo: pthread_create failed\n".into(),
            },
        };
        assert_eq!(
            e.to_string(),
            "runc exec for container c1 failed with exit status 2 after 1.5s: runc wrote: \
             runtime/cgo: pthread_create failed"
        );
    }

    #[test]
    fn a_runc_killed_by_a_signal_is_said_so() {
        let e = RuncError::Failed {
            verb: "kill",
            container: "c1".into(),
            status: 137,
            elapsed: Duration::from_millis(20),
            words: Words::default(),
        };
        assert_eq!(
            e.to_string(),
            "runc kill for container c1 failed with exit status 137 (killed by SIGKILL) after 0.0s"
        );
    }

    #[test]
    fn log_error_repeated_on_stderr_is_said_once() {
        let w = Words {
            log_error: Some("exec: \"sh\": not found".into()),
            output: "runc create failed: exec: \"sh\": not found\n".into(),
        };
        assert_eq!(
            w.to_string(),
            ": runc wrote: runc create failed: exec: \"sh\": not found"
        );
    }

    #[test]
    fn already_finished_phrases() {
        let e = |msg: &str| RuncError::Failed {
            verb: "kill",
            container: "c".into(),
            status: 1,
            elapsed: Duration::ZERO,
            words: Words {
                log_error: Some(msg.into()),
                output: String::new(),
            },
        };
        assert!(e("container not running").is_already_finished());
        assert!(!e("permission denied").is_already_finished());
        assert!(e("container \"c\" does not exist").is_not_exist());
    }
}
