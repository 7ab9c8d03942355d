//! The files runc is handed or leaves behind in a bundle: pid files, exec specs, resources.

use std::path::{Path, PathBuf};

/// Reads the pid runc wrote to `path` (`--pid-file`).
pub async fn read_pid(path: &Path) -> std::io::Result<u32> {
    let text = tokio::fs::read_to_string(path).await?;
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
    pub async fn write(path: PathBuf, bytes: &[u8]) -> std::io::Result<Scratch> {
        tokio::fs::write(&path, bytes).await?;
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

    #[tokio::test]
    async fn scratch_files_are_gone_after_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = dir.path().join("spec.json");
        let named = dir.path().join("exec.pid");
        {
            let s = Scratch::write(written.clone(), b"{}").await.expect("write");
            let n = Scratch::named(named.clone());
            std::fs::write(n.path(), "42").expect("runc writes the pid");
            assert_eq!(read_pid(n.path()).await.expect("pid"), 42);
            assert!(s.path().exists());
        }
        assert!(!written.exists() && !named.exists());
    }

    #[tokio::test]
    async fn a_pid_file_without_a_number_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("init.pid");
        std::fs::write(&p, "abc").expect("write");
        let e = read_pid(&p).await.expect_err("not a pid");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
