//! Integration harness for sluice: a private containerd per test, driven with `ctr`, with a
//! fault-injecting `runc` wrapper in front of the real runc.
//!
//! Every scenario takes the runtime as a parameter, so the same code runs against sluice and
//! against containerd's stock `io.containerd.runc.v2` shim: the stock runs validate the harness
//! and prove that each injected fault really hangs a shim that reads runc's pipes too late.
//!
//! The tests themselves (`tests/*.rs`) are `#[ignore]`d because they need root, containerd,
//! runc and busybox-static; run them with `cargo test -p sluice-integration -- --ignored`
//! (scripts/test.sh does). When run, a missing prerequisite is a failure, never a skip.

// The harness: helpers every suite may use. A helper never imports a suite.
pub mod annotations;
pub mod cells;
pub mod cmd;
pub mod containers;
pub mod cri;
pub mod daemon;
pub mod doctor_support;
pub mod environment;
pub mod fault;
pub mod harness;
pub mod procs;
pub mod system;
pub mod traces;
pub mod versions;

// The suites' scenarios, run by `tests/<suite>.rs`. A suite imports only from the harness above,
// never from another suite. (parity.rs still defines helpers that `containers` re-exports.)
pub mod matrix;
pub mod node;
pub mod parity;
pub mod restarts;
pub mod robustness;
pub mod scenarios;
pub mod security;
pub mod sweep;

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

/// Declares, for each named scenario in [`scenarios`], one ignored test per runtime:
/// `sluice::<name>` and `stock_runc_v2::<name>`.
#[macro_export]
macro_rules! tests_for_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod sluice {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    $crate::scenarios::$name($crate::Runtime::Sluice);
                }
            )*
        }
        mod stock_runc_v2 {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    $crate::scenarios::$name($crate::Runtime::RuncV2);
                }
            )*
        }
    };
}
