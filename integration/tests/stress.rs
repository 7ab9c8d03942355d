//! Stress (issue 15, part 3's proof): the lifecycle suite's `large_stdout` check, 1 MiB through
//! an attached `ctr run`, many times in a row under sluice. A copier that loses bytes only now
//! and then passes a single run; here every run must deliver all of them.
//!
//! `SLUICE_STRESS_RUNS` sets the number of runs (default 20, what CI runs).
//!
//! Run: `cargo test -p sluice-integration --test stress -- --ignored --nocapture`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use std::time::Instant;

use sluice_integration::checks::{run_large_stdout, LARGE_STDOUT_BYTES};
use sluice_integration::{system, Runtime, TestEnv};

const DEFAULT_RUNS: usize = 20;
/// Enough failed runs to show a pattern; the rest would only cost time.
const MAX_REPORTED: usize = 5;

fn runs() -> usize {
    match std::env::var("SLUICE_STRESS_RUNS") {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|e| panic!("SLUICE_STRESS_RUNS={v:?}: {e}")),
        Err(_) => DEFAULT_RUNS,
    }
}

/// One containerd, a fresh container (and so a fresh shim, `ctr run --rm`) per run: the shim's
/// copy is what is under test, and a containerd per run would only add its start-up time.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn large_stdout_repeated() {
    system::sluice_shim_bin();
    let n = runs();
    let env = TestEnv::start("stress-bigout", Runtime::Sluice);
    let started = Instant::now();
    let mut lost = Vec::new();
    for i in 1..=n {
        if let Err(loss) = run_large_stdout(&env, &format!("c{i}")) {
            eprintln!("[stress] run {i} of {n}: {loss}\n{}", loss.out);
            lost.push(format!("run {i} of {n}: {loss}"));
            if lost.len() == MAX_REPORTED {
                break;
            }
        }
    }
    eprintln!(
        "[stress] {n} runs of {LARGE_STDOUT_BYTES} bytes in {:?}, {} lost bytes or failed",
        started.elapsed(),
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "[sluice] ctr run yes | head -c 1MiB:\n{}",
        lost.join("\n")
    );
}
