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
    if let Err(e) = runc.delete(id, Some(bundle), true).await {
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
    Ok(DeleteResponse {
        exit_status: 128 + libc::SIGKILL as u32,
        exited_at: MessageField::some(timestamp(SystemTime::now())),
        ..Default::default()
    })
}
