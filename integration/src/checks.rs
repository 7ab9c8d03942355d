//! Checks several suites make the same way: exit codes and stdout of a ctr call, a sleeper
//! container, and the 1 MiB stdout run that the lifecycle suite does once and the stress suite
//! repeats.

use std::fmt;
use std::time::Duration;

use crate::cmd::{first_difference, CmdOutput};
use crate::harness::TestEnv;

pub fn assert_stdout(out: &CmdOutput, expected: &str, what: &str) {
    assert_eq!(
        out.stdout_str(),
        expected,
        "{what}: unexpected stdout\n{out}"
    );
}

pub fn assert_code(out: &CmdOutput, expected: i32, what: &str) {
    assert_eq!(out.code(), Some(expected), "{what}: unexpected exit\n{out}");
}

/// Starts `sleep 1000` detached as `id` and waits until it runs.
pub fn start_sleeper(env: &TestEnv, id: &str) {
    env.run_detached(id, &[], &["sleep", "1000"]);
    env.wait_task_status(id, "RUNNING", Duration::from_secs(30));
}

/// What the large-stdout container prints: 1 MiB of `sluice\n`.
pub const LARGE_STDOUT_BYTES: usize = 1 << 20;

/// A large-stdout run that did not deliver every byte in order, or did not exit 0.
#[derive(Debug)]
pub struct StdoutLoss {
    /// Bytes that arrived (`LARGE_STDOUT_BYTES` minus this is the shortfall).
    pub arrived: usize,
    /// Where the output first differs from the expected, or that it is a prefix.
    pub difference: String,
    pub out: CmdOutput,
}

impl StdoutLoss {
    /// Bytes missing; 0 when all arrived but the exit or the content was wrong.
    pub fn shortfall(&self) -> usize {
        LARGE_STDOUT_BYTES.saturating_sub(self.arrived)
    }
}

impl fmt::Display for StdoutLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {:?}, {} of {LARGE_STDOUT_BYTES} bytes arrived ({} short; {})",
            self.out.code(),
            self.arrived,
            self.shortfall(),
            self.difference
        )
    }
}

/// Attached `ctr run` of container `id` printing [`LARGE_STDOUT_BYTES`] of `sluice\n`: every
/// byte must arrive, in order, and ctr exit 0 (the container's own output keeps the stock
/// semantics: nothing dropped).
pub fn run_large_stdout(env: &TestEnv, id: &str) -> Result<(), Box<StdoutLoss>> {
    let script = format!("yes sluice | head -c {LARGE_STDOUT_BYTES}");
    let out = env.run(id, &["sh", "-c", &script]);
    let expected: Vec<u8> = b"sluice\n"
        .iter()
        .copied()
        .cycle()
        .take(LARGE_STDOUT_BYTES)
        .collect();
    if out.code() == Some(0) && out.stdout == expected {
        return Ok(());
    }
    Err(Box::new(StdoutLoss {
        arrived: out.stdout.len(),
        difference: first_difference(&out.stdout, &expected),
        out,
    }))
}
