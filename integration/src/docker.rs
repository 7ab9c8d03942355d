//! A private Docker Engine on the harness's private containerd: [`Docker`], a fixture value
//! shaped after moby's `testutil/daemon` (its own dirs and flags, start, stop, restart, kill,
//! cleanup even when a test fails), and the ways a Docker version picks a shim
//! ([`ShimConfig`]).
//!
//! The Docker builds are Debian's, unpacked (never installed) by `scripts/fetch-docker.sh` into
//! `$SLUICE_DOCKER_CACHE/<label>/` (default `/var/cache/sluice-ci/docker`): 20.10 (bookworm),
//! 26 (trixie), 28 (sid). Which one a run uses follows the containerd line
//! ([`DockerVersion::selected`]): Docker 25+ refuses containerd older than 1.6.22 / 1.7.3, so
//! 20.10 pairs with the system's 1.6, 26 with 1.7 and 28 with 2.x; `SLUICE_DOCKER` overrides.
//!
//! dockerd's traffic stays on this machine: no bridge, no iptables, no userland proxy, and
//! every container the fixture runs gets `--network none`.

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::cmd::{self, poll, CmdOutput, Running};
use crate::harness::{self, EnvOpts, TestEnv};
use crate::procs;
use crate::system::{self, SYSTEM_PATH};
use crate::versions::{self, Line};
use crate::Runtime;

/// Selects the Docker build instead of the containerd line's pairing.
pub const ENV: &str = "SLUICE_DOCKER";
/// Where `scripts/fetch-docker.sh` unpacks the builds.
pub const CACHE_ENV: &str = "SLUICE_DOCKER_CACHE";
pub const DEFAULT_CACHE: &str = "/var/cache/sluice-ci/docker";
/// The image every container runs: the harness's busybox rootfs, `docker import`ed.
pub const IMAGE: &str = "sluice-busybox:latest";
/// Deadline of an ordinary docker call (a debug shim on a loaded 2-core machine).
pub const DOCKER_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline of each docker call made while tearing down.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Exec roots live here: dockerd puts a unix socket named by a 64-hex controller id under
/// `<exec-root>/libnetwork/`, so the exec root must be short (sun_path is 108 bytes).
const EXEC_ROOT_BASE: &str = "/run/sldk";

/// A Docker Engine release of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DockerVersion {
    V20_10,
    V26,
    V28,
}

impl DockerVersion {
    pub const ALL: [DockerVersion; 3] = [
        DockerVersion::V20_10,
        DockerVersion::V26,
        DockerVersion::V28,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DockerVersion::V20_10 => "20.10",
            DockerVersion::V26 => "26",
            DockerVersion::V28 => "28",
        }
    }

    pub fn parse(s: &str) -> Option<DockerVersion> {
        DockerVersion::ALL
            .into_iter()
            .find(|v| v.label() == s.trim())
    }

    /// The Docker a containerd line is tested with: each the newest Docker that line allows
    /// and the three lines together cover all three Docker versions.
    pub fn for_line(line: Line) -> DockerVersion {
        match line {
            Line::V1_6 => DockerVersion::V20_10,
            Line::V1_7 => DockerVersion::V26,
            Line::V2 | Line::V2_2 | Line::V2_3 | Line::V2_4 => DockerVersion::V28,
        }
    }

    /// `SLUICE_DOCKER`, else the pairing of the selected containerd line. Panics on a pairing
    /// Docker refuses (25+ with the system's 1.6.20).
    pub fn selected() -> DockerVersion {
        let line = versions::selected_line();
        let v = match std::env::var(ENV) {
            Ok(s) if !s.trim().is_empty() => DockerVersion::parse(&s)
                .unwrap_or_else(|| panic!("{ENV}={s:?} is not one of 20.10, 26, 28")),
            _ => DockerVersion::for_line(line),
        };
        assert!(
            !(v >= DockerVersion::V26 && line == Line::V1_6),
            "Docker {} refuses containerd {} (it needs 1.6.22+ or 1.7.3+): pick \
             SLUICE_CONTAINERD=1.7 or 2.x",
            v.label(),
            versions::selected().version
        );
        v
    }

    /// `docker run --runtime <a.b.c>` reaches containerd as a shim name (23+).
    pub fn has_named_runtimes(self) -> bool {
        self >= DockerVersion::V26
    }

    /// daemon.json `runtimes.<name>.runtimeType` (24+).
    pub fn has_runtime_type(self) -> bool {
        self >= DockerVersion::V26
    }

    /// The unpacked tree; panics naming the fix when it is missing.
    pub fn tree(self) -> PathBuf {
        let base = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        let tree = base.join(self.label());
        for bin in ["usr/sbin/dockerd", "usr/bin/docker", "usr/bin/docker-init"] {
            assert!(
                tree.join(bin).is_file(),
                "prerequisite missing: {} (run `scripts/fetch-docker.sh {}`; scripts/setup.sh \
                 does)",
                tree.join(bin).display(),
                self.label()
            );
        }
        tree
    }
}

