//! How a test's private containerd runs: as a child of the test process (the default), or, with
//! `SLUICE_IT_SYSTEMD=1`, as a transient systemd service of `Type=notify`, the way a node's
//! containerd runs: systemd hands it `NOTIFY_SOCKET` and its own cgroup, and both reach every
//! shim it starts. The second needs systemd as PID 1 (the guest lane, scripts/vm-test.sh) and
//! fails loudly without it.

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cmd::{self, poll};
use crate::procs;

/// Set to `1` to run every private containerd as a systemd unit.
pub const SYSTEMD_ENV: &str = "SLUICE_IT_SYSTEMD";

/// Whether this run starts containerd through systemd.
pub fn systemd_mode() -> bool {
    std::env::var(SYSTEMD_ENV).is_ok_and(|v| v == "1")
}

/// What [`Daemon::start`] needs.
pub struct Launch<'a> {
    pub containerd: &'a Path,
    pub config: &'a Path,
    pub log: &'a Path,
    /// The unit name's stem (the test namespace); a counter makes each start unique.
    pub name: &'a str,
    pub env: Vec<(String, String)>,
}

/// A running private containerd.
pub enum Daemon {
    Child(Child),
    /// The transient unit's name (`<name>.service`).
    Unit(String),
}

impl Daemon {
    pub fn start(launch: Launch<'_>, attempt: usize) -> Daemon {
        if systemd_mode() {
            Daemon::start_unit(launch, attempt)
        } else {
            Daemon::start_child(launch)
        }
    }

    fn start_child(l: Launch<'_>) -> Daemon {
        let log = File::create(l.log).expect("create containerd.log");
        let mut cmd = Command::new(l.containerd);
        cmd.arg("--config")
            .arg(l.config)
            .arg("--log-level")
            .arg("debug")
            .env_clear()
            .envs(l.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        // Its own process group: a ^C on the test runner must not kill it before teardown.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", l.containerd.display()));
        Daemon::Child(child)
    }

    fn start_unit(l: Launch<'_>, attempt: usize) -> Daemon {
        let pid1 = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        assert_eq!(
            pid1.trim(),
            "systemd",
            "{SYSTEMD_ENV}=1 needs systemd as PID 1 (the guest lane); PID 1 here is {:?}",
            pid1.trim()
        );
        let unit = format!("{}-{attempt}.service", l.name);
        File::create(l.log).expect("create containerd.log");
        let log = l.log.display();
        let mut cmd = Command::new("systemd-run");
        // As Debian's containerd.service: notify, KillMode=process (the shims outlive a
        // restart), Delegate=yes (containers' cgroups below).
        cmd.arg(format!("--unit={unit}"))
            .args(["--collect", "--quiet", "--no-ask-password"])
            .args([
                "-p",
                "Type=notify",
                "-p",
                "KillMode=process",
                "-p",
                "Delegate=yes",
            ])
            .args(["-p", "TimeoutStopSec=10"])
            .arg("-p")
            .arg(format!("StandardOutput=append:{log}"))
            .arg("-p")
            .arg(format!("StandardError=append:{log}"));
        for (k, v) in &l.env {
            cmd.arg(format!("--setenv={k}={v}"));
        }
        cmd.arg(l.containerd)
            .arg("--config")
            .arg(l.config)
            .args(["--log-level", "debug"]);
        // systemd-run returns once the unit has sent READY=1 (or failed).
        let out = cmd::run(cmd, None, Duration::from_secs(60));
        assert!(
            out.success(),
            "systemd-run {unit} failed: {}{}",
            out.stdout_str(),
            out.stderr_str()
        );
        Daemon::Unit(unit)
    }

    /// `Some(reason)` once the daemon is gone.
    pub fn exited(&mut self) -> Option<String> {
        match self {
            Daemon::Child(c) => c.try_wait().ok().flatten().map(|s| s.to_string()),
            Daemon::Unit(u) => {
                let active = systemctl(&["is-active", u]);
                let state = active.stdout_str().trim().to_string();
                (state != "active" && state != "activating" && state != "reloading")
                    .then_some(format!("unit {u} is {state}"))
            }
        }
    }

    /// SIGKILLs containerd only; its shims live on (KillMode=process in the unit).
    pub fn kill(self) {
        match self {
            Daemon::Child(mut c) => {
                let _ = c.kill();
                let _ = c.wait();
            }
            Daemon::Unit(u) => {
                let _ = systemctl(&["kill", "--kill-who=main", "--signal=SIGKILL", &u]);
                let mut d = Daemon::Unit(u.clone());
                let gone = poll(Duration::from_secs(10), || d.exited());
                assert!(gone.is_some(), "unit {u} still active after SIGKILL");
            }
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(self) {
        match self {
            Daemon::Child(mut child) => {
                procs::signal(child.id() as i32, libc::SIGTERM);
                let stopped = poll(Duration::from_secs(10), || child.try_wait().ok().flatten());
                if stopped.is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            Daemon::Unit(u) => {
                let _ = systemctl(&["stop", &u]);
                let _ = systemctl(&["reset-failed", &u]);
            }
        }
    }
}

fn systemctl(args: &[&str]) -> cmd::CmdOutput {
    let mut c = Command::new("systemctl");
    c.args(args);
    cmd::run(c, None, Duration::from_secs(30))
}
