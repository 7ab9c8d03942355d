//! Prerequisites on the host, checked loudly, and the busybox root filesystem.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where the tools are looked up. Deliberately not the test runner's PATH: the real runc must be
/// found outside any wrapper directory.
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Name of the sluice shim binary; containerd derives it from `io.containerd.sluice.v2`.
pub const SLUICE_SHIM_NAME: &str = "containerd-shim-sluice-v2";

/// Host binaries every test needs.
#[derive(Debug)]
pub struct Tools {
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub runc: PathBuf,
    pub stock_shim: PathBuf,
    pub busybox: PathBuf,
}

/// Checks (once per test binary) that we are root and every tool is installed; panics with the
/// reason otherwise. These tests must never pass by skipping.
pub fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!(
                "integration tests need root (they start containerd and runc); \
                 run them as root, e.g. via scripts/test.sh"
            );
        }
        let need = |name: &str, package: &str| {
            which(name).unwrap_or_else(|| {
                panic!(
                    "prerequisite missing: `{name}` not found in {SYSTEM_PATH}; \
                     install the Debian package `{package}` (scripts/setup.sh does)"
                )
            })
        };
        // containerd, ctr and the stock shim of the build SLUICE_CONTAINERD selects.
        let build = crate::versions::selected();
        let tools = Tools {
            containerd: build.containerd.clone(),
            ctr: build.ctr.clone(),
            runc: crate::versions::selected_runc().path.clone(),
            stock_shim: build.stock_shim.clone(),
            busybox: need("busybox", "busybox-static"),
        };
        if !is_static_elf(&tools.busybox) {
            panic!(
                "{} is dynamically linked and would not run inside the test rootfs; \
                 install `busybox-static`",
                tools.busybox.display()
            );
        }
        if !Path::new("/sys/fs/cgroup").is_dir() {
            panic!("/sys/fs/cgroup is missing: runc needs cgroups");
        }
        tools
    })
}

/// The sluice shim under test: `$SLUICE_SHIM_BIN`, or the workspace's debug build.
pub fn sluice_shim_bin() -> PathBuf {
    let path = std::env::var_os("SLUICE_SHIM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("target/debug")
                .join(SLUICE_SHIM_NAME)
        });
    if !path.is_file() {
        panic!(
            "sluice shim binary not found at {} (set SLUICE_SHIM_BIN, or build it with \
             `cargo build --workspace --bins`)",
            path.display()
        );
    }
    fs::canonicalize(&path).unwrap_or(path)
}

/// Looks `name` up in [`SYSTEM_PATH`].
pub fn which(name: &str) -> Option<PathBuf> {
    SYSTEM_PATH
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// An ELF without a PT_INTERP program header needs no dynamic loader.
fn is_static_elf(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let Ok(bytes) = fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF only (amd64/arm64 Debian); anything else counts as not static.
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(bytes[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(0x36), u16_at(0x38));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        bytes
            .get(o..o + 4)
            .map(|t| u32::from_le_bytes(t.try_into().expect("4 bytes")) != PT_INTERP)
            .unwrap_or(false)
    })
}

/// Builds a minimal root filesystem at `dir`: busybox-static with a symlink per applet, plus the
/// directories runc mounts onto.
pub fn build_rootfs(dir: &Path, busybox: &Path) {
    for sub in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        fs::create_dir_all(dir.join(sub))
            .unwrap_or_else(|e| panic!("mkdir {}/{sub}: {e}", dir.display()));
    }
    fs::copy(busybox, dir.join("bin/busybox"))
        .unwrap_or_else(|e| panic!("copy {} into rootfs: {e}", busybox.display()));
    let list = Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("{} --list: {e}", busybox.display()));
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        // `busybox --list` names busybox itself: linking it would replace the binary.
        if applet.is_empty() || applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = dir.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
    }
    for needed in [
        "sh", "cat", "echo", "sleep", "true", "false", "head", "dd", "yes",
    ] {
        assert!(
            dir.join("bin").join(needed).exists(),
            "busybox at {} has no `{needed}` applet",
            busybox.display()
        );
    }
    fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("write passwd");
    fs::write(dir.join("etc/group"), "root:x:0:\n").expect("write group");
}