/// How the daemon is configured to run sluice, or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShimConfig {
    /// Docker's default `runc` runtime (`io.containerd.runc.v2`): the containerd line's own
    /// stock shim.
    Stock,
    /// sluice installed as `containerd-shim-runc-v2` first on containerd's PATH: the only way on
    /// 20.10, and works on every version. Docker sends runc `Options` as to the stock shim.
    DropIn,
    /// `docker run --runtime io.containerd.sluice.v2` (23+); no options reach the shim.
    Named,
    /// daemon.json `"runtimes": {"sluice": {"runtimeType": "io.containerd.sluice.v2"}}` and
    /// `"default-runtime": "sluice"` (24+).
    RuntimeType,
}

impl ShimConfig {
    pub fn is_sluice(self) -> bool {
        self != ShimConfig::Stock
    }

    pub fn supported_on(self, v: DockerVersion) -> bool {
        match self {
            ShimConfig::Stock | ShimConfig::DropIn => true,
            ShimConfig::Named => v.has_named_runtimes(),
            ShimConfig::RuntimeType => v.has_runtime_type(),
        }
    }

    /// The configuration sluice is tested in across the whole table on `v`.
    pub fn primary_sluice(v: DockerVersion) -> ShimConfig {
        match v {
            DockerVersion::V20_10 => ShimConfig::DropIn,
            DockerVersion::V26 => ShimConfig::Named,
            DockerVersion::V28 => ShimConfig::RuntimeType,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ShimConfig::Stock => "stock",
            ShimConfig::DropIn => "sluice-dropin",
            ShimConfig::Named => "sluice-named",
            ShimConfig::RuntimeType => "sluice-rtype",
        }
    }

    /// Flags every `docker run`/`docker create` of this configuration gets.
    pub fn run_flags(self) -> &'static [&'static str] {
        match self {
            ShimConfig::Named => &["--runtime", "io.containerd.sluice.v2"],
            _ => &[],
        }
    }
}

/// What a [`Docker`] starts with beyond its [`ShimConfig`].
#[derive(Clone, Copy, Debug, Default)]
pub struct DockerOpts {
    /// `--live-restore`: containers outlive dockerd.
    pub live_restore: bool,
    /// `--experimental` (`docker checkpoint`).
    pub experimental: bool,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private dockerd, its client and its containerd ([`TestEnv`]), torn down in `Drop`.
pub struct Docker {
    pub version: DockerVersion,
    pub config: ShimConfig,
    pub opts: DockerOpts,
    /// `<env.dir>/docker`: daemon.json, the socket, the data root, the client's config.
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub data_root: PathBuf,
    /// `/run/sldk/<pid>-<n>` (short: see [`EXEC_ROOT_BASE`]).
    pub exec_root: PathBuf,
    pub log_path: PathBuf,
    tree: PathBuf,
    daemon: Option<Child>,
    starts: usize,
    /// Declared last: dropped after `Docker::drop` has stopped dockerd.
    pub env: TestEnv,
}

impl Docker {
    /// Starts containerd, then dockerd for `config` on `version`, and imports [`IMAGE`].
    pub fn start(
        label: &str,
        version: DockerVersion,
        config: ShimConfig,
        opts: DockerOpts,
    ) -> Docker {
        assert!(
            config.supported_on(version),
            "{config:?} needs a newer Docker than {}",
            version.label()
        );
        let tree = version.tree();
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale_exec_roots);
        let (runtime, env_opts) = match config {
            ShimConfig::Stock => (Runtime::RuncV2, EnvOpts::default()),
            ShimConfig::DropIn => (
                Runtime::RuncV2,
                EnvOpts {
                    shims: vec![("containerd-shim-runc-v2".into(), system::sluice_shim_bin())],
                    ..Default::default()
                },
            ),
            // The harness links sluice as containerd-shim-sluice-v2 for Runtime::Sluice.
            ShimConfig::Named | ShimConfig::RuntimeType => (Runtime::Sluice, EnvOpts::default()),
        };
        let env = TestEnv::start_with(label, runtime, env_opts);
        let dir = env.dir.join("docker");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let exec_root = Path::new(EXEC_ROOT_BASE).join(format!("{}-{n}", std::process::id()));
        let mut d = Docker {
            version,
            config,
            opts,
            sock: dir.join("docker.sock"),
            data_root: dir.join("root"),
            log_path: dir.join("dockerd.log"),
            dir,
            exec_root,
            tree,
            daemon: None,
            starts: 0,
            env,
        };
        for sub in [d.dir.clone(), d.dir.join("client"), d.data_root.clone()] {
            fs::create_dir_all(&sub).unwrap_or_else(|e| panic!("mkdir {}: {e}", sub.display()));
        }
        fs::create_dir_all(&d.exec_root)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", d.exec_root.display()));
        fs::write(d.dir.join("daemon.json"), d.daemon_json()).expect("write daemon.json");
        d.start_dockerd();
        d.import_image();
        d
    }

