//! What `start` finds out about the daemon and the group's server beyond its flags: the
//! daemon's release (only it tells containerd 1.7 from 2.0–2.2, which accept different task
//! APIs) and whether a running server is this very binary (and so serves task API v3).

use std::{
    os::unix::{fs::MetadataExt, net::UnixStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use log::debug;
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use sluice_shim_proto::bootstrap::reply::Version;

/// How long `containerd --version` may take; past it the version stays unknown (task v2).
const VERSION_LIMIT: Duration = Duration::from_secs(2);
/// Next to the bundles of the daemon's namespaces: one version per daemon binary.
const CACHE_FILE: &str = ".sluice-containerd-version";

/// The release of the containerd at `binary` (the `-publish-binary` flag), from a cache in the
/// daemon's state directory keyed by the binary's inode and mtime, or from `binary --version`.
/// None when it cannot be told; the caller then answers as to the oldest daemon it may be.
pub fn version(binary: &str, bundle: &Path) -> Option<Version> {
    if binary.is_empty() {
        return None;
    }
    let meta = std::fs::metadata(binary).ok()?;
    let key = format!("{binary} {} {} {}", meta.dev(), meta.ino(), meta.mtime());
    let cache = cache_path(bundle);
    if let Some(v) = cache.as_deref().and_then(|c| cached(c, &key)) {
        return Some(v);
    }
    let v = run_version(binary)?;
    if let Some(c) = cache {
        // A cache that cannot be written costs the next start one more `--version`.
        let _ = std::fs::write(c, format!("{key} {v}\n"));
    }
    Some(v)
}

/// `<state>/io.containerd.runtime.v2.task/<namespace>/<id>` → `<state>/io.containerd.runtime.v2.task/`.
fn cache_path(bundle: &Path) -> Option<PathBuf> {
    Some(bundle.parent()?.parent()?.join(CACHE_FILE))
}

fn cached(cache: &Path, key: &str) -> Option<Version> {
    let text = std::fs::read_to_string(cache).ok()?;
    let rest = text.trim_end().strip_prefix(key)?;
    Version::parse(rest.trim())
}

fn run_version(binary: &str) -> Option<Version> {
    let mut child = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + VERSION_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                debug!("{binary} --version did not answer within {VERSION_LIMIT:?}");
                return None;
            }
        }
    }
    let out = child.wait_with_output().ok()?;
    let v = Version::from_version_output(&String::from_utf8_lossy(&out.stdout));
    debug!("{binary} --version: {v:?}");
    v
}

/// Whether the server listening at `socket` runs this binary as it is on disk now. A server
/// started by an earlier sluice (the package was upgraded while a pod ran) may serve task API
/// v2 only, so only our own binary is trusted with v3.
pub fn server_is_this_binary(socket: &str) -> bool {
    let Ok(stream) = UnixStream::connect(socket) else {
        return false;
    };
    let Ok(cred) = getsockopt(&stream, PeerCredentials) else {
        return false;
    };
    let exe = |p: PathBuf| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    let theirs = exe(PathBuf::from(format!("/proc/{}/exe", cred.pid())));
    let ours = std::env::current_exe().ok().and_then(exe);
    theirs.is_some() && theirs == ours
}

#[cfg(test)]
mod tests {
    use std::os::unix::{fs::PermissionsExt, net::UnixListener};

    use super::*;

    #[test]
    fn the_version_is_asked_once_per_binary() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bundle = dir.path().join("task/ns/c1");
        std::fs::create_dir_all(&bundle).expect("bundle");
        let bin = dir.path().join("containerd");
        let count = dir.path().join("count");
        let script = format!(
            "#!/bin/sh\necho x >> {}\necho 'containerd github.com/containerd/containerd/v2 v2.1.4 abc'\n",
            count.display()
        );
        std::fs::write(&bin, script).expect("write");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let bin = bin.to_string_lossy().into_owned();
        for _ in 0..3 {
            assert_eq!(version(&bin, &bundle), Some(Version::new(2, 1)));
        }
        let asked = std::fs::read_to_string(&count).expect("count");
        assert_eq!(asked.lines().count(), 1, "cached after the first start");
        assert!(dir.path().join("task").join(CACHE_FILE).exists());
    }

    #[test]
    fn a_binary_that_is_not_containerd_tells_no_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(version("/bin/true", dir.path()), None);
        assert_eq!(version("", dir.path()), None);
        assert_eq!(version("/nonexistent/containerd", dir.path()), None);
    }

    #[test]
    fn a_server_in_this_process_is_this_binary_and_none_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("s");
        let _listener = UnixListener::bind(&sock).expect("bind");
        assert!(server_is_this_binary(&sock.to_string_lossy()));
        assert!(!server_is_this_binary(
            &dir.path().join("none").to_string_lossy()
        ));
    }
}
