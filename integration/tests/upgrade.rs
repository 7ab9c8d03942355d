//! containerd upgraded under running containers (issue 13): a task started under containerd
//! 1.7 with sluice, containerd replaced by 2.x on the same root and state (as a node's package
//! upgrade does: the daemon stops, its shims live on), and the task still managed: exec, kill,
//! delete. And the reverse, a downgrade from 2.x to 1.7: sluice serves task API v2 next to v3
//! and keeps the bundle's `address` file, so 1.7 can still reach it; the stock 2.x shim serves
//! v3 only, and the stock rows pin that 1.7 then cannot manage the task.
//!
//! Runs once (whatever `SLUICE_CONTAINERD` says): it needs both the 1.7 and the 2.x build.
//! Run: `cargo test -p sluice-integration --test upgrade -- --ignored` (as root).

use std::time::Duration;

use sluice_integration::harness::{EnvOpts, TestEnv};
use sluice_integration::versions::Line;
use sluice_integration::{containers, Runtime};

const CTR_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts a task under `from`, replaces containerd with `to`, and returns the environment and
/// whether `to` could exec into the task.
fn across(rt: Runtime, from: Line, to: Line) -> (TestEnv, bool, String) {
    let tag = format!("[{rt} {} -> {}]", from.label(), to.label());
    let opts = EnvOpts {
        line: Some(from),
        ..EnvOpts::default()
    };
    let mut env = TestEnv::start_with(&format!("upgrade {rt}"), rt, opts);
    env.run_detached("c1", &[], &["sleep", "1000"]);
    let before = env.exec("c1", "e1", &["echo", "before"], CTR_TIMEOUT);
    assert!(
        before.success() && before.stdout_str() == "before\n",
        "{tag} exec before:\n{before}"
    );
    let pid = env.task("c1").map(|t| t.pid);
    env.upgrade_containerd(to);
    let after = env.exec("c1", "e2", &["echo", "after"], CTR_TIMEOUT);
    let ok = after.success() && after.stdout_str() == "after\n";
    if ok {
        assert_eq!(
            env.task("c1").map(|t| t.pid),
            pid,
            "{tag} the task's pid changed"
        );
    }
    (env, ok, format!("{tag} exec after:\n{after}"))
}

#[test]
#[ignore = "needs root, containerd 1.7 and 2.x and runc; run with --ignored"]
fn sluice_task_survives_an_upgrade_from_1_7_to_2_x() {
    let (env, ok, after) = across(Runtime::Sluice, Line::V1_7, Line::V2);
    assert!(ok, "{after}");
    containers::kill_and_delete(&env, "c1");
}

#[test]
#[ignore = "needs root, containerd 1.7 and 2.x and runc; run with --ignored"]
fn stock_task_survives_an_upgrade_from_1_7_to_2_x() {
    let (env, ok, after) = across(Runtime::RuncV2, Line::V1_7, Line::V2);
    assert!(ok, "{after}");
    containers::kill_and_delete(&env, "c1");
}

#[test]
#[ignore = "needs root, containerd 1.7 and 2.x and runc; run with --ignored"]
fn sluice_task_survives_a_downgrade_from_2_x_to_1_7() {
    let (env, ok, after) = across(Runtime::Sluice, Line::V2, Line::V1_7);
    assert!(ok, "{after}");
    containers::kill_and_delete(&env, "c1");
}

/// The stock 2.x shim serves task API v3 only: after a downgrade 1.7 cannot manage its task.
/// This is the reference the sluice row above is better than.
#[test]
#[ignore = "needs root, containerd 1.7 and 2.x and runc; run with --ignored"]
fn stock_task_is_lost_in_a_downgrade_from_2_x_to_1_7() {
    let (env, ok, after) = across(Runtime::RuncV2, Line::V2, Line::V1_7);
    assert!(!ok, "the stock 2.x shim answered 1.7 after all: {after}");
    eprintln!("{after}");
    // Nothing to delete through 1.7; the environment's drop cleans up processes and mounts.
    drop(env);
}
