//! A container's cgroup, read for the `Stats` RPC and watched for OOM kills.
//!
//! Owns: finding a container's cgroup from `/proc/<pid>/cgroup` of its init process, turning the
//! cgroupfs files into the metrics message containerd expects (`io.containerd.cgroups.v1.Metrics`
//! on a cgroup v1 host, `io.containerd.cgroups.v2.Metrics` on a cgroup v2 host) packed in an
//! `Any`, and the OOM notification of the memory controller.
//!
//! Must not: create, change or remove cgroups (runc owns them), spawn anything, block the async
//! runtime, or panic on what the kernel (or a fixture) writes in a file. A missing file or
//! controller leaves its fields out; a malformed line is skipped and logged at debug level. The
//! files are read with plain `std::fs` calls: cgroupfs files are small and answer from memory, as
//! the Go shim reads them.
//!
//! The field mapping follows containerd's `cgroups` library (`cgroup1/*.go` `Stat`,
//! `cgroup2/manager.go` `Stat`), which the Go runc shim answers `Stats` with; the few places where
//! this module knowingly differs say so next to the code.

// Wired into the service by the Stats/OOM work.

mod oom;
mod parse;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

use std::{
    collections::BTreeMap,
    io,
    path::{Component, Path, PathBuf},
};

use containerd_shim::protos::protobuf::{well_known_types::any::Any, Message};

pub use oom::OomWatcher;

/// Which cgroup hierarchy the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hierarchy {
    /// Legacy or hybrid: one mount per controller (`<root>/memory`, `<root>/cpu`, ...). A cgroup2
    /// mount at `<root>/unified` on a hybrid host carries no resource controllers we read, so the
    /// host still counts as v1, as it does for runc and containerd.
    V1,
    /// Unified: `<root>` itself is the cgroup2 mount.
    V2,
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path} (cgroups of pid {pid}): {source}")]
    ProcCgroup {
        pid: u32,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: {path} names no usable {hierarchy:?} cgroup: {reason}")]
    NoCgroup {
        pid: u32,
        path: PathBuf,
        hierarchy: Hierarchy,
        reason: String,
    },
    /// The cgroup directories are gone: the container has been deleted.
    #[error("the cgroup of pid {pid} is gone ({path} does not exist)")]
    Gone { pid: u32, path: PathBuf },
    #[error("pid {pid}: no {controller} controller at {path}")]
    NoController {
        pid: u32,
        controller: &'static str,
        path: PathBuf,
    },
    /// A system call on a cgroup file failed; `action` says which.
    #[error("{action} {path} (cgroup of pid {pid}): {source}")]
    Os {
        pid: u32,
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("encode {type_url} for pid {pid}: {source}")]
    Encode {
        pid: u32,
        type_url: String,
        #[source]
        source: containerd_shim::protos::protobuf::Error,
    },
}

/// Where the cgroup and proc filesystems are mounted. Tests point both at fixture trees.
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    proc_root: PathBuf,
}

impl CgroupFs {
    /// The host's filesystems: `/sys/fs/cgroup` and `/proc`.
    pub fn host() -> CgroupFs {
        CgroupFs::with_roots("/sys/fs/cgroup", "/proc")
    }

    pub fn with_roots(cgroup_root: impl Into<PathBuf>, proc_root: impl Into<PathBuf>) -> CgroupFs {
        CgroupFs {
            root: cgroup_root.into(),
            proc_root: proc_root.into(),
        }
    }

    /// v2 iff the root is itself a cgroup2 mount, which is what `cgroup.controllers` at the root
    /// means. Checked on each call: it is one `stat` and the answer never changes on a live host.
    pub fn hierarchy(&self) -> Hierarchy {
        if self.root.join("cgroup.controllers").exists() {
            Hierarchy::V2
        } else {
            Hierarchy::V1
        }
    }

    /// The container's cgroup, found from `/proc/<pid>/cgroup` of its init process.
    ///
    /// Only parses; the directories are looked at when metrics are read, so this works for a
    /// container whose cgroup is about to be created or removed.
    pub fn for_pid(&self, pid: u32) -> Result<ContainerCgroup, CgroupError> {
        let path = self.proc_root.join(pid.to_string()).join("cgroup");
        let text = std::fs::read_to_string(&path).map_err(|source| CgroupError::ProcCgroup {
            pid,
            path: path.clone(),
            source,
        })?;
        let hierarchy = self.hierarchy();
        let no_cgroup = |reason: String| CgroupError::NoCgroup {
            pid,
            path: path.clone(),
            hierarchy,
            reason,
        };
        let kind = match hierarchy {
            Hierarchy::V2 => {
                let rel = text
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .ok_or_else(|| no_cgroup("no `0::` line".into()))?;
                let dir = join_cgroup_path(&self.root, rel.trim_end())
                    .ok_or_else(|| no_cgroup(format!("unusable path {rel:?}")))?;
                Kind::V2(dir)
            }
            Hierarchy::V1 => {
                let dirs = self.v1_dirs(&text);
                if dirs.is_empty() {
                    return Err(no_cgroup(format!(
                        "no line for any of the controllers {}",
                        v1::CONTROLLERS.join(", ")
                    )));
                }
                Kind::V1(dirs)
            }
        };
        Ok(ContainerCgroup {
            pid,
            proc_root: self.proc_root.clone(),
            kind,
        })
    }

