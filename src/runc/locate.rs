//! Which runc binary and state root a container's runtime options name.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use sluice_shim_proto::options::RuncOptions;

use super::Runc;

/// Where runc keeps state when the options name no root (the Go shim's default).
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";

#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    #[error("runtime binary {0:?} not found in PATH")]
    NotFound(String),
}

/// The runc to use for `options` in `namespace`.
pub fn runc_for(
    options: &RuncOptions,
    namespace: &str,
    deadline: Duration,
) -> Result<Runc, LocateError> {
    let name = if options.binary_name.is_empty() {
        "runc"
    } else {
        options.binary_name.as_str()
    };
    let binary = find_binary(name).ok_or_else(|| LocateError::NotFound(name.to_string()))?;
    let root = if options.root.is_empty() {
        DEFAULT_RUNC_ROOT
    } else {
        options.root.as_str()
    };
    Ok(Runc {
        binary,
        root: Path::new(root).join(namespace),
        systemd_cgroup: options.systemd_cgroup,
        criu: (!options.criu_path.is_empty()).then(|| PathBuf::from(&options.criu_path)),
        deadline,
    })
}

/// A name with a slash is a path; otherwise the first file of that name on PATH.
fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
