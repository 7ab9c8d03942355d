//! Containers through ctr beyond [`TestEnv`](crate::harness::TestEnv)'s basics: run and exec with
//! extra ctr flags, kill and delete, a container's bundle and its shim's address, the Task
//! events containerd publishes.
//!
//! The definitions still live in `parity.rs`, which another branch is rewriting at the time of
//! writing; they are re-exported here so the suites depend on the harness and not on the parity
//! suite, and move here (with no change to any suite) once that branch has landed.

pub use crate::parity::{
    bundle_dir, exec_detached, kill_and_delete, run_detached_with_flags, run_with_flags,
    shim_address, Event, EventWatcher, LINUX_RESOURCES_URL,
};
