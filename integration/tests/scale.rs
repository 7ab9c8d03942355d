//! The instrument of the benchmark's idle-scale workload (issue 14): idle containers as a shim
//! each and as one group, and the totals of their shims. The figures are the benchmark's
//! (`cargo run -p sluice-bench`); here the count of shims per layout is what must hold.

use std::time::Duration;

use sluice_integration::harness::TestEnv;
use sluice_integration::scale::{self, Layout};
use sluice_integration::Runtime;

fn layouts(rt: Runtime) {
    for (layout, shims) in [(Layout::ShimEach, 3), (Layout::Grouped, 1)] {
        let env = TestEnv::start(&format!("scale {rt}"), rt);
        let idle = scale::idle(
            &env,
            3,
            layout,
            Duration::from_secs(1),
            Duration::from_secs(2),
        );
        eprintln!("[scale {rt}] {layout:?}: {idle:?}");
        assert_eq!(
            idle.shims, shims,
            "[{rt}] {layout:?}: shims serving 3 containers"
        );
        assert!(
            idle.pss_kib > 0 && idle.threads >= shims as u64,
            "[{rt}] {idle:?}"
        );
        assert!(
            env.tasks().is_empty(),
            "[{rt}] tasks left: {:?}",
            env.tasks()
        );
    }
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn sluice_layouts() {
    layouts(Runtime::Sluice);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stock_layouts() {
    layouts(Runtime::RuncV2);
}
