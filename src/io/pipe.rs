//! Anonymous pipes between the shim and a container process.

use std::os::fd::OwnedFd;

use nix::{fcntl::OFlag, unistd::pipe2};

/// One pipe: the end the container process (through runc) gets, and the end the shim keeps.
pub struct Pipe {
    pub child: OwnedFd,
    pub ours: OwnedFd,
}

/// A pipe the process writes (stdout, stderr): the shim reads.
pub fn output() -> std::io::Result<Pipe> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    Ok(Pipe {
        child: write,
        ours: read,
    })
}

/// A pipe the process reads (stdin): the shim writes.
pub fn input() -> std::io::Result<Pipe> {
    let (read, write) = pipe2(OFlag::O_CLOEXEC)?;
    Ok(Pipe {
        child: read,
        ours: write,
    })
}
