//! Links the shim as a position-dependent executable, and records for `-v` how it was built.
//!
//! Every shim is a separate process, hundreds per node. A position-independent executable
//! applies some 20,000 relocations at start, which turns ~400 KiB of read-only data into private
//! memory in each of them; a fixed-address binary shares those pages between all shims.
use std::process::Command;

fn main() {
    // The static build (scripts/build-static.sh) gets the same from `-C relocation-model=static`,
    // with which rustc links `-static -no-pie` itself; `-no-pie` on top of rustc's default
    // `-static-pie` would make a binary that crashes at start.
    let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .map(|f| f.split(',').any(|x| x == "crt-static"))
        .unwrap_or(false);
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && !crt_static {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SLUICE_REVISION");
    // The commit: $SLUICE_REVISION (a release built outside a checkout), else git, else unknown.
    let revision = std::env::var("SLUICE_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(git_revision)
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_REVISION={revision}");
    // "debug" or "release": the profile's base (a custom profile reports what it inherits).
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_PROFILE={profile}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_TARGET={target}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_string());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SLUICE_RUSTC={rustc_version}");
}

/// HEAD's commit, and a rerun whenever HEAD moves (a commit, a checkout).
fn git_revision() -> Option<String> {
    let git = |args: &[&str]| -> Option<String> {
        let o = Command::new("git").args(args).output().ok()?;
        o.status.success().then_some(())?;
        Some(String::from_utf8(o.stdout).ok()?.trim().to_string())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"])?;
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        println!("cargo:rerun-if-changed={head}");
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    // A packed ref moves in packed-refs.
    if let Some(p) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        println!("cargo:rerun-if-changed={p}");
    }
    Some(rev)
}
