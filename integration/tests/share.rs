//! The instrument of the benchmark's "own share" workload (issue 14): a task's life driven
//! straight over the shim's socket, with runc's calls timed apart. It must see each phase's
//! runc verb inside that phase, for either shim, and leave nothing behind; the figures are the
//! benchmark's (`cargo run -p sluice-bench`), printed here only to read along.

use std::time::Duration;

use sluice_integration::cmd::poll;
use sluice_integration::harness::TestEnv;
use sluice_integration::share::{self, TimedRunc};
use sluice_integration::Runtime;

fn phases_see_their_runc_calls(rt: Runtime) {
    let env = TestEnv::start(&format!("share {rt}"), rt);
    let runc = TimedRunc::install(&env).expect("install timed-runc");
    if std::path::Path::new("/sys/kernel/tracing/instances").is_dir() {
        assert_eq!(
            runc.clock, "kernel",
            "[{rt}] tracefs is there but runc is not timed by it"
        );
    }
    for n in 0..3 {
        let phases = share::round(&env, rt, &runc, n).unwrap_or_else(|e| panic!("[{rt}] {e}"));
        let names: Vec<&str> = phases.iter().map(|p| p.name).collect();
        assert_eq!(names, share::PHASES, "[{rt}] phases");
        for (p, verb) in phases
            .iter()
            .zip(["", "", "create", "start", "exec", "delete"])
        {
            eprintln!(
                "[share {rt}] {:9} wall {:>9?} runc {:>9?} own {:>9?} {:?}",
                p.name,
                p.wall,
                p.runc,
                p.own(),
                p.verbs
            );
            if !verb.is_empty() {
                assert!(
                    p.verbs.iter().any(|v| v == verb),
                    "[{rt}] no runc {verb} inside the {} phase: {:?}",
                    p.name,
                    p.verbs
                );
            }
            assert!(
                p.runc <= p.wall,
                "[{rt}] {}: runc longer than the phase",
                p.name
            );
        }
    }
    // Shutdown is answered before the shim exits: give its exit a moment, as containerd does.
    let left = poll(Duration::from_secs(10), || {
        let shims = env.shims(rt);
        shims.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "[{rt}] shims still running 10 s after Shutdown: {:?}",
        env.shims(rt)
    );
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn sluice_phases_see_their_runc_calls() {
    phases_see_their_runc_calls(Runtime::Sluice);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stock_phases_see_their_runc_calls() {
    phases_see_their_runc_calls(Runtime::RuncV2);
}
