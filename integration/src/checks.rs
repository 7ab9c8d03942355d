//! Checks several suites make the same way: exit codes and stdout of a ctr call, a sleeper
//! container, the 1 MiB stdout run that the lifecycle suite does once and the stress suite
//! repeats, and failing exec probes against the container's `log.json`.

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

/// An exec probe that fails every time (its binary does not exist): each failure's runc log
/// is the exec's own and is removed, so the container's `log.json` does not grow with every
/// probe (containerd #8972; upstream's `TestContainerExecLogGrow`). Returns (log.json bytes
/// before, after, files the execs left in the bundle).
pub fn failing_probes(rt: crate::Runtime, count: usize) -> (u64, u64, Vec<String>) {
    let env = TestEnv::start(&format!("probe-log {rt}"), rt);
    start_sleeper(&env, "c1");
    let bundle = crate::containers::bundle_dir(&env, "c1");
    let size = || {
        std::fs::metadata(bundle.join("log.json"))
            .map(|m| m.len())
            .unwrap_or(0)
    };
    let files = || -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(&bundle)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        f.sort();
        f
    };
    let (before, files_before) = (size(), files());
    for i in 0..count {
        let out = env.exec(
            "c1",
            &format!("p{i}"),
            &["/no-such-probe"],
            crate::harness::CTR_TIMEOUT,
        );
        assert!(
            !out.success(),
            "[{rt}] an exec of a missing binary succeeded:\n{out}"
        );
    }
    let left = files()
        .into_iter()
        .filter(|f| !files_before.contains(f))
        .collect();
    let after = size();
    crate::containers::kill_and_delete(&env, "c1");
    (before, after, left)
}
