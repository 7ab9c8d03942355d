//! Which containerd a test runs against: `SLUICE_CONTAINERD=1.6|1.7|2.x`.
//!
//! - `1.6` (the default): the system's containerd, ctr and stock shim (Debian bookworm's 1.6).
//! - `1.7`, `2.x`: Debian trixie's and sid's containerd packages, unpacked (never installed) by
//!   `scripts/fetch-containerd.sh` into `$SLUICE_CONTAINERD_CACHE/<label>/`
//!   (default `/var/cache/sluice-ci/containerd`).
//!
//! A build's `containerd`, its own `ctr` and its own `containerd-shim-runc-v2` are always used
//! together: the harness puts the build's `usr/bin` on containerd's PATH ahead of the system
//! directories, so the stock shim the tests compare against is the one of that release.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::system::which;

/// Selects the containerd build.
pub const ENV: &str = "SLUICE_CONTAINERD";
/// Where `scripts/fetch-containerd.sh` unpacks the builds.
pub const CACHE_ENV: &str = "SLUICE_CONTAINERD_CACHE";
pub const DEFAULT_CACHE: &str = "/var/cache/sluice-ci/containerd";

/// A containerd release line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Line {
    V1_6,
    V1_7,
    V2,
}

impl Line {
    pub fn parse(s: &str) -> Option<Line> {
        match s.trim() {
            "" | "1.6" | "system" => Some(Line::V1_6),
            "1.7" => Some(Line::V1_7),
            "2" | "2.x" | "2.0" | "2.1" => Some(Line::V2),
            _ => None,
        }
    }

    /// The label used on the command line and as the cache sub-directory.
    pub fn label(self) -> &'static str {
        match self {
            Line::V1_6 => "1.6",
            Line::V1_7 => "1.7",
            Line::V2 => "2.x",
        }
    }

    /// The `version` of the config file this line reads natively.
    pub fn config_version(self) -> u32 {
        match self {
            Line::V2 => 3,
            _ => 2,
        }
    }

    /// The plugin whose `containerd.runtimes.<name>` tables define CRI runtime handlers.
    pub fn cri_runtime_plugin(self) -> &'static str {
        match self {
            Line::V2 => "io.containerd.cri.v1.runtime",
            _ => "io.containerd.grpc.v1.cri",
        }
    }

    /// Every plugin that makes up the CRI service in this line (disabled together when a test
    /// does not need CRI).
    pub fn cri_plugins(self) -> &'static [&'static str] {
        match self {
            Line::V2 => &[
                "io.containerd.grpc.v1.cri",
                "io.containerd.cri.v1.runtime",
                "io.containerd.cri.v1.images",
            ],
            _ => &["io.containerd.grpc.v1.cri"],
        }
    }

    /// Plugins that would make parallel private containerds collide or that need hardware or
    /// filesystems the tests never use.
    pub fn unneeded_plugins(self) -> &'static [&'static str] {
        match self {
            // NRI (on by default in 2.x) listens on the fixed /var/run/nri/nri.sock.
            Line::V2 => &[
                "io.containerd.nri.v1.nri",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.blockfile",
                "io.containerd.snapshotter.v1.erofs",
            ],
            Line::V1_7 => &[
                "io.containerd.nri.v1.nri",
                "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.blockfile",
            ],
            Line::V1_6 => &[
                "io.containerd.snapshotter.v1.aufs",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.zfs",
            ],
        }
    }
}

/// One containerd build: its binaries, used together.
#[derive(Debug)]
pub struct ContainerdBuild {
    pub line: Line,
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    /// That release's `containerd-shim-runc-v2` (the stock shim the tests compare against).
    pub stock_shim: PathBuf,
    /// Put on containerd's PATH ahead of the system directories (`None`: the system build).
    pub bin_dir: Option<PathBuf>,
    /// `containerd --version`'s version field, e.g. `1.7.24~ds1`.
    pub version: String,
}