    /// daemon.json: what the flags cannot say (the runtimes), and what keeps the daemon's
    /// files in its own dirs.
    pub fn daemon_json(&self) -> String {
        let mut fields = vec![
            format!(
                "\"init-path\": \"{}\"",
                self.tree.join("usr/bin/docker-init").display()
            ),
            // Under the harness's /<ns> cgroup, which its teardown empties and removes.
            format!("\"cgroup-parent\": \"/{}\"", self.env.ns),
            format!("\"live-restore\": {}", self.opts.live_restore),
            format!("\"experimental\": {}", self.opts.experimental),
        ];
        if self.version == DockerVersion::V20_10 {
            // 20.10 writes a trust key, by default to /etc/docker/key.json.
            fields.push(format!(
                "\"deprecated-key-path\": \"{}\"",
                self.dir.join("key.json").display()
            ));
        }
        if self.config == ShimConfig::RuntimeType {
            fields.push(
                "\"runtimes\": {\"sluice\": {\"runtimeType\": \"io.containerd.sluice.v2\"}}".into(),
            );
            fields.push("\"default-runtime\": \"sluice\"".into());
        }
        format!("{{\n  {}\n}}\n", fields.join(",\n  "))
    }

    /// dockerd's command line.
    pub fn dockerd_args(&self) -> Vec<String> {
        let p = |p: &Path| p.display().to_string();
        let mut a = vec![
            "--config-file".into(),
            p(&self.dir.join("daemon.json")),
            "-H".into(),
            format!("unix://{}", p(&self.sock)),
            "--containerd".into(),
            p(&self.env.sock),
            "--containerd-namespace".into(),
            self.env.ns.clone(),
            "--containerd-plugins-namespace".into(),
            format!("{}-p", self.env.ns),
            "--data-root".into(),
            p(&self.data_root),
            "--exec-root".into(),
            p(&self.exec_root),
            "--pidfile".into(),
            p(&self.dir.join("docker.pid")),
            "--storage-driver".into(),
            "vfs".into(),
            "--bridge".into(),
            "none".into(),
            "--iptables=false".into(),
            "--ip-masq=false".into(),
            "--userland-proxy=false".into(),
            "--exec-opt".into(),
            "native.cgroupdriver=cgroupfs".into(),
            "--log-level".into(),
            "debug".into(),
        ];
        // ip6tables is on by default from 27; 20.10 has no such flag.
        if self.version >= DockerVersion::V28 {
            a.push("--ip6tables=false".into());
        }
        a
    }

    /// dockerd's PATH: the harness's runc wrapper first (dockerd resolves `runc` for the runc
    /// options it sends), then the shims, the containerd build, the system.
    fn dockerd_path(&self) -> String {
        self.env.containerd_path()
    }

