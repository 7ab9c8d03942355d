//! Behaviours containerd's runc shim gained in 2.x (issue 13, point 4), checked on whichever
//! containerd line `SLUICE_CONTAINERD` selects; CI runs this suite on 1.6, 1.7 and 2.x, so the
//! newest containerd Debian offers is always among them:
//!
//! - the OOM event is published before the exit event (containerd #12714), and an init that
//!   dies while `runc start` runs still has its exit told after TaskStart;
//! - each exec has its own runc `--log`, so failing exec probes do not grow the container's
//!   `log.json` (containerd #8972, #11862; upstream test `TestContainerExecLogGrow`);
//! - `-info`, which containerd 2.x runs for every runtime handler (`ctr plugins
//!   inspect-runtime`, the CRI plugin at startup): the shim's name and version and runc's
//!   features reach the client.
//!
//! The stock shim's side of the probe log lives in the robustness suite (1.6's stock shim still
//! grows `log.json`); the cgroup v2 variant of the OOM order runs in the guest lane's node suite.
//!
//! Run: `cargo test -p sluice-integration --test behaviours -- --ignored` (as root).

use std::time::Duration;

use sluice_integration::checks::{self, assert_code};
use sluice_integration::cmd::poll;
use sluice_integration::containers::run_with_flags;
use sluice_integration::events::{shorts, EventWatcher};
use sluice_integration::harness::CTR_TIMEOUT;
use sluice_integration::versions;
use sluice_integration::{system, RunOpts, Runtime, TestEnv};

fn line_tag(what: &str) -> String {
    format!("[{what}, containerd {}]", versions::selected_line().label())
}

/// A container killed by the OOM killer: `/tasks/oom` reaches a subscriber before the task's
/// `/tasks/exit`, because the shim reads the OOM state once more when init exits.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn oom_is_published_before_the_exit() {
    let tag = line_tag("oom order");
    let env = TestEnv::start("behaviours-oom", Runtime::Sluice);
    let events = EventWatcher::start(&env);
    // dd's 64 MiB buffer in a 16 MiB cgroup; no sleep before it, so the kill comes as early
    // as it can, where a watcher that only polls would tell it after the exit.
    let out = run_with_flags(
        &env,
        "c1",
        &["--memory-limit", "16777216"],
        &RunOpts::default(),
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
    );
    assert_code(
        &out,
        137,
        &format!("{tag} ctr run --memory-limit 16MiB dd bs=64M"),
    );
    events.wait_for("/tasks/exit of c1", Duration::from_secs(30), |e| {
        e.topic == "/tasks/exit" && e.id() == Some("c1")
    });
    // Anything published after the exit would show up within this window.
    let _ = poll(Duration::from_secs(2), || {
        events
            .events_of("c1")
            .iter()
            .any(|e| e.topic == "/tasks/delete")
            .then_some(())
    });
    let seen = shorts(&events.events_of("c1"));
    let at = |topic: &str| seen.iter().position(|s| s.starts_with(topic));
    let (start_at, oom_at, exit_at) = (at("start("), at("oom("), at("exit("));
    assert!(oom_at.is_some(), "{tag} no /tasks/oom event: {seen:?}");
    assert!(
        oom_at < exit_at,
        "{tag} /tasks/oom must come before /tasks/exit: {seen:?}"
    );
    // The kill comes while `runc start` may still run: its exit must still follow TaskStart.
    assert!(
        start_at.is_some() && start_at < exit_at,
        "{tag} /tasks/start must come before /tasks/exit: {seen:?}"
    );
    eprintln!("{tag} events: {seen:?}");
}

/// Twenty exec probes of a missing binary: the container's `log.json` keeps its size and the
/// bundle gains no file.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn failing_probes_do_not_grow_log_json() {
    let tag = line_tag("probe log");
    let (before, after, left) = checks::failing_probes(Runtime::Sluice, 20);
    assert_eq!(
        after, before,
        "{tag} log.json grew from {before} to {after} bytes over 20 failed execs"
    );
    assert!(
        left.is_empty(),
        "{tag} the failed execs left {left:?} in the bundle"
    );
}

/// `ctr plugins inspect-runtime` (containerd 2.x) runs the shim with `-info`: the reply names
/// the runtime and carries runc's features. containerd 1.x has no such call.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn runtime_info_reaches_the_client() {
    let tag = line_tag("-info");
    if !versions::selected_line().is_v2() {
        eprintln!("{tag} containerd 1.x does not ask a shim for -info; nothing to check");
        return;
    }
    system::sluice_shim_bin();
    let env = TestEnv::start("behaviours-info", Runtime::Sluice);
    let out = env.ctr(
        &[
            "plugins",
            "inspect-runtime",
            "--runtime",
            Runtime::Sluice.name(),
        ],
        CTR_TIMEOUT,
    );
    assert_code(&out, 0, &format!("{tag} ctr plugins inspect-runtime"));
    let text = out.stdout_str();
    assert!(
        text.contains(Runtime::Sluice.name()),
        "{tag} the reply does not name the runtime:\n{text}"
    );
    assert!(
        text.contains("ociVersionMax") || text.contains("ociVersionMin"),
        "{tag} the reply carries no runc features:\n{text}"
    );
    eprintln!("{tag} {text}");
}
