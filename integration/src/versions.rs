//! Which containerd a test runs against (`SLUICE_CONTAINERD=1.6|1.7|2.x|2.2|2.3|2.4`), and
//! which runc (`SLUICE_RUNC`).
//!
//! - `1.6` (the default): the system's containerd, ctr and stock shim (Debian bookworm's 1.6).
//! - `1.7`, `2.x`: Debian trixie's and sid's containerd packages, unpacked (never installed) by
//!   `scripts/fetch-containerd.sh` into `$SLUICE_CONTAINERD_CACHE/<label>/`
//!   (default `/var/cache/sluice-ci/containerd`).
//! - `2.2`, `2.3`, `2.4`: upstream releases pinned in `scripts/peers.lock`, built from their Go
//!   modules by `scripts/build-peers.sh` into `$SLUICE_PEERS_CACHE/containerd/<label>/bin/`
//!   (default `/var/cache/sluice-ci/peers`).
//!
//! A build's `containerd`, its own `ctr` and its own `containerd-shim-runc-v2` are always used
//! together: the harness puts the build's binary directory on containerd's PATH ahead of the
//! system directories, so the stock shim the tests compare against is the one of that release.
//!
//! `SLUICE_RUNC` picks the runc both shims call (through the fault-injecting wrapper): unset or
//! `system`, the system's runc; `1.2` … `1.5`, that line's build from the peers cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::system::which;

/// Selects the containerd build.
pub const ENV: &str = "SLUICE_CONTAINERD";
/// Where `scripts/fetch-containerd.sh` unpacks the builds.
pub const CACHE_ENV: &str = "SLUICE_CONTAINERD_CACHE";
pub const DEFAULT_CACHE: &str = "/var/cache/sluice-ci/containerd";

/// Where `scripts/build-peers.sh` builds the pinned upstream releases.
pub const PEERS_CACHE_ENV: &str = "SLUICE_PEERS_CACHE";
pub const DEFAULT_PEERS_CACHE: &str = "/var/cache/sluice-ci/peers";
/// Selects the runc build.
pub const RUNC_ENV: &str = "SLUICE_RUNC";

/// A containerd release line. The order is the release order: `line >= Line::V2` is any 2.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Line {
    V1_6,
    V1_7,
    /// Debian's 2.x package (2.1 today).
    V2,
    /// Upstream releases from the peers cache.
    V2_2,
    V2_3,
    V2_4,
}

impl Line {
    pub const ALL: [Line; 6] = [
        Line::V1_6,
        Line::V1_7,
        Line::V2,
        Line::V2_2,
        Line::V2_3,
        Line::V2_4,
    ];

    pub fn parse(s: &str) -> Option<Line> {
        match s.trim() {
            "" | "1.6" | "system" => Some(Line::V1_6),
            "1.7" => Some(Line::V1_7),
            "2" | "2.x" | "2.0" | "2.1" => Some(Line::V2),
            "2.2" => Some(Line::V2_2),
            "2.3" => Some(Line::V2_3),
            "2.4" => Some(Line::V2_4),
            _ => None,
        }
    }

    /// The label used on the command line and as the cache sub-directory.
    pub fn label(self) -> &'static str {
        match self {
            Line::V1_6 => "1.6",
            Line::V1_7 => "1.7",
            Line::V2 => "2.x",
            Line::V2_2 => "2.2",
            Line::V2_3 => "2.3",
            Line::V2_4 => "2.4",
        }
    }

    /// Any containerd 2 release (task API v3, config version 3, the split CRI plugins).
    pub fn is_v2(self) -> bool {
        self >= Line::V2
    }

    /// Whether the daemon starts shims with `BootstrapParams` on stdin and reads a protobuf
    /// `BootstrapResult` back (2.3 and later).
    pub fn bootstrap_params(self) -> bool {
        self >= Line::V2_3
    }

    /// The prefix of `containerd --version`'s version field (less a leading `v`).
    fn version_prefix(self) -> &'static str {
        match self {
            Line::V1_6 => "1.6.",
            Line::V1_7 => "1.7.",
            Line::V2 => "2.",
            Line::V2_2 => "2.2.",
            Line::V2_3 => "2.3.",
            Line::V2_4 => "2.4.",
        }
    }

    /// The `version` of the config file this line reads natively. 2.4 reads version 4 too, but
    /// takes 3 as it is (the harness's config has nothing version 4 changed).
    pub fn config_version(self) -> u32 {
        if self.is_v2() {
            3
        } else {
            2
        }
    }

    /// The plugin whose `containerd.runtimes.<name>` tables define CRI runtime handlers.
    pub fn cri_runtime_plugin(self) -> &'static str {
        if self.is_v2() {
            "io.containerd.cri.v1.runtime"
        } else {
            "io.containerd.grpc.v1.cri"
        }
    }

    /// Every plugin that makes up the CRI service in this line (disabled together when a test
    /// does not need CRI).
    pub fn cri_plugins(self) -> &'static [&'static str] {
        match self {
            Line::V2 | Line::V2_2 | Line::V2_3 | Line::V2_4 => &[
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
            Line::V2 | Line::V2_2 | Line::V2_3 | Line::V2_4 => &[
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
    Line::parse(&raw).unwrap_or_else(|| {
        panic!("{ENV}={raw:?} is not one of 1.6 (default), 1.7, 2.x, 2.2, 2.3, 2.4")
    })
}

/// The cache directory of the fetched builds.
pub fn cache_dir() -> PathBuf {
    std::env::var_os(CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE))
}

/// The cache directory of the builds from source (`scripts/build-peers.sh`).
pub fn peers_dir() -> PathBuf {
    std::env::var_os(PEERS_CACHE_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PEERS_CACHE))
}

/// The build `SLUICE_CONTAINERD` selects (checked once per test binary). Panics, naming the
/// fix, when it is not there: a missing build is a failure, never a skip.
pub fn selected() -> &'static ContainerdBuild {
    of(selected_line())
}

