//! One private containerd per test, driven with `ctr`, torn down completely in `Drop`.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::cmd::{self, poll, CmdOutput, Running};
use crate::daemon::{Daemon, Launch};
use crate::fault::{self, Action, FaultConf};
use crate::procs::{self, ProcInfo};
use crate::system::{self, Tools, SLUICE_SHIM_NAME, SYSTEM_PATH};
use crate::versions::{self, ContainerdBuild, Line};
use crate::Runtime;

/// Deadline for an ordinary ctr call. Generous: a debug build on a loaded 2-core CI machine.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// Deadline for each ctr call made while tearing down; teardown must stay bounded.
const TEARDOWN_CTR_TIMEOUT: Duration = Duration::from_secs(10);
/// Where both shims keep runc state by default (`<root>/<namespace>`); ctr gives sluice no
/// runc options, so the test cannot move it. Per-namespace, so tests never share it.
const RUNC_ROOT_BASE: &str = "/run/containerd/runc";
/// Set to 1, ctr (2.2+) does not print the daemon's deprecation warnings.
pub const CTR_QUIET_ENV: &str = "CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS";
/// Where containerd 1.6 shims put their sockets (fixed, hashed by address/namespace/id).
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";
/// Test dirs are `<tmp>/sluice-it-<namespace>`, the namespace ending in `-<pid>-<n>`.
const DIR_PREFIX: &str = "sluice-it-";

/// One row of `ctr task ls`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRow {
    pub id: String,
    pub pid: u32,
    pub status: String,
}

/// Options for `ctr run`.
#[derive(Clone, Debug, Default)]
pub struct RunOpts {
    /// `key=value` OCI annotations (`--annotation`).
    pub annotations: Vec<String>,
    /// Bytes piped to ctr's stdin, which it forwards to the container.
    pub stdin: Option<Vec<u8>>,
    /// `None` means [`CTR_TIMEOUT`].
    pub timeout: Option<Duration>,
}

/// A private containerd with its own root, state, socket, fault-injecting runc wrapper and
/// busybox rootfs, all under one temp dir, using one unique namespace.
pub struct TestEnv {
    pub runtime: Runtime,
    pub label: String,
    pub ns: String,
    pub dir: PathBuf,
    pub sock: PathBuf,
    pub rootfs: PathBuf,
    pub wrapper_dir: PathBuf,
    pub runc_root: PathBuf,
    pub log_path: PathBuf,
    fifo_dir: PathBuf,
    tools: &'static Tools,
    containerd: Option<Daemon>,
    /// Extra environment of containerd (and so of every shim it starts).
    containerd_env: Vec<(String, String)>,
    starts: usize,
    /// The containerd build this environment runs: `SLUICE_CONTAINERD`'s, until
    /// [`TestEnv::upgrade_containerd`] replaces it.
    build: &'static ContainerdBuild,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// The `fault-runc` binary built from this crate: `$SLUICE_FAULT_RUNC_BIN`, or beside the test
/// executable's `deps/` directory, where cargo puts a package's binaries before running its tests.
pub fn fault_runc_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_FAULT_RUNC_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let candidates = [
        exe.parent()
            .and_then(Path::parent)
            .map(|d| d.join("fault-runc")),
        exe.parent().map(|d| d.join("fault-runc")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "fault-runc binary not found next to {} (build it with `cargo build -p \
                 sluice-integration --bins`, or set SLUICE_FAULT_RUNC_BIN)",
                exe.display()
            )
        })
}

fn sanitize(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    // Cut first, then trim: a cut may end on a '-', which containerd's namespace rules refuse.
    let cut: String = out.chars().take(24).collect();
    cut.trim_end_matches('-').to_string()
}

