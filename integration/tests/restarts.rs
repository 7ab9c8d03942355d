//! containerd SIGKILLed and restarted with tasks running, then the shims SIGKILLed (issue 5,
//! item 3): under the stock shim first (what this containerd version does), then under sluice,
//! which must show the same.
//!
//! Run: `SLUICE_CONTAINERD=1.7 cargo test -p sluice-integration --test restarts -- --ignored
//! --nocapture --test-threads=1` (as root; see scripts/test.sh).

use sluice_integration::{restarts, Runtime};

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn restarts_stock() {
    restarts::restarts(Runtime::RuncV2);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn restarts_sluice() {
    restarts::restarts(Runtime::Sluice);
}
