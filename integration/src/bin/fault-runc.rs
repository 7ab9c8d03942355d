//! `fault-runc`: a `runc` stand-in that misbehaves on one verb and passes every other call to
//! the real runc. Installed as `<wrapper dir>/runc`; configured by `<wrapper dir>/fault.conf`
//! (see `sluice_integration::fault`).
//!
//! It must never hide a problem: a missing or broken configuration makes it exit 127 with the
//! reason on stderr, and it never execs itself.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};

use sluice_integration::fault::{self, Action, FaultConf};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match own_dir() {
        Ok(dir) => dir,
        Err(e) => die(&format!("cannot find my own directory: {e}")),
    };
    let conf_path = dir.join(fault::CONF_FILE);
    let conf = match fs::read_to_string(&conf_path) {
        Ok(text) => FaultConf::parse(&text)
            .unwrap_or_else(|e| die(&format!("{}: {e}", conf_path.display()))),
        Err(e) => die(&format!("cannot read {}: {e}", conf_path.display())),
    };
    if is_self(&conf.real_runc, &dir) {
        die("real_runc points back at the wrapper; refusing to exec myself");
    }

    let verb = fault::runc_verb(&args).unwrap_or("");
    let targeted = conf.action != Action::None && !conf.verb.is_empty() && verb == conf.verb;
    // With `once`, removing the token is the atomic "I am the one" test across concurrent calls.
    let fire = targeted && (!conf.once || fs::remove_file(dir.join(fault::TOKEN_FILE)).is_ok());
    let what = match (fire, targeted) {
        (true, _) => "fired",
        (false, true) => "spent",
        (false, false) => "pass",
    };
    log_call(&dir, &format!("verb={verb} fault={what} args={args:?}"));

    if fire {
        match conf.action {
            Action::None => {}
            Action::StderrFlood { bytes } => {
                // Blocks for as long as nobody reads the pipe: that is the point. Errors (a closed
                // pipe) are ignored so the real runc still runs, as it would after a noisy hook.
                let _ = std::io::stderr().write_all(&fault::flood(bytes));
                log_call(&dir, &format!("verb={verb} flood-written={bytes}"));
            }
            Action::CrashDump => {
                shrink_pipe(1);
                shrink_pipe(2);
                let _ = std::io::stderr().write_all(fault::crash_dump().as_bytes());
                log_call(&dir, &format!("verb={verb} crash-dump-written exit=2"));
                process::exit(2);
            }
            Action::Hang => {
                log_call(&dir, &format!("verb={verb} hanging"));
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            Action::BothFlood { bytes } => {
                let payload = fault::flood(bytes);
                let _ = std::io::stdout().write_all(&payload);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(&payload);
                log_call(&dir, &format!("verb={verb} both-flood-written={bytes}"));
            }
            Action::OnePageFlood { bytes } => {
                shrink_pipe(1);
                shrink_pipe(2);
                let payload = fault::flood(bytes);
                let _ = std::io::stdout().write_all(&payload);
                let _ = std::io::stdout().flush();
                let _ = std::io::stderr().write_all(&payload);
                log_call(&dir, &format!("verb={verb} one-page-flood-written={bytes}"));
            }
            Action::Slow { secs } => {
                log_call(&dir, &format!("verb={verb} slow={secs}s"));
                std::thread::sleep(std::time::Duration::from_secs(secs));
            }
            Action::SlowExit { secs } => {
                let status = Command::new(&conf.real_runc).args(&args).status();
                log_call(
                    &dir,
                    &format!("verb={verb} real-done={status:?} slow-exit={secs}s"),
                );
                std::thread::sleep(std::time::Duration::from_secs(secs));
                match status {
                    Ok(s) => process::exit(s.code().unwrap_or(128)),
                    Err(e) => die(&format!("run {}: {e}", conf.real_runc.display())),
                }
            }
            Action::SelfKill => {
                log_call(&dir, &format!("verb={verb} self-kill"));
                // SAFETY: kill(2) on our own pid; no memory effects.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                process::exit(137);
            }
        }
    }

    // `Command::exec` (rather than a bare execv) restores SIGPIPE to its default, which the Rust
    // runtime ignores; the real runc should start exactly as if the shim had run it directly.
    let err = Command::new(&conf.real_runc).args(&args).exec();
    die(&format!("exec {}: {err}", conf.real_runc.display()));
}

/// The directory holding this binary, where `fault.conf` lives.
fn own_dir() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| std::io::Error::other("executable has no parent directory"))
}

fn is_self(real: &Path, dir: &Path) -> bool {
    match (fs::canonicalize(real), std::env::current_exe()) {
        (Ok(real), Ok(me)) => real == me || real.parent() == Some(dir),
        _ => false,
    }
}

/// The seed case's one-page pipe (the per-user pipe budget was exhausted). Not a pipe, or not
/// allowed: carry on, the dump is still written.
fn shrink_pipe(fd: i32) {
    // SAFETY: fcntl on an inherited descriptor number; it only fails (EBADF/EINVAL/EPERM) if fd
    // is not an open pipe, which we tolerate.
    unsafe {
        libc::fcntl(fd, libc::F_SETPIPE_SZ, 4096);
    }
}

fn log_call(dir: &Path, line: &str) {
    // One write per line with O_APPEND, so concurrent runc calls do not interleave mid-line.
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(fault::LOG_FILE))
    {
        let _ = f.write_all(format!("pid={} {line}\n", process::id()).as_bytes());
    }
}

fn die(msg: &str) -> ! {
    eprintln!("fault-runc: {msg}");
    process::exit(127)
}