/// What [`TestEnv::start_with`] sets up beyond [`TestEnv::start`].
#[derive(Default)]
pub struct EnvOpts {
    /// The whole `config.toml`, made from the laid-out environment (the CRI tests turn CRI on);
    /// `None`: the default config, CRI off.
    #[allow(clippy::type_complexity)]
    pub config: Option<Box<dyn Fn(&TestEnv) -> String>>,
    /// Extra `(name, target)` symlinks in the shims directory, which is on containerd's PATH
    /// after the runc wrapper and before the system (e.g. sluice as `containerd-shim-runc-v2`).
    pub shims: Vec<(String, PathBuf)>,
    /// Extra `(name, value)` variables in containerd's environment, which its shims inherit
    /// (e.g. `NOTIFY_SOCKET`, as systemd gives a `Type=notify` service).
    pub containerd_env: Vec<(String, String)>,
    /// The containerd line to run instead of `SLUICE_CONTAINERD`'s (upgrade tests).
    pub line: Option<Line>,
}

impl TestEnv {
    /// Starts a private containerd for `runtime`. Panics with the reason if anything is missing.
    pub fn start(label: &str, runtime: Runtime) -> TestEnv {
        TestEnv::start_with(label, runtime, EnvOpts::default())
    }

    /// [`TestEnv::start`] with extra shims on PATH and/or a config of the caller's.
    pub fn start_with(label: &str, runtime: Runtime, opts: EnvOpts) -> TestEnv {
        let tools = system::tools();
        let sluice = match runtime {
            Runtime::Sluice => Some(system::sluice_shim_bin()),
            Runtime::RuncV2 => None,
        };
        let fault_runc = fault_runc_bin();

        let label = sanitize(label);
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let ns = format!("sl-{label}-{}-{n}", std::process::id());
        let base = std::env::var_os("SLUICE_IT_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| sweep_stale(&base, tools));
        let dir = base.join(format!("{DIR_PREFIX}{ns}"));
        if dir.exists() {
            let _ = fs::remove_dir_all(&dir);
        }
        let mut env = TestEnv::layout(label, ns, dir, runtime, tools);
        if let Some(line) = opts.line {
            env.build = versions::of(line);
        }
        // sun_path is 108 bytes; the ttrpc socket adds ".ttrpc".
        assert!(
            env.sock.as_os_str().len() + 6 < 100,
            "socket path too long for a unix socket: {} (set SLUICE_IT_TMPDIR to a shorter dir)",
            env.sock.display()
        );
        for sub in ["root", "state", "wrap", "shims", "fifo", "opt"] {
            fs::create_dir_all(env.dir.join(sub))
                .unwrap_or_else(|e| panic!("mkdir {}/{sub}: {e}", env.dir.display()));
        }
        // From here on, Drop cleans up whatever was created if a step panics.
        system::build_rootfs(&env.rootfs, &tools.busybox);
        env.install_wrapper(&fault_runc);
        if let Some(sluice) = sluice {
            let link = env.dir.join("shims").join(SLUICE_SHIM_NAME);
            symlink(&sluice, &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
        for (name, target) in &opts.shims {
            let link = env.dir.join("shims").join(name);
            symlink(target, &link).unwrap_or_else(|e| panic!("symlink {}: {e}", link.display()));
        }
        if let Some(config) = &opts.config {
            fs::write(env.dir.join("config.toml"), config(&env)).expect("write config.toml");
        }
        env.containerd_env = opts.containerd_env;
        env.start_containerd();
        env
    }

    /// The paths of an environment in `dir` for namespace `ns`; starts nothing.
    fn layout(
        label: String,
        ns: String,
        dir: PathBuf,
        runtime: Runtime,
        tools: &'static Tools,
    ) -> TestEnv {
        TestEnv {
            runtime,
            label,
            runc_root: Path::new(RUNC_ROOT_BASE).join(&ns),
            ns,
            rootfs: dir.join("rootfs"),
            wrapper_dir: dir.join("wrap"),
            log_path: dir.join("containerd.log"),
            fifo_dir: dir.join("fifo"),
            sock: dir.join("containerd.sock"),
            dir,
            tools,
            containerd: None,
            containerd_env: Vec::new(),
            starts: 0,
            build: versions::selected(),
        }
    }

    fn install_wrapper(&self, fault_runc: &Path) {
        let dest = self.wrapper_dir.join("runc");
        fs::copy(fault_runc, &dest)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", fault_runc.display(), dest.display()));
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
        FaultConf::pass_through(&self.tools.runc)
            .install(&self.wrapper_dir)
            .expect("write pass-through fault.conf");
    }

    /// PATH for containerd and so for the shims and runc: the wrapper first, then the sluice
    /// symlink, then the selected containerd build's own binaries (its stock shim), then the
    /// system.
    pub fn containerd_path(&self) -> String {
        let build = self
            .build
            .bin_dir
            .as_ref()
            .map(|d| format!("{}:", d.display()))
            .unwrap_or_default();
        format!(
            "{}:{}:{build}{SYSTEM_PATH}",
            self.wrapper_dir.display(),
            self.dir.join("shims").display()
        )
    }

    fn config_toml(&self) -> String {
        let line = self.build.line;
        // CRI is heavy and unneeded (ctr talks to the task service); snapshotters are unneeded
        // (every container uses --rootfs).
        let disabled: Vec<&str> = line
            .cri_plugins()
            .iter()
            .chain(line.unneeded_plugins())
            .copied()
            .collect();
        self.base_config_toml(&disabled)
    }

    /// The config every private containerd starts from, in the config version of the selected
    /// containerd: own root, state, sockets and opt dir, debug log, `disabled` plugins off.
    /// Plugin sections may be appended (the CRI tests do).
    pub fn base_config_toml(&self, disabled: &[&str]) -> String {
        let d = self.dir.display();
        let disabled: String = disabled.iter().map(|p| format!("  \"{p}\",\n")).collect();
        format!(
            r#"# private containerd for sluice integration test {ns}
version = {version}
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
{disabled}]

[grpc]
  address = "{sock}"

[ttrpc]
  address = "{sock}.ttrpc"

[debug]
  level = "debug"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            ns = self.ns,
            version = self.build.config_version(),
            sock = self.sock.display(),
        )
    }

    fn start_containerd(&mut self) {
        let cfg = self.dir.join("config.toml");
        // start_with() may have written its own.
        if !cfg.exists() {
            fs::write(&cfg, self.config_toml()).expect("write config.toml");
        }
        let mut vars = vec![
            ("PATH".to_string(), self.containerd_path()),
            ("RUST_BACKTRACE".to_string(), "1".to_string()),
        ];
        vars.extend(self.containerd_env.iter().cloned());
        self.starts += 1;
        self.containerd = Some(Daemon::start(
            Launch {
                containerd: &self.build.containerd,
                config: &cfg,
                log: &self.log_path,
                name: &format!("{DIR_PREFIX}{}", self.ns),
                env: vars,
            },
            self.starts,
        ));
        let ready = poll(Duration::from_secs(30), || {
            if let Some(c) = self.containerd.as_mut() {
                if let Some(status) = c.exited() {
                    panic!(
                        "containerd exited during startup ({status}):\n{}",
                        self.log_tail(60)
                    );
                }
            }
            (self.sock.exists() && self.ctr(&["version"], Duration::from_secs(5)).success())
                .then_some(())
        });
        if ready.is_none() {
            panic!(
                "containerd did not answer on {} within 30s:\n{}",
                self.sock.display(),
                self.log_tail(60)
            );
        }
    }

    /// SIGKILLs the private containerd (its shims live on), for restart tests; then
    /// [`TestEnv::restart_containerd`] brings it back with the same config.
    pub fn kill_containerd(&mut self) {
        if let Some(daemon) = self.containerd.take() {
            daemon.kill();
        }
    }

    /// Starts containerd again with the same config, state and root (after
    /// [`TestEnv::kill_containerd`]); the earlier log is kept as `containerd.log.<n>`.
    pub fn restart_containerd(&mut self) {
        assert!(self.containerd.is_none(), "containerd is still running");
        let mut n = 1;
        while self.dir.join(format!("containerd.log.{n}")).exists() {
            n += 1;
        }
        let _ = fs::rename(&self.log_path, self.dir.join(format!("containerd.log.{n}")));
        self.start_containerd();
    }

    /// Replaces containerd with the build of `line` on the same root, state and sockets, as a
    /// node's package upgrade does: the running containerd is stopped with SIGTERM (its shims
    /// live on), the config is written in the new build's version, and the new build started.
    pub fn upgrade_containerd(&mut self, line: Line) {
        if let Some(daemon) = self.containerd.take() {
            daemon.stop();
        }
        self.build = versions::of(line);
        let mut n = 1;
        while self.dir.join(format!("containerd.log.{n}")).exists() {
            n += 1;
        }
        let _ = fs::rename(&self.log_path, self.dir.join(format!("containerd.log.{n}")));
        fs::write(self.dir.join("config.toml"), self.config_toml()).expect("write config.toml");
        self.start_containerd();
    }

    // ---- ctr ---------------------------------------------------------------------------

    fn ctr_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.build.ctr);
        // ctr 2.2+ prints the daemon's deprecations (cgroup v1 here) on stderr at every call,
        // which would be mixed into the container's stderr the tests compare.
        cmd.env(CTR_QUIET_ENV, "1");
        cmd.arg("-a")
            .arg(&self.sock)
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        cmd
    }

