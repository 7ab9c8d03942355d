//! The OCI annotations the suites put on containers.

/// The per-container deadline annotation.
pub const TIMEOUT_ANNOTATION: &str = "io.sluice.runc-timeout-seconds";
/// The grouping annotation both shims honour.
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";