/// The build of `line` (checked once per test binary), for tests that run more than one line,
/// such as an upgrade from 1.7 to 2.x on the same state. Panics as [`selected`] does.
pub fn of(line: Line) -> &'static ContainerdBuild {
    static BUILDS: [OnceLock<ContainerdBuild>; Line::ALL.len()] =
        [const { OnceLock::new() }; Line::ALL.len()];
    let slot = Line::ALL
        .iter()
        .position(|l| *l == line)
        .expect("Line::ALL lists every line");
    BUILDS[slot].get_or_init(|| build(line))
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
        Line::V2_2 | Line::V2_3 | Line::V2_4 => {
            let bin = peers_dir()
                .join("containerd")
                .join(line.label())
                .join("bin");
            let need = |name: &str| {
                let p = bin.join(name);
                if !p.is_file() {
                    panic!(
                        "{ENV}={}: {} is missing; run `scripts/build-peers.sh containerd/{}` \
                         (scripts/setup.sh does) or point {PEERS_CACHE_ENV} at its cache",
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
    // Upstream builds print `v2.4.2`, Debian's `2.1.9+ds1-5`.
    let ok = version
        .trim_start_matches('v')
        .starts_with(line.version_prefix());
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

/// One runc build.
#[derive(Debug)]
pub struct RuncBuild {
    pub path: PathBuf,
    /// `runc --version`'s first line's version, e.g. `1.5.3`.
    pub version: String,
}

/// The runc `SLUICE_RUNC` selects (checked once per test binary): unset or `system`, the
/// system's runc; `1.2` … `1.5`, that line's build from the peers cache. Panics, naming the fix,
/// when it is not there.
pub fn selected_runc() -> &'static RuncBuild {
    static RUNC: OnceLock<RuncBuild> = OnceLock::new();
    RUNC.get_or_init(|| {
        let raw = std::env::var(RUNC_ENV).unwrap_or_default();
        let label = raw.trim();
        let path = match label {
            "" | "system" => which("runc").unwrap_or_else(|| {
                panic!(
                    "prerequisite missing: `runc` not found in {}; install the Debian package \
                     `runc` (scripts/setup.sh does)",
                    crate::system::SYSTEM_PATH
                )
            }),
            "1.2" | "1.3" | "1.4" | "1.5" => {
                let p = peers_dir().join("runc").join(label).join("bin/runc");
                if !p.is_file() {
                    panic!(
                        "{RUNC_ENV}={label}: {} is missing; run `scripts/build-peers.sh \
                         runc/{label}` or point {PEERS_CACHE_ENV} at its cache",
                        p.display()
                    );
                }
                p
            }
            _ => panic!("{RUNC_ENV}={raw:?} is not one of system (default), 1.2, 1.3, 1.4, 1.5"),
        };
        let version = runc_version_of(&path);
        if !label.is_empty() && label != "system" {
            assert!(
                version.starts_with(&format!("{label}.")),
                "{RUNC_ENV}={label}: {} reports version {version:?}",
                path.display()
            );
        }
        RuncBuild { path, version }
    })
}

/// `runc --version` opens with `runc version <version>`.
fn runc_version_of(runc: &Path) -> String {
    let out = Command::new(runc)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{} --version: {e}", runc.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix("runc version "))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("{} --version printed {text:?}", runc.display()))
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
        for l in Line::ALL {
            assert_eq!(Line::parse(l.label()), Some(l));
        }
        assert!(Line::V2_4.is_v2() && Line::V2.is_v2() && !Line::V1_7.is_v2());
        assert!(Line::V2_3.bootstrap_params() && !Line::V2_2.bootstrap_params());
        assert_eq!(Line::V2_4.config_version(), 3);
        assert_eq!(Line::parse(""), Some(Line::V1_6));
        assert_eq!(Line::parse("1.8"), None);
        assert_eq!(Line::V2.config_version(), 3);
        assert_eq!(Line::V1_7.config_version(), 2);
    }
}