    /// `ctr -a <sock> -n <ns> <args>` with a deadline.
    pub fn ctr(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        cmd::run(self.ctr_command(args), None, timeout)
    }

    fn run_args(&self, id: &str, detach: bool, opts: &RunOpts, argv: &[&str]) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into()];
        a.push(if detach { "--detach" } else { "--rm" }.into());
        a.extend(["--runtime".into(), self.runtime.name().into()]);
        a.extend(["--fifo-dir".into(), self.fifo_dir.display().to_string()]);
        // Without an image, ctr's spec has no PATH; busybox applets live in /bin.
        a.extend(["--env".into(), "PATH=/bin".into()]);
        for ann in &opts.annotations {
            a.extend(["--annotation".into(), ann.clone()]);
        }
        // ctr stops parsing flags at the first positional argument: flags go before it.
        a.extend([
            "--rootfs".into(),
            self.rootfs.display().to_string(),
            id.into(),
        ]);
        a.extend(argv.iter().map(|s| s.to_string()));
        a
    }

    /// Attached `ctr run --rm`: the container's output, ctr's exit code = the container's.
    pub fn run(&self, id: &str, argv: &[&str]) -> CmdOutput {
        self.run_with(id, &RunOpts::default(), argv)
    }

    pub fn run_with(&self, id: &str, opts: &RunOpts, argv: &[&str]) -> CmdOutput {
        let args = self.run_args(id, false, opts, argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd::run(
            self.ctr_command(&args),
            opts.stdin.clone(),
            opts.timeout.unwrap_or(CTR_TIMEOUT),
        )
    }

    /// `ctr -a <sock> -n <ns> <args>`, not started: for callers that need their own stdio (a
    /// pseudo-terminal, a streamed `ctr events`).
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        self.ctr_command(args)
    }

    /// The `ctr run` arguments [`TestEnv::run_with`] uses, plus `flags` (e.g. `--tty`,
    /// `--log-uri URI`, `--memory-limit N`) placed before the first positional argument.
    pub fn run_args_with_flags(
        &self,
        id: &str,
        detach: bool,
        opts: &RunOpts,
        flags: &[&str],
        argv: &[&str],
    ) -> Vec<String> {
        let mut a = self.run_args(id, detach, opts, argv);
        a.splice(1..1, flags.iter().map(|s| s.to_string()));
        a
    }

    /// Where ctr creates this test's IO FIFOs (`--fifo-dir`).
    pub fn fifo_dir(&self) -> &Path {
        &self.fifo_dir
    }

    /// Attached `ctr run --rm` left running in the background.
    pub fn spawn_run(&self, id: &str, argv: &[&str]) -> Running {
        let args = self.run_args(id, false, &RunOpts::default(), argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cmd::spawn(self.ctr_command(&args), None)
    }

    /// `ctr run --detach`; panics unless it succeeds.
    pub fn run_detached(&self, id: &str, annotations: &[&str], argv: &[&str]) {
        let opts = RunOpts {
            annotations: annotations.iter().map(|s| s.to_string()).collect(),
            ..RunOpts::default()
        };
        let args = self.run_args(id, true, &opts, argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&args, CTR_TIMEOUT)
            .expect_success(&format!("[{}] ctr run --detach {id}", self.runtime));
    }

    /// `ctr task exec --exec-id <exec_id> <id> <argv>` (stdin /dev/null).
    /// The arguments of `ctr task exec [--detach] --exec-id <exec_id> <id> <argv>`.
    pub fn exec_args(&self, id: &str, exec_id: &str, detach: bool, argv: &[&str]) -> Vec<String> {
        let mut args = vec!["task".to_string(), "exec".to_string()];
        if detach {
            args.push("--detach".into());
        }
        args.extend([
            "--fifo-dir".to_string(),
            self.fifo_dir.display().to_string(),
        ]);
        args.extend(["--exec-id".to_string(), exec_id.to_string(), id.to_string()]);
        args.extend(argv.iter().map(|a| a.to_string()));
        args
    }

    pub fn exec(&self, id: &str, exec_id: &str, argv: &[&str], timeout: Duration) -> CmdOutput {
        let args = self.exec_args(id, exec_id, false, argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ctr(&args, timeout)
    }

    pub fn kill(&self, id: &str, signal: &str) -> CmdOutput {
        self.ctr(&["task", "kill", "--signal", signal, id], CTR_TIMEOUT)
    }

    pub fn task_delete(&self, id: &str) -> CmdOutput {
        self.ctr(&["task", "delete", id], CTR_TIMEOUT)
    }

    pub fn container_delete(&self, id: &str) -> CmdOutput {
        self.ctr(&["container", "delete", id], CTR_TIMEOUT)
    }

    /// `ctr task ls`, parsed.
    pub fn tasks(&self) -> Vec<TaskRow> {
        let out = self
            .ctr(&["task", "ls"], CTR_TIMEOUT)
            .expect_success("ctr task ls");
        out.stdout_str()
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                Some(TaskRow {
                    id: f.next()?.to_string(),
                    pid: f.next()?.parse().ok()?,
                    status: f.next()?.to_string(),
                })
            })
            .collect()
    }

    pub fn task(&self, id: &str) -> Option<TaskRow> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

    /// Polls `ctr task ls` until `id` has `status` (e.g. RUNNING, STOPPED); panics otherwise.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) -> TaskRow {
        poll(timeout, || self.task(id).filter(|t| t.status == status)).unwrap_or_else(|| {
            panic!(
                "[{}] task {id} did not reach {status} within {timeout:?}; ctr task ls: {:?}",
                self.runtime,
                self.tasks()
            )
        })
    }

    /// `ctr container ls -q`.
    pub fn containers(&self) -> Vec<String> {
        self.ctr(&["container", "ls", "-q"], CTR_TIMEOUT)
            .expect_success("ctr container ls")
            .stdout_str()
            .lines()
            .map(str::to_string)
            .collect()
    }

    // ---- processes -----------------------------------------------------------------------

    /// Live shim processes of `runtime` serving this containerd (`-address <sock>`).
    pub fn shims(&self, runtime: Runtime) -> Vec<ProcInfo> {
        let sock = self.sock.display().to_string();
        procs::find(|p| {
            p.is_program(runtime.shim_binary())
                && p.has_arg_pair("-address", &sock)
                && procs::alive(p.pid)
        })
    }

    /// Wrapper processes still running as the wrapper (not yet exec'd into the real runc).
    pub fn wrapper_procs(&self) -> Vec<ProcInfo> {
        let wrapper = self.wrapper_dir.join("runc");
        procs::find(|p| p.exe == wrapper && procs::alive(p.pid))
    }

    /// Wrapper and runc processes of this test (runc is always called with our runc root or our
    /// bundle paths), and `runc init`s sitting in this namespace's cgroups.
    pub fn runc_procs(&self) -> Vec<ProcInfo> {
        let wrapper = self.wrapper_dir.join("runc");
        let root = self.runc_root.display().to_string();
        let dir = self.dir.display().to_string();
        let cg = format!("/{}/", self.ns);
        procs::find(|p| {
            let mine = p.exe == wrapper
                || p.argv.iter().any(|a| a == &root || a.starts_with(&dir))
                || p.cgroups.iter().any(|c| c.starts_with(&cg));
            let runc_like = p.exe == wrapper
                || p.is_program("runc")
                || p.argv.get(1).map(|a| a == "init").unwrap_or(false);
            mine && runc_like && procs::alive(p.pid)
        })
    }

    /// Kills blocked wrapper/runc processes so a wedged shim gets its runc call back.
    pub fn unwedge(&self) -> Vec<ProcInfo> {
        let victims = self.runc_procs();
        let pids: Vec<i32> = victims.iter().map(|p| p.pid).collect();
        let left = procs::kill_all(&pids, Duration::from_secs(5));
        if !left.is_empty() {
            eprintln!(
                "[{}] warning: still alive after SIGKILL: {left:?}",
                self.label
            );
        }
        victims
    }

    // ---- faults --------------------------------------------------------------------------

    /// Arms the wrapper: `action` on runc `verb`, optionally only for the first call.
    pub fn set_fault(&self, verb: &str, action: Action, once: bool) {
        FaultConf {
            real_runc: self.tools.runc.clone(),
            verb: verb.to_string(),
            action,
            once,
        }
        .install(&self.wrapper_dir)
        .expect("write fault.conf");
    }

    /// The wrapper's log: one line per runc call.
    pub fn fault_log(&self) -> String {
        fs::read_to_string(self.wrapper_dir.join(fault::LOG_FILE)).unwrap_or_default()
    }

    /// How many times the armed fault fired on `verb`.
    pub fn fault_fired(&self, verb: &str) -> usize {
        let needle = format!("verb={verb} fault=fired");
        self.fault_log()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    // ---- diagnostics ---------------------------------------------------------------------

    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log_path).unwrap_or_default();
        // Plugin loading is ~60 lines of noise at every start; what matters comes after it.
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !l.contains("msg=\"loading plugin "))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn print_diagnostics(&self) {
        eprintln!(
            "\n===== [{}] diagnostics for namespace {} ({}) =====",
            self.label, self.ns, self.runtime
        );
        let dir = self.dir.display().to_string();
        let sock = self.sock.display().to_string();
        for p in procs::find(|p| {
            p.argv.iter().any(|a| a.starts_with(&dir) || a == &sock)
                || p.cgroups
                    .iter()
                    .any(|c| c.starts_with(&format!("/{}/", self.ns)))
        }) {
            eprintln!(
                "  pid {:>7} ppid {:>7} wchan {:<20} {}",
                p.pid,
                p.ppid,
                p.wchan,
                p.cmdline()
            );
        }
        eprintln!("----- fault-runc log -----\n{}", self.fault_log());
        eprintln!(
            "----- containerd log {} (last 300 lines; shim logs are in it) -----\n{}",
            self.log_path.display(),
            self.log_tail(300)
        );
        eprintln!("===== end of diagnostics =====\n");
    }

    // ---- teardown ------------------------------------------------------------------------

    fn teardown(&mut self) {
        let started = Instant::now();
        let shim_sockets = self.shim_sockets();

        // 1. Anything stuck in runc first, so the shims answer the ctr calls below.
        let stuck = self.unwedge();
        if !stuck.is_empty() {
            eprintln!(
                "[{}] teardown: killed {} stuck runc/wrapper process(es)",
                self.label,
                stuck.len()
            );
        }

        // 2. Kill and delete every task and container through ctr, each call bounded.
        if self.containerd.is_some() {
            let listed = self.ctr(&["container", "ls", "-q"], TEARDOWN_CTR_TIMEOUT);
            if listed.success() {
                for id in listed.stdout_str().lines() {
                    let t = TEARDOWN_CTR_TIMEOUT;
                    let _ = self.ctr(&["task", "kill", "--all", "--signal", "SIGKILL", id], t);
                    let _ = poll(Duration::from_secs(3), || {
                        let ls = self.ctr(&["task", "ls"], t);
                        (!ls.stdout_str().lines().any(|l| {
                            l.split_whitespace().next() == Some(id) && l.contains("RUNNING")
                        }))
                        .then_some(())
                    });
                    let _ = self.ctr(&["task", "delete", "--force", id], t);
                    let _ = self.ctr(&["container", "delete", id], t);
                }
            }
        }

        // 3. Stop containerd.
        if let Some(daemon) = self.containerd.take() {
            daemon.stop();
        }

        // 4. Shims it started (they outlive containerd), and anything else naming our dir.
        let sock = self.sock.display().to_string();
        let dir = self.dir.display().to_string();
        let ours: Vec<i32> = procs::find(|p| {
            p.has_arg_pair("-address", &sock) || p.argv.iter().any(|a| a.starts_with(&dir))
        })
        .iter()
        .map(|p| p.pid)
        .collect();
        let sockets: Vec<PathBuf> = ours
            .iter()
            .flat_map(|&p| procs::listening_sockets(p))
            .collect();
        procs::kill_all(&ours, Duration::from_secs(5));
        // A killed shim leaves its socket file in /run/containerd/s.
        for s in &sockets {
            let _ = fs::remove_file(s);
        }
        self.unwedge();

        // 5. Container processes left in our cgroups (their shim is gone).
        let cgroup_dirs = self.cgroup_dirs();
        let mut pids = Vec::new();
        for d in &cgroup_dirs {
            for sub in walk_dirs(d) {
                if let Ok(text) = fs::read_to_string(sub.join("cgroup.procs")) {
                    pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
                }
            }
        }
        pids.sort_unstable();
        pids.dedup();
        procs::kill_all(&pids, Duration::from_secs(5));

        // 6. runc state left behind.
        if let Ok(entries) = fs::read_dir(&self.runc_root) {
            for e in entries.flatten() {
                let mut cmd = Command::new(&self.tools.runc);
                cmd.arg("--root")
                    .arg(&self.runc_root)
                    .arg("delete")
                    .arg("--force")
                    .arg(e.file_name());
                let _ = cmd::run(cmd, None, TEARDOWN_CTR_TIMEOUT);
            }
        }
        let _ = fs::remove_dir_all(&self.runc_root);

        // 7. Mounts under our dirs, deepest first.
        unmount_under(&[&self.dir, &self.runc_root]);

        // 8. Cgroups `/<ns>/...` in every hierarchy, deepest first; rmdir can fail with EBUSY
        // for a moment after the last process died.
        for d in &cgroup_dirs {
            let _ = poll(Duration::from_secs(5), || {
                let mut subs = walk_dirs(d);
                subs.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
                for s in &subs {
                    let _ = fs::remove_dir(s);
                }
                (!d.exists()).then_some(())
            });
            if d.exists() {
                eprintln!(
                    "[{}] teardown: could not remove cgroup {}",
                    self.label,
                    d.display()
                );
            }
        }

        // 9. Shim sockets in the fixed socket dir, then our temp dir.
        for s in shim_sockets {
            let _ = fs::remove_file(s);
        }
        let keep = std::thread::panicking() && std::env::var_os("SLUICE_IT_KEEP").is_some();
        if keep {
            eprintln!(
                "[{}] SLUICE_IT_KEEP: kept {}",
                self.label,
                self.dir.display()
            );
        } else if let Err(e) = fs::remove_dir_all(&self.dir) {
            eprintln!(
                "[{}] teardown: remove {}: {e}",
                self.label,
                self.dir.display()
            );
        }
        let took = started.elapsed();
        if took > Duration::from_secs(20) {
            eprintln!("[{}] teardown took {took:?}", self.label);
        }
    }

    /// The shim sockets named in the bundles (only inside the fixed socket dir), in every
    /// namespace of this private containerd (CRI tests use `k8s.io`): the `address` file
    /// (containerd 1.x, and shims that write one), or containerd 2.x's `bootstrap.json`
    /// (`{"version":3,"address":"unix:///run/containerd/s/...","protocol":"ttrpc"}`).
    pub fn shim_sockets(&self) -> Vec<PathBuf> {
        let tasks = self.dir.join("state/io.containerd.runtime.v2.task");
        let Ok(namespaces) = fs::read_dir(tasks) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = namespaces
            .flatten()
            .filter_map(|ns| fs::read_dir(ns.path()).ok())
            .flat_map(|bundles| bundles.flatten())
            // One entry per bundle (a group's bundles name the same socket).
            .filter_map(|b| {
                fs::read_to_string(b.path().join("address"))
                    .ok()
                    .or_else(|| {
                        fs::read_to_string(b.path().join("bootstrap.json"))
                            .ok()
                            .and_then(|j| bootstrap_address(&j))
                    })
            })
            .filter_map(|a| a.trim().strip_prefix("unix://").map(PathBuf::from))
            .filter(|p| p.parent() == Some(Path::new(SHIM_SOCKET_DIR)))
            .collect();
        out.sort();
        out
    }

    /// `/<ns>` in every cgroup hierarchy that has it (v1 controllers, unified, or pure v2).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut hierarchies = vec![root.to_path_buf()];
        if let Ok(entries) = fs::read_dir(root) {
            hierarchies.extend(entries.flatten().map(|e| e.path()));
        }
        let mut out: Vec<PathBuf> = hierarchies
            .into_iter()
            .filter_map(|h| fs::canonicalize(h.join(&self.ns)).ok())
            .filter(|p| p.is_dir())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_diagnostics();
        }
        self.teardown();
    }
}

