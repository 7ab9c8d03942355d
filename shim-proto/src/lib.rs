//! The wire contract between sluice and containerd: which protobuf messages the shim speaks,
//! how task events are built and named, and how the runc `Options` containerd sends are decoded.
//!
//! Nothing here does IO or knows about processes; the shim binary turns its own state into these
//! messages at the edge.

pub mod bootstrap;
pub mod events;
pub mod options;
pub mod pids;
pub mod time;

pub use containerd_shim_protos as protos;
pub use containerd_shim_protos::protobuf;