impl ContainerdBuild {
    /// The `version` of the config file this build reads natively.
    pub fn config_version(&self) -> u32 {
        self.line.config_version()
    }
}

/// The line `SLUICE_CONTAINERD` names; panics on a value it does not know.
pub fn selected_line() -> Line {
    let raw = std::env::var(ENV).unwrap_or_default();
    Line::parse(&raw)
        .unwrap_or_else(|| panic!("{ENV}={raw:?} is not one of 1.6 (default), 1.7, 2.x"))
}

/// The cache directory of the fetched builds.
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// The build `SLUICE_CONTAINERD` selects (checked once per test binary). Panics, naming the
/// fix, when it is not there: a missing build is a failure, never a skip.
pub fn selected() -> &'static ContainerdBuild {
    of(selected_line())
}

/// The build of `line` (checked once per test binary), for tests that run more than one line,
/// such as an upgrade from 1.7 to 2.x on the same state. Panics as [`selected`] does.
pub fn of(line: Line) -> &'static ContainerdBuild {
    static BUILDS: [OnceLock<ContainerdBuild>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match line {
        Line::V1_6 => &BUILDS[0],
        Line::V1_7 => &BUILDS[1],
        Line::V2 => &BUILDS[2],
    };
    slot.get_or_init(|| build(line))
}

fn build(line: Line) -> ContainerdBuild {
    let (containerd, ctr, stock_shim, bin_dir) = match line {
        Line::V1_6 => {
            let need = |name: &str| {
                which(name).unwrap_or_else(|| {
                    panic!(
                        "prerequisite missing: `{name}` not found in {}; install the Debian \
                         package `containerd` (scripts/setup.sh does)",
                        crate::system::SYSTEM_PATH
                    )
                })
            };
            (
                need("containerd"),
                need("ctr"),
                need("containerd-shim-runc-v2"),
                None,
            )
        }
        Line::V1_7 | Line::V2 => {
            let bin = cache_dir().join(line.label()).join("usr/bin");
            let need = |name: &str| {
                let p = bin.join(name);
                if !p.is_file() {
                    panic!(
                        "{ENV}={}: {} is missing; run `scripts/fetch-containerd.sh {}` \
                         (scripts/setup.sh does) or point {CACHE_ENV} at its cache",
                        line.label(),
                        p.display(),
                        line.label()
                    );
                }
                p
            };
            (
                need("containerd"),
                need("ctr"),
                need("containerd-shim-runc-v2"),
                Some(bin.clone()),
            )
        }
    };
    let version = version_of(&containerd);
    let ok = match line {
        Line::V1_6 => version.starts_with("1.6."),
        Line::V1_7 => version.starts_with("1.7."),
        Line::V2 => version.starts_with("2."),
    };
    assert!(
        ok,
        "{ENV}={}: {} reports version {version:?}, not a {} release",
        line.label(),
        containerd.display(),
        line.label()
    );
    ContainerdBuild {
        line,
        containerd,
        ctr,
        stock_shim,
        bin_dir,
        version,
    }
}

/// `containerd --version` is `containerd <module> <version> <revision>`.
fn version_of(containerd: &Path) -> String {
    let out = Command::new(containerd)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} --version: {e}", containerd.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{} --version printed {text:?}", containerd.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_json_address() {
        let j = r#"{"version":3,"address":"unix:///run/containerd/s/abc","protocol":"ttrpc"}"#;
        assert_eq!(
            crate::harness::bootstrap_address(j).as_deref(),
            Some("unix:///run/containerd/s/abc")
        );
    }

    #[test]
    fn labels_round_trip() {
        for l in [Line::V1_6, Line::V1_7, Line::V2] {
            assert_eq!(Line::parse(l.label()), Some(l));
        }
        assert_eq!(Line::parse(""), Some(Line::V1_6));
        assert_eq!(Line::parse("1.8"), None);
        assert_eq!(Line::V2.config_version(), 3);
        assert_eq!(Line::V1_7.config_version(), 2);
    }
}