/// Tears down what earlier test processes that were killed before their `Drop` ran left behind
/// (their containerd, shims, runc state, cgroups, temp dir): dirs whose owning pid is gone.
fn sweep_stale(base: &Path, tools: &'static Tools) {
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(ns) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let owner = ns.rsplit('-').nth(1).and_then(|p| p.parse::<i32>().ok());
        match owner {
            Some(pid) if pid as u32 != std::process::id() && !procs::alive(pid) => {}
            _ => continue,
        }
        eprintln!(
            "sluice-integration: cleaning up {} left by a killed test run",
            e.path().display()
        );
        drop(TestEnv::layout(
            "stale".into(),
            ns.to_string(),
            e.path(),
            Runtime::RuncV2,
            tools,
        ));
    }
}

/// The `address` of a containerd 2.x `bootstrap.json` (a flat JSON object of strings and a
/// number; no JSON library needed).
pub(crate) fn bootstrap_address(json: &str) -> Option<String> {
    let rest = &json[json.find("\"address\"")? + "\"address\"".len()..];
    let rest = rest
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// `dir` and every directory below it.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(entries) = fs::read_dir(&out[i]) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}

/// Lazily unmounts every mount point at or below any of `dirs`, deepest first.
pub fn unmount_under(dirs: &[&Path]) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| dirs.iter().any(|d| p.starts_with(d)))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    for p in points {
        let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
            continue;
        };
        // SAFETY: c is a valid NUL-terminated path; umount2 has no memory effects on us.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
