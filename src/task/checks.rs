//! The checks of request fields that the Task service makes before anything else sees them:
//! IDs that could escape a directory, bundles outside containerd's layout, signals out of range.

use crate::error::{Error, Result};

/// Rejects IDs that could escape a directory or confuse runc.
pub fn check_id(kind: &str, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{kind} ID is empty")));
    }
    if id.contains('/') || id.contains('\0') || id.contains("..") {
        return Err(Error::InvalidArgument(format!(
            "{kind} ID {id:?} contains '/', '..' or NUL"
        )));
    }
    Ok(())
}

/// A bundle must be `<bundle root>/<id>`, as containerd lays them out: a request naming another
/// directory would have runc run whatever config it finds there.
pub fn check_bundle(id: &str, bundle: &str, root: Option<&std::path::Path>) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::InvalidArgument(format!(
            "create container {id}: bundle {bundle:?} {why}"
        )))
    };
    let path = std::path::Path::new(bundle);
    if bundle.is_empty() || !path.is_absolute() {
        return refuse("is not an absolute path");
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return refuse("contains '..'");
    }
    if let Some(root) = root {
        if path.parent() != Some(root) || path.file_name() != Some(std::ffi::OsStr::new(id)) {
            return refuse(&format!("is not {}/{id}", root.display()));
        }
    }
    Ok(())
}

pub fn check_exec_id(exec_id: &str) -> Result<()> {
    if exec_id.is_empty() {
        Ok(())
    } else {
        check_id("exec", exec_id)
    }
}

/// Signals from 1 to SIGRTMAX, real-time signals included.
pub fn check_signal(signal: u32) -> Result<()> {
    let max = libc::SIGRTMAX() as u32;
    if (1..=max).contains(&signal) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "signal {signal} is outside 1..={max}"
        )))
    }
}
