//! `timed-runc`: a `runc` stand-in that runs the real runc as its child and logs how long each
//! call took, so a shim's own time can be told from runc's (`sluice_integration::share`).
//!
//! Installed as `<dir>/runc`; `<dir>/real-runc` names the real runc; each call appends
//! `<start ns> <end ns> <pid> <verb>` (CLOCK_MONOTONIC; the pid is the wrapper's own, which
//! the kernel's view of the call in `sluice_integration::lifetimes` is keyed by) to
//! `<dir>/calls.log` in one write.
//! The extra process is the only difference a shim can see: stdio, environment and exit
//! status are runc's own.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{self, Command};

use sluice_integration::fault;
use sluice_integration::lifetimes::now_ns;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = match std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|p| p.to_path_buf()))
    {
        Some(d) => d,
        None => die("cannot find my own directory"),
    };
    let real = match fs::read_to_string(dir.join("real-runc")) {
        Ok(t) => t.trim().to_string(),
        Err(e) => die(&format!("cannot read {}/real-runc: {e}", dir.display())),
    };
    let started = now_ns();
    let status = match Command::new(&real).args(&args).status() {
        Ok(s) => s,
        Err(e) => die(&format!("run {real}: {e}")),
    };
    let ended = now_ns();
    let verb = fault::runc_verb(&args).unwrap_or("");
    if let Ok(mut f) = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("calls.log"))
    {
        let pid = process::id();
        let _ = f.write_all(format!("{started} {ended} {pid} {verb}\n").as_bytes());
    }
    let code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    process::exit(code)
}

fn die(msg: &str) -> ! {
    eprintln!("timed-runc: {msg}");
    process::exit(127)
}
