//! The integration harness of sluice: a library of helpers for tests that run sluice and
//! containerd's stock `io.containerd.runc.v2` shim against a real containerd and a real runc.
//! A private containerd per test ([`TestEnv`]), a busybox rootfs, a fault-injecting `runc`
//! wrapper in front of the real runc ([`fault`], `src/bin/fault-runc.rs`), ctr and ttrpc calls,
//! fd, thread and process counting ([`procs`]), `ctr events` ([`events`]), and what a removed
//! container must not leave ([`traces`]).
//!
//! Every helper takes the runtime as a parameter, so the same steps run against sluice and
//! against the stock shim: the stock runs validate the harness and prove that each injected
//! fault really hangs a shim that reads runc's pipes too late.
//!
//! The suites are `tests/<suite>.rs`, one test crate each (a big one may keep modules in
//! `tests/<suite>/`): its scenarios and its `#[test]`s together. A suite imports only from this
//! library; being separate crates, suites cannot import one another. Their tests are
//! `#[ignore]`d because they need root, containerd, runc and busybox-static; run them with
//! `cargo test -p sluice-integration -- --ignored` (scripts/test.sh does). When run, a missing
//! prerequisite is a failure, never a skip. Unit tests of the harness itself run with
//! `cargo test -p sluice-integration --lib --bins`.

pub mod annotations;
pub mod cells;
pub mod cgroups;
pub mod checks;
pub mod cmd;
pub mod containers;
pub mod cri;
pub mod daemon;
pub mod docker;
pub mod doctor_support;
pub mod events;
pub mod fault;
pub mod harness;
pub mod lifetimes;
pub mod procs;
pub mod pty;
pub mod scale;
pub mod share;
pub mod system;
pub mod traces;
pub mod versions;

pub use cmd::CmdOutput;
pub use harness::{RunOpts, TestEnv};

use std::fmt;

/// Which shim containerd runs for the test's containers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// sluice, `io.containerd.sluice.v2` → `containerd-shim-sluice-v2`.
    Sluice,
    /// containerd's stock Go shim, `io.containerd.runc.v2` → `containerd-shim-runc-v2`.
    RuncV2,
}

impl Runtime {
    /// The runtime name given to `ctr run --runtime`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Sluice => "io.containerd.sluice.v2",
            Runtime::RuncV2 => "io.containerd.runc.v2",
        }
    }

    /// The shim binary containerd derives from the runtime name.
    pub fn shim_binary(self) -> &'static str {
        match self {
            Runtime::Sluice => system::SLUICE_SHIM_NAME,
            Runtime::RuncV2 => "containerd-shim-runc-v2",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Sluice => "sluice",
            Runtime::RuncV2 => "stock runc.v2",
        })
    }
}