    fn start_dockerd(&mut self) {
        assert!(self.daemon.is_none(), "dockerd is already running");
        self.starts += 1;
        if self.starts > 1 {
            let _ = fs::rename(
                &self.log_path,
                self.dir.join(format!("dockerd.log.{}", self.starts - 1)),
            );
        }
        let log = File::create(&self.log_path).expect("create dockerd.log");
        let mut cmd = Command::new(self.tree.join("usr/sbin/dockerd"));
        cmd.args(self.dockerd_args())
            .env_clear()
            .env("PATH", self.dockerd_path())
            .env("HOME", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log fd"))
            .stderr(log);
        // Its own process group: a ^C on the test runner must not kill it before teardown.
        cmd.process_group(0);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start dockerd: {e}"));
        self.daemon = Some(child);
        let started = Instant::now();
        let ready = poll(Duration::from_secs(60), || {
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "dockerd {} exited during startup ({status}):\n{}",
                    self.version.label(),
                    self.log_tail(60)
                );
            }
            (self.sock.exists()
                && self
                    .docker(
                        &["version", "--format", "{{.Server.Version}}"],
                        Duration::from_secs(10),
                    )
                    .success())
            .then_some(())
        });
        if ready.is_none() {
            panic!(
                "dockerd {} did not answer on {} within 60 s:\n{}",
                self.version.label(),
                self.sock.display(),
                self.log_tail(60)
            );
        }
        eprintln!(
            "[{}] dockerd {} ({}) up in {:?}",
            self.env.label,
            self.version.label(),
            self.config.label(),
            started.elapsed()
        );
    }

    /// SIGTERM, then SIGKILL after 20 s; with live-restore the containers live on.
    pub fn stop_dockerd(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            procs::signal(child.id() as i32, libc::SIGTERM);
            let stopped = poll(Duration::from_secs(20), || child.try_wait().ok().flatten());
            if stopped.is_none() {
                eprintln!(
                    "[{}] dockerd ignored SIGTERM for 20 s: killed",
                    self.env.label
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// SIGKILLs dockerd (its containers and shims live on).
    pub fn kill_dockerd(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts dockerd again with the same config and dirs (after a stop or kill).
    pub fn restart_dockerd(&mut self) {
        if self.daemon.is_some() {
            self.stop_dockerd();
        }
        // A killed dockerd leaves its socket and pid file behind.
        let _ = fs::remove_file(&self.sock);
        self.start_dockerd();
    }

    pub fn dockerd_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    // ---- the client --------------------------------------------------------------------

    /// The client, not started: `docker -H unix://<sock> <args>`, own config dir.
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.tree.join("usr/bin/docker"));
        cmd.env_clear()
            .env("PATH", SYSTEM_PATH)
            .env("HOME", &self.dir)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_CLI_HINTS", "false")
            .arg("-H")
            .arg(format!("unix://{}", self.sock.display()))
            .args(args);
        cmd
    }

    /// The arguments a user action gives, with this fixture's flags added to `run`/`create`:
    /// `--network none` (traffic stays local) and the [`ShimConfig`]'s runtime flags.
    pub fn args_for(&self, args: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        if let Some(first) = args.first() {
            if *first == "run" || *first == "create" {
                let mut extra: Vec<String> = Vec::new();
                if !args.iter().any(|a| a.starts_with("--network")) {
                    extra.extend(["--network".into(), "none".into()]);
                }
                extra.extend(self.config.run_flags().iter().map(|s| s.to_string()));
                out.splice(1..1, extra);
            }
        }
        out
    }

    /// `docker <args>` (with [`Docker::args_for`]) to completion or the deadline.
    pub fn docker(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        self.docker_in(args, None, timeout)
    }

    /// `docker <args>` with `stdin` bytes (then EOF).
    pub fn docker_in(&self, args: &[&str], stdin: Option<Vec<u8>>, timeout: Duration) -> CmdOutput {
        let full = self.args_for(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        cmd::run(self.docker_cmd(&full), stdin, timeout)
    }

    /// `docker <args>` left running (e.g. `logs -f`, `events`).
    pub fn spawn(&self, args: &[&str]) -> Running {
        let full = self.args_for(args);
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        cmd::spawn(self.docker_cmd(&full), None)
    }

    /// `docker <args>`; panics with the whole story unless it exits 0; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.docker(args, DOCKER_TIMEOUT)
            .expect_success(&format!("[{}] docker {}", self.column(), args.join(" ")))
            .stdout_str()
    }

    /// `docker inspect -f <format> <name>`, trimmed; `None` when it fails.
    pub fn inspect(&self, name: &str, format: &str) -> Option<String> {
        let out = self.docker(&["inspect", "-f", format, name], DOCKER_TIMEOUT);
        out.success().then(|| out.stdout_str().trim().to_string())
    }

    /// `version × shim`, for messages.
    pub fn column(&self) -> String {
        format!("docker {} {}", self.version.label(), self.config.label())
    }

    /// The shim serving container `name`: the parent of its init process (the shim reaps it).
    pub fn shim_exe(&self, name: &str) -> Result<PathBuf, String> {
        let pid: i32 = self
            .inspect(name, "{{.State.Pid}}")
            .and_then(|p| p.parse().ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{name} has no running init"))?;
        let info = procs::find(|p| p.pid == pid);
        let ppid = info
            .first()
            .map(|p| p.ppid)
            .ok_or_else(|| format!("pid {pid} of {name} is gone"))?;
        fs::read_link(format!("/proc/{ppid}/exe"))
            .map_err(|e| format!("exe of {name}'s parent {ppid}: {e}"))
    }

    /// Checks that sluice serves `name` when the configuration says so, the stock shim when not.
    pub fn check_shim(&self, name: &str) -> Result<(), String> {
        let exe = self.shim_exe(name)?;
        let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let want = if self.config.is_sluice() {
            canon(&system::sluice_shim_bin())
        } else {
            canon(&versions::selected().stock_shim)
        };
        (canon(&exe) == want).then_some(()).ok_or_else(|| {
            format!(
                "{name} is served by {} where {} was expected",
                exe.display(),
                want.display()
            )
        })
    }

    /// `pids.current` and `pids.max` of container `name`'s pids cgroup (v1), read from the host
    /// through its init's `/proc/<pid>/cgroup`: a container at its limit cannot be looked into.
    pub fn pids_of(&self, name: &str) -> Option<(u64, u64)> {
        let pid = self.inspect(name, "{{.State.Pid}}")?;
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        let rel = cgroups.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',')
                .any(|c| c == "pids")
                .then(|| path.to_string())
        })?;
        let dir = Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'));
        let read = |f: &str| {
            fs::read_to_string(dir.join(f))
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        };
        Some((read("pids.current")?, read("pids.max")?))
    }

    /// `docker import` of the harness's busybox rootfs as [`IMAGE`].
    fn import_image(&self) {
        let mut tar = Command::new("tar");
        tar.arg("-C").arg(&self.env.rootfs).args(["-cf", "-", "."]);
        let tarball = cmd::run(tar, None, DOCKER_TIMEOUT).expect_success("tar of the rootfs");
        self.docker_in(
            &["import", "-", IMAGE],
            Some(tarball.stdout),
            DOCKER_TIMEOUT,
        )
        .expect_success(&format!("[{}] docker import", self.column()));
    }

    /// Names of every container of this daemon.
    pub fn all_containers(&self, timeout: Duration) -> Vec<String> {
        let out = self.docker(&["ps", "-aq"], timeout);
        out.stdout_str().lines().map(str::to_string).collect()
    }

    // ---- diagnostics and teardown ------------------------------------------------------

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn teardown(&mut self) {
        if self.daemon.is_some() {
            // A runc wedged by a fault would hold the rm below.
            self.env.unwedge();
            let ids = self.all_containers(TEARDOWN_TIMEOUT);
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let out = self.docker(&args, TEARDOWN_TIMEOUT);
                if !out.success() {
                    eprintln!("[{}] teardown: docker rm -f:\n{out}", self.env.label);
                }
            }
        }
        self.stop_dockerd();
        // dockerd bind-mounts its data root on itself and netns files under its exec root.
        harness::unmount_under(&[&self.data_root, &self.exec_root]);
        if let Err(e) = fs::remove_dir_all(&self.exec_root) {
            eprintln!(
                "[{}] teardown: remove {}: {e}",
                self.env.label,
                self.exec_root.display()
            );
        }
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "\n===== [{}] dockerd log {} (last 150 lines) =====\n{}\n",
                self.column(),
                self.log_path.display(),
                self.log_tail(150)
            );
        }
        self.teardown();
    }
}

/// Exec roots of test processes killed before their `Drop` ran: their dockerd (named by the
/// exec root in its argv) is killed, mounts undone, the dir removed. The rest of such a
/// test's leftovers is the harness's sweep's.
fn sweep_stale_exec_roots() {
    let Ok(entries) = fs::read_dir(EXEC_ROOT_BASE) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let owner = name.split('-').next().and_then(|p| p.parse::<i32>().ok());
        match owner {
            Some(pid) if pid as u32 != std::process::id() && !procs::alive(pid) => {}
            _ => continue,
        }
        let dir = e.path();
        let d = dir.display().to_string();
        let ours: Vec<i32> = procs::find(|p| p.argv.iter().any(|a| a == &d))
            .iter()
            .map(|p| p.pid)
            .collect();
        procs::kill_all(&ours, Duration::from_secs(5));
        harness::unmount_under(&[&dir]);
        let _ = fs::remove_dir_all(&dir);
    }
}