    /// The directory of each controller we read, from v1 lines `<id>:<controllers>:<path>`.
    fn v1_dirs(&self, text: &str) -> BTreeMap<&'static str, PathBuf> {
        let mut dirs = BTreeMap::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(list), Some(rel)) = (parts.next(), parts.next(), parts.next())
            else {
                log::debug!("cgroup: skipping malformed /proc cgroup line {line:?}");
                continue;
            };
            for name in list.split(',') {
                let Some(&controller) = v1::CONTROLLERS.iter().find(|c| **c == name) else {
                    continue;
                };
                // Distributions mount co-mounted controllers at `cpu,cpuacct` with a symlink per
                // controller; some mount only the joined name. Prefer the controller's own name.
                let own = self.root.join(controller);
                let mount = if own.exists() {
                    own
                } else {
                    let joined = self.root.join(list);
                    if joined.exists() {
                        joined
                    } else {
                        own
                    }
                };
                match join_cgroup_path(&mount, rel.trim_end()) {
                    Some(dir) => {
                        dirs.insert(controller, dir);
                    }
                    None => log::debug!("cgroup: skipping unusable path in line {line:?}"),
                }
            }
        }
        dirs
    }
}

/// `mount` + the cgroup path from `/proc/<pid>/cgroup`, refusing `..`: a path that climbs out of
/// the mount belongs to another cgroup namespace and cannot be read from here.
fn join_cgroup_path(mount: &Path, rel: &str) -> Option<PathBuf> {
    let mut dir = mount.to_path_buf();
    for c in Path::new(rel).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => dir.push(part),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(dir)
}

/// One container's cgroup: the directory per v1 controller, or the one v2 directory.
#[derive(Debug, Clone)]
pub struct ContainerCgroup {
    /// The init pid it was found from, for error messages.
    pid: u32,
    /// For `/proc/partitions` (device names of v1 blkio entries).
    proc_root: PathBuf,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    V1(BTreeMap<&'static str, PathBuf>),
    V2(PathBuf),
}

impl ContainerCgroup {
    #[cfg(test)]
    pub fn hierarchy(&self) -> Hierarchy {
        match self.kind {
            Kind::V1(_) => Hierarchy::V1,
            Kind::V2(_) => Hierarchy::V2,
        }
    }

    /// The `Stats` answer: the metrics message of the host's hierarchy in an `Any` whose type URL
    /// is the message's bare full name, as containerd's typeurl registry names it (containerd 1.6
    /// cannot resolve a `type.googleapis.com/` prefix).
    ///
    /// Fails only when the cgroup is gone (no directory left) or encoding fails; a partly readable
    /// cgroup gives partial metrics.
    /// `pids.current` and `pids.max` (None for "max"), if the pids controller is there.
    pub fn pids(&self) -> Option<(u64, Option<u64>)> {
        let dir = match &self.kind {
            Kind::V1(dirs) => dirs.get("pids")?.clone(),
            Kind::V2(dir) => dir.clone(),
        };
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
        let current = read("pids.current")?.trim().parse().ok()?;
        let max = read("pids.max")?.trim().parse().ok();
        Some((current, max))
    }

    pub fn metrics_any(&self) -> Result<Any, CgroupError> {
        match &self.kind {
            Kind::V1(dirs) => {
                if let Some(first) = dirs.values().next() {
                    if !dirs.values().any(|d| d.is_dir()) {
                        return Err(self.gone(first));
                    }
                }
                self.pack(
                    "io.containerd.cgroups.v1",
                    &v1::metrics(dirs, &self.proc_root),
                )
            }
            Kind::V2(dir) => {
                if !dir.is_dir() {
                    return Err(self.gone(dir));
                }
                self.pack("io.containerd.cgroups.v2", &v2::metrics(dir))
            }
        }
    }

    /// Start watching for OOM kills in this cgroup. Needs a tokio runtime with IO enabled.
    pub fn oom_watcher(&self) -> Result<OomWatcher, CgroupError> {
        match &self.kind {
            Kind::V1(dirs) => {
                let dir = dirs
                    .get("memory")
                    .ok_or_else(|| CgroupError::NoController {
                        pid: self.pid,
                        controller: "memory",
                        path: self.proc_root.join(self.pid.to_string()).join("cgroup"),
                    })?;
                OomWatcher::v1(self.pid, dir)
            }
            Kind::V2(dir) => OomWatcher::v2(self.pid, dir),
        }
    }

    fn gone(&self, path: &Path) -> CgroupError {
        CgroupError::Gone {
            pid: self.pid,
            path: path.to_path_buf(),
        }
    }

    /// Packs `m` of protobuf `package`; the name is spelled out because the descriptor would
    /// build protobuf's reflection tables (hundreds of KiB) in every shim that serves Stats.
    fn pack<M: Message>(&self, package: &str, m: &M) -> Result<Any, CgroupError> {
        let type_url = format!("{package}.{}", M::NAME);
        let value = m.write_to_bytes().map_err(|source| CgroupError::Encode {
            pid: self.pid,
            type_url: type_url.clone(),
            source,
        })?;
        Ok(Any {
            type_url,
            value,
            ..Default::default()
        })
    }
}

/// Moves `pid` into the cgroup at `path` (runc `ShimCgroup`): in every v1 hierarchy that has
/// that cgroup, or in the v2 tree.
pub fn add_process(root: &Path, path: &str, pid: u32) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let mut dirs = Vec::new();
    if root.join("cgroup.controllers").exists() {
        dirs.push(root.join(rel));
    } else {
        for entry in std::fs::read_dir(root)?.flatten() {
            let dir = entry.path().join(rel);
            if dir.join("cgroup.procs").exists() {
                dirs.push(dir);
            }
        }
    }
    let mut moved = 0;
    for d in &dirs {
        if d.join("cgroup.procs").exists() {
            std::fs::write(d.join("cgroup.procs"), pid.to_string())?;
            moved += 1;
        }
    }
    if moved == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no cgroup {path} under {}", root.display()),
        ));
    }
    Ok(())
}
