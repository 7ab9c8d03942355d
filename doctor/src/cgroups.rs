//! Cgroups near their `pids.max`.
//!
//! At `pids.max` a container's next fork or thread fails with EAGAIN. For `runc init` (a Go
//! program that starts threads) that is a crash dump of several KiB on stderr, `runtime/cgo:
//! pthread_create failed: Resource temporarily unavailable`, written into whatever pipe the shim
//! gave it: the trigger of the case study. Any cgroup with a numeric `pids.max` is looked at, not
//! only containerd's, because the limit of a parent (a Kubernetes pod) counts as well.
//!
//! Layouts: cgroup v1 keeps the pids controller in its own hierarchy (`<root>/pids/...`); a
//! hybrid host may also mount cgroup2 at `<root>/unified` (which then has no pids controller, but
//! is looked at anyway); a v2 host has `cgroup.controllers` at `<root>` itself. Symlinks (v1's
//! `cpu -> cpu,cpuacct`) are not followed.

use std::fs;
use std::path::{Path, PathBuf};

use super::cli::cgroup_in_prefix;
use super::pipes::round1;
use super::report::{Finding, PidsNearMax};
use super::{DoctorError, Host, Scope};

/// The hierarchies that can hold `pids.max` files, as (`v1`|`v2`, directory).
fn hierarchies(root: &Path) -> Result<Vec<(&'static str, PathBuf)>, DoctorError> {
    if let Err(source) = fs::read_dir(root) {
        return Err(DoctorError::Read {
            path: root.to_path_buf(),
            source,
        });
    }
    if root.join("cgroup.controllers").is_file() {
        return Ok(vec![("v2", root.to_path_buf())]);
    }
    let mut out = Vec::new();
    let pids = root.join("pids");
    if pids.is_dir() {
        out.push(("v1", pids));
    }
    let unified = root.join("unified");
    if unified.join("cgroup.controllers").is_file() {
        out.push(("v2", unified));
    }
    Ok(out)
}

/// `dir` and every directory below it, without following symlinks.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

fn read_number(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Cgroups in scope where `pids.current >= ratio * pids.max`, and notes on what was not there.
pub fn pids_near_max(
    host: &Host,
    ratio: f64,
    scope: &Scope,
) -> Result<(Vec<Finding>, Vec<String>), DoctorError> {
    let hs = hierarchies(&host.cgroup_root)?;
    let mut notes = Vec::new();
    if hs.is_empty() {
        notes.push(format!(
            "no pids controller under {}: cgroups were not checked",
            host.cgroup_root.display()
        ));
    }
    let mut out = Vec::new();
    for (kind, base) in hs {
        for dir in walk(&base) {
            // The top has no pids.max in either version; the limits live below it.
            let Ok(max) = fs::read_to_string(dir.join("pids.max")) else {
                continue;
            };
            let Ok(max) = max.trim().parse::<u64>() else {
                continue; // "max": no limit
            };
            let Some(current) = read_number(&dir.join("pids.current")) else {
                continue;
            };
            let rel = dir.strip_prefix(&base).unwrap_or(&dir);
            let cgroup = format!("/{}", rel.display());
            let in_scope = scope.cgroup_prefixes.is_empty()
                || scope
                    .cgroup_prefixes
                    .iter()
                    .any(|p| cgroup_in_prefix(&cgroup, p));
            if !in_scope || (current as f64) < ratio * max as f64 {
                continue;
            }
            out.push(Finding::PidsNearMax(PidsNearMax {
                cgroup,
                path: dir.display().to_string(),
                hierarchy: kind.to_string(),
                current,
                max,
                percent: if max == 0 {
                    100.0
                } else {
                    round1(current as f64 * 100.0 / max as f64)
                },
            }));
        }
    }
    Ok((out, notes))
}
