//! Fault injection: a `runc` wrapper that writes more than a pipe holds before runc returns.
//! Each test first proves on the stock `io.containerd.runc.v2` shim that the fault really
//! deadlocks a shim that reads runc's pipes only after runc exits, then runs it under sluice.
//!
//! Run: `cargo test -p sluice-integration --test faults -- --ignored`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use sluice_integration::scenarios::{self, Fault};
use sluice_integration::{system, Runtime};

/// (a) 256 KiB on runc exec's stderr: stock hangs, sluice returns with all the bytes.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn exec_stderr_flood() {
    // Fail before spending the stock shim's timeout if sluice is not built.
    system::sluice_shim_bin();
    scenarios::prove_stock_shim_hangs(Fault::ExecStderrFlood);
    scenarios::exec_stderr_flood_survives(Runtime::Sluice);
}

/// (b) 256 KiB on runc create's stderr: stock hangs, sluice starts the task.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn create_stderr_flood() {
    system::sluice_shim_bin();
    scenarios::prove_stock_shim_hangs(Fault::CreateStderrFlood);
    scenarios::create_stderr_flood_survives(Runtime::Sluice);
}

/// (c) the seed case (one-page pipes, Go crash dump, exit 2 on exec, once): stock hangs,
/// sluice fails the exec within seconds with runc's words and the container stays usable.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn seed_case_crash_dump_on_exec() {
    system::sluice_shim_bin();
    scenarios::prove_stock_shim_hangs(Fault::SeedCrashDump);
    scenarios::seed_case_fails_fast(Runtime::Sluice);
}
