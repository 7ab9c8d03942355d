//! Fault injection: a `runc` wrapper that writes more than a pipe holds before runc returns.
//! Each test first proves on the stock `io.containerd.runc.v2` shim that the fault really
//! deadlocks a shim that reads runc's pipes only after runc exits, then runs it under sluice.
//!
//! Run: `cargo test -p sluice-integration --test faults -- --ignored`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use std::time::{Duration, Instant};

use sluice_integration::checks::{assert_code, assert_stdout, start_sleeper};
use sluice_integration::cmd::{ctr_error, find_bytes};
use sluice_integration::containers;
use sluice_integration::fault::{self, Action, CGO_CRASH_LINE, FLOOD_BYTES};
use sluice_integration::harness::{RunOpts, TestEnv, CTR_TIMEOUT};
use sluice_integration::{system, Runtime};

/// How long the stock shim gets before we call it hung. Without the fault the same call takes
/// well under a second, so 15 s is a verdict, not a guess.
const STOCK_HANG_TIMEOUT: Duration = Duration::from_secs(15);
/// The seed case must fail fast under sluice, not merely eventually.
const SEED_CASE_LIMIT: Duration = Duration::from_secs(20);

/// (a) 256 KiB on runc exec's stderr: stock hangs, sluice returns with all the bytes.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn exec_stderr_flood() {
    // Fail before spending the stock shim's timeout if sluice is not built.
    system::sluice_shim_bin();
    prove_stock_shim_hangs(Fault::ExecStderrFlood);
    exec_stderr_flood_survives(Runtime::Sluice);
}

/// (b) 256 KiB on runc create's stderr: stock hangs, sluice starts the task.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn create_stderr_flood() {
    system::sluice_shim_bin();
    prove_stock_shim_hangs(Fault::CreateStderrFlood);
    create_stderr_flood_survives(Runtime::Sluice);
}

/// (c) the seed case (one-page pipes, Go crash dump, exit 2 on exec, once): stock hangs,
/// sluice fails the exec within seconds with runc's words and the container stays usable.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn seed_case_crash_dump_on_exec() {
    system::sluice_shim_bin();
    prove_stock_shim_hangs(Fault::SeedCrashDump);
    seed_case_fails_fast(Runtime::Sluice);
}

// ---- faults ------------------------------------------------------------------------------

/// The injected faults, each aimed at one runc verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// (a) 256 KiB to stderr on `runc exec`, then the real runc.
    ExecStderrFlood,
    /// (b) 256 KiB to stderr on `runc create`, then the real runc.
    CreateStderrFlood,
    /// (c) the seed case on `runc exec`, once: one-page pipes, a 7 KiB Go crash dump, exit 2.
    SeedCrashDump,
}

impl Fault {
    pub fn verb(self) -> &'static str {
        match self {
            Fault::CreateStderrFlood => "create",
            Fault::ExecStderrFlood | Fault::SeedCrashDump => "exec",
        }
    }

    fn action(self) -> Action {
        match self {
            Fault::ExecStderrFlood | Fault::CreateStderrFlood => {
                Action::StderrFlood { bytes: FLOOD_BYTES }
            }
            Fault::SeedCrashDump => Action::CrashDump,
        }
    }

    fn once(self) -> bool {
        self == Fault::SeedCrashDump
    }

    fn label(self) -> &'static str {
        match self {
            Fault::ExecStderrFlood => "exec-flood",
            Fault::CreateStderrFlood => "create-flood",
            Fault::SeedCrashDump => "seed-case",
        }
    }

    fn arm(self, env: &TestEnv) {
        env.set_fault(self.verb(), self.action(), self.once());
    }
}

/// Runs `fault` against the stock shim in its own containerd and asserts that the ctr call
/// hangs: the proof that the fault is real. Then un-wedges the shim (kills the blocked wrapper)
/// and checks the container can still be cleaned up through ctr. Returns how long ctr was stuck.
fn prove_stock_shim_hangs(fault: Fault) -> Duration {
    let rt = Runtime::RuncV2;
    let env = TestEnv::start(&format!("{}-stock", fault.label()), rt);
    let out = match fault.verb() {
        "exec" => {
            start_sleeper(&env, "c1");
            fault.arm(&env);
            env.exec("c1", "e1", &["echo", "exec-ran"], STOCK_HANG_TIMEOUT)
        }
        _ => {
            fault.arm(&env);
            let opts = RunOpts {
                timeout: Some(STOCK_HANG_TIMEOUT),
                ..RunOpts::default()
            };
            env.run_with("c1", &opts, &["echo", "started"])
        }
    };
    assert_eq!(
        env.fault_fired(fault.verb()),
        1,
        "[{rt}] the {fault:?} fault did not fire exactly once; wrapper log:\n{}",
        env.fault_log()
    );
    assert!(
        out.timed_out(),
        "[{rt}] expected the stock shim to hang on {fault:?}, but ctr returned: the fault is \
         not reproducing the deadlock\n{out}"
    );
    let blocked = env.wrapper_procs();
    assert!(
        !blocked.is_empty(),
        "[{rt}] ctr hung but no fault-runc wrapper is alive: the hang is not the pipe deadlock"
    );
    for p in &blocked {
        // The deadlock itself: the wrapper sleeps in the kernel writing to the unread pipe.
        // (wchan reads "0" where the kernel hides it; then only the timeout speaks.)
        let w = p.wchan.trim();
        assert!(
            w.is_empty() || w == "0" || w.contains("pipe_write"),
            "[{rt}] wrapper pid {} is blocked in {w:?}, not in a pipe write",
            p.pid
        );
        eprintln!(
            "[{rt}] {fault:?}: ctr still blocked after {:?} (deadline {:?}); fault-runc pid {} \
             sleeps in {w:?}",
            out.elapsed, STOCK_HANG_TIMEOUT, p.pid
        );
    }

    // Un-wedge: once the blocked wrapper dies, the stock shim's runc call returns (failed) and
    // the shim answers again; then the usual kill/delete must work.
    let killed = env.unwedge();
    eprintln!(
        "[{rt}] {fault:?}: killed {} blocked runc process(es) to un-wedge the stock shim",
        killed.len()
    );
    let started = Instant::now();
    if env.task("c1").is_some() {
        env.ctr(&["task", "kill", "--signal", "SIGKILL", "c1"], CTR_TIMEOUT)
            .expect_finished(&format!("[{rt}] ctr task kill c1 after un-wedging"));
        env.ctr(&["task", "delete", "--force", "c1"], CTR_TIMEOUT)
            .expect_finished(&format!("[{rt}] ctr task delete c1 after un-wedging"));
    }
    env.container_delete("c1")
        .expect_success(&format!("[{rt}] ctr container delete c1 after un-wedging"));
    assert!(
        env.containers().is_empty(),
        "[{rt}] containers left after cleanup"
    );
    eprintln!(
        "[{rt}] {fault:?}: cleaned up through ctr in {:?}",
        started.elapsed()
    );
    out.elapsed
}

