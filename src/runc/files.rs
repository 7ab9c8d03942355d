//! The files runc is handed or leaves behind in a bundle: pid files, exec specs, resources.
//!
//! They are read and written in place, not through tokio's blocking pool: a few hundred bytes
//! in the bundle's directory (containerd's state directory, a tmpfs, where runc writes too)
//! take microseconds, while a hop to a pool thread and back cost 50-350 µs of every create
//! and exec on the shim's one runtime thread (measured in the benchmark's `share` workload).

use std::path::{Path, PathBuf};

/// Reads the pid runc wrote to `path` (`--pid-file`).
pub fn read_pid(path: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e}: {text:?}")))
}

/// A file that exists for one runc call only: removed when dropped, whatever the call's
/// outcome, so that no exec or update leaves a file behind in the bundle.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Names the file without creating it (runc writes it, e.g. `--pid-file`).
    pub fn named(path: PathBuf) -> Scratch {
        Scratch { path }
    }

    /// Writes `bytes` to `path`.
    pub fn write(path: PathBuf, bytes: &[u8]) -> std::io::Result<Scratch> {
        std::fs::write(&path, bytes)?;
        Ok(Scratch { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Small files in the bundle's directory: a blocking unlink is cheap.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_are_gone_after_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = dir.path().join("spec.json");
        let named = dir.path().join("exec.pid");
        {
            let s = Scratch::write(written.clone(), b"{}").expect("write");
            let n = Scratch::named(named.clone());
            std::fs::write(n.path(), "42").expect("runc writes the pid");
            assert_eq!(read_pid(n.path()).expect("pid"), 42);
            assert!(s.path().exists());
        }
        assert!(!written.exists() && !named.exists());
    }

    #[test]
    fn a_pid_file_without_a_number_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("init.pid");
        std::fs::write(&p, "abc").expect("write");
        let e = read_pid(&p).expect_err("not a pid");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
