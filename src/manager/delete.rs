//! `delete`: containerd's cleanup after a shim that died (containerd's `manager.Stop`): delete
//! the container with runc, unmount its rootfs, and report it killed.

use std::{path::Path, time::SystemTime};

use containerd_shim::{DeleteResponse, Error as ShimError};
use log::warn;
use sluice_shim_proto::{options::RuncOptions, protobuf::MessageField, time::timestamp};

use super::other;
use crate::{container::OPTIONS_FILE, runc::Runc};

/// Deletes container `id` of `bundle` in `namespace`, whatever state its shim left it in.
pub async fn delete(bundle: &Path, namespace: &str, id: &str) -> Result<DeleteResponse, ShimError> {
    crate::reaper::start().map_err(|e| other(format!("start reaper: {e}")))?;
    // The options Create saved; without them, runc's defaults (as the Go shim does).
    let options: RuncOptions = std::fs::read(bundle.join(OPTIONS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let runc: Runc = crate::runc::runc_for(&options, namespace, Runc::deadline_from_env())
        .map_err(|e| other(format!("delete container {id}: {e}")))?;
    Ok(delete_with(&runc, bundle, id).await)
}

/// `runc delete --force` and the rootfs unmount; reports the container killed.
async fn delete_with(runc: &Runc, bundle: &Path, id: &str) -> DeleteResponse {
    // A bundle already removed (containerd's rollback of a failed create can get there first,
    // containerd #13977) still has runc state and perhaps a mount to clean up; runc's --log
    // would fail in a directory that is gone, so it runs without one then.
    let log_dir = bundle.is_dir().then_some(bundle);
    if let Err(e) = runc.delete(id, log_dir, true).await {
        if !e.is_not_exist() {
            warn!("delete container {id}: {e}");
        }
    }
    let rootfs = bundle.join("rootfs");
    let target = rootfs.display().to_string();
    let _ = tokio::task::spawn_blocking(move || {
        containerd_shim::mount::umount_recursive(Some(&target), libc::MNT_DETACH)
    })
    .await;
    DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp(SystemTime::now())),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// Like runc, the fake fails when its --log cannot be opened, and records the delete.
    const FAKE_RUNC: &str = r#"#!/bin/sh
while [ $# -gt 0 ]; do
  case "$1" in
    --log) : >> "$2" || exit 1; shift ;;
    delete) echo "$@" >> "$(dirname "$0")/deleted" ;;
  esac
  shift
done
"#;

    #[tokio::test]
    async fn delete_cleans_up_when_the_bundle_is_already_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runc = dir.path().join("runc");
        std::fs::write(&runc, FAKE_RUNC).expect("write");
        std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bundle = dir.path().join("gone");
        // The options file is gone with the bundle: the runtime is found by name on PATH.
        let path = format!(
            "{}:{}",
            dir.path().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        std::env::set_var("PATH", path);
        let resp = delete(&bundle, "ns", "c1").await.expect("delete answers");
        assert_eq!(resp.exit_status, 137);
        let deleted = std::fs::read_to_string(dir.path().join("deleted")).expect("runc delete ran");
        assert!(deleted.contains("--force c1"), "{deleted}");
    }
}