/// (a) under `rt`: the exec returns, its stdout is right and all 256 KiB arrive on its stderr.
fn exec_stderr_flood_survives(rt: Runtime) {
    let env = TestEnv::start("exec-flood", rt);
    start_sleeper(&env, "c1");
    Fault::ExecStderrFlood.arm(&env);
    let out = env.exec(
        "c1",
        "e1",
        &["sh", "-c", "echo exec-ran; exit 4"],
        CTR_TIMEOUT,
    );
    let what = format!("[{rt}] ctr task exec with 256 KiB of runc stderr");
    let out = out.expect_finished(&what);
    assert_eq!(
        env.fault_fired("exec"),
        1,
        "{what}: fault did not fire\n{}",
        env.fault_log()
    );
    assert_code(&out, 4, &what);
    assert_stdout(&out, "exec-ran\n", &what);
    assert!(
        find_bytes(&out.stderr, &fault::flood(FLOOD_BYTES)).is_some(),
        "{what}: the 256 KiB runc wrote to stderr did not all arrive intact ({} bytes of \
         stderr)\n{out}",
        out.stderr.len()
    );
    eprintln!(
        "[{rt}] exec with 256 KiB runc stderr returned in {:?}",
        out.elapsed
    );
    containers::kill_and_delete(&env, "c1");
}

/// (b) under `rt`: the task starts and runs, and the 256 KiB arrive on the container's stderr.
fn create_stderr_flood_survives(rt: Runtime) {
    let env = TestEnv::start("create-flood", rt);
    Fault::CreateStderrFlood.arm(&env);
    let out = env.run("c1", &["sh", "-c", "echo started; exit 5"]);
    let what = format!("[{rt}] ctr run with 256 KiB of runc create stderr");
    let out = out.expect_finished(&what);
    assert_eq!(
        env.fault_fired("create"),
        1,
        "{what}: fault did not fire\n{}",
        env.fault_log()
    );
    assert_code(&out, 5, &what);
    assert_stdout(&out, "started\n", &what);
    assert!(
        find_bytes(&out.stderr, &fault::flood(FLOOD_BYTES)).is_some(),
        "{what}: the 256 KiB runc create wrote to stderr did not all arrive intact ({} bytes \
         of stderr)\n{out}",
        out.stderr.len()
    );
    eprintln!(
        "[{rt}] run with 256 KiB runc create stderr returned in {:?}",
        out.elapsed
    );
}

/// (c) the seed case under `rt`: the exec fails fast with runc's own words, and the container
/// stays manageable (new exec, kill, delete).
fn seed_case_fails_fast(rt: Runtime) {
    let env = TestEnv::start("seed-case", rt);
    start_sleeper(&env, "c1");
    Fault::SeedCrashDump.arm(&env);
    let out = env.exec("c1", "e1", &["echo", "should-not-run"], SEED_CASE_LIMIT);
    let what = format!("[{rt}] seed case: ctr task exec with a one-page pipe and a crash dump");
    let out = out.expect_finished(&what);
    assert_eq!(
        env.fault_fired("exec"),
        1,
        "{what}: fault did not fire\n{}",
        env.fault_log()
    );
    assert!(out.elapsed < SEED_CASE_LIMIT, "{what}: too slow\n{out}");
    assert_ne!(out.code(), Some(0), "{what}: exec succeeded?\n{out}");
    assert!(
        !out.stdout_str().contains("should-not-run"),
        "{what}: the process ran although runc crashed\n{out}"
    );
    let err = ctr_error(&out);
    assert!(
        err.contains("runtime/cgo: pthread_create failed"),
        "{what}: ctr's error does not carry runc's words ({CGO_CRASH_LINE:?}); error was \
         {err:?}\n{out}"
    );
    eprintln!(
        "[{rt}] seed case: exec failed in {:?} with: {}",
        out.elapsed,
        err.lines().next().unwrap_or("")
    );

    // The fault was `once`: the container must work normally again.
    let out = env.exec(
        "c1",
        "e2",
        &["sh", "-c", "echo second-exec; exit 6"],
        CTR_TIMEOUT,
    );
    let what = format!("[{rt}] exec after the seed-case failure");
    assert_code(&out, 6, &what);
    assert_stdout(&out, "second-exec\n", &what);
    containers::kill_and_delete(&env, "c1");
}
