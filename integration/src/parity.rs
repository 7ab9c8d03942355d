//! Helpers for the parity tests (`tests/parity.rs`): what sluice must do exactly like
//! containerd's stock `io.containerd.runc.v2` shim, seen through `ctr` and the kernel.
//!
//! - [`PtyRun`]: a command (ctr) on a pseudo-terminal of a chosen size, its output collected,
//!   the terminal resizable while it runs (ctr forwards SIGWINCH as `ResizePty`).
//! - [`EventWatcher`]: `ctr events` in the background, parsed into [`Event`]s as they arrive.
//! - `ctr task ps`, `ctr task metrics` and cgroup files, parsed.
//! - [`update_resources`], [`close_stdin`]: the shim's ttrpc `Update` and `CloseIO`, sent
//!   straight to the shim (ctr 1.6 has no command for either).

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{CloseIORequest, UpdateTaskRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_sync::{Client, TaskClient};
use containerd_shim_protos::ttrpc;
use serde_json::Value;

use crate::cmd::{self, excerpt, poll, CmdOutput};
use crate::harness::{RunOpts, TestEnv, CTR_TIMEOUT};

/// `Any.type_url` of the OCI `LinuxResources` an `UpdateTaskRequest` carries (JSON-encoded), as
/// containerd's typeurl registry names it.
pub const LINUX_RESOURCES_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";

// ---- ctr run with extra flags ---------------------------------------------------------------

/// Attached `ctr run --rm [flags] ... id argv` (stdin and deadline from `opts`).
pub fn run_with_flags(
    env: &TestEnv,
    id: &str,
    flags: &[&str],
    opts: &RunOpts,
    argv: &[&str],
) -> CmdOutput {
    let args = env.run_args_with_flags(id, false, opts, flags, argv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd::run(
        env.ctr_cmd(&args),
        opts.stdin.clone(),
        opts.timeout.unwrap_or(CTR_TIMEOUT),
    )
}

/// `ctr run --detach [flags] ... id argv`; panics unless it succeeds.
pub fn run_detached_with_flags(env: &TestEnv, id: &str, flags: &[&str], argv: &[&str]) {
    let args = env.run_args_with_flags(id, true, &RunOpts::default(), flags, argv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ctr(&args, CTR_TIMEOUT).expect_success(&format!(
        "[{}] ctr run --detach {} {id}",
        env.runtime,
        flags.join(" ")
    ));
}

/// Attached `ctr run --rm ... id argv` fed `data` on stdin, whose EOF comes only once
/// `ctr task ls` shows the task RUNNING: by then ctr has its task handle, so its stdin reader
/// sends CloseIO at EOF. (With an EOF that comes sooner, ctr 1.6 drops the CloseIO: its
/// `stdinCloser` gets the task handle only when NewTask returns.)
pub fn run_eof_when_running(
    env: &TestEnv,
    id: &str,
    data: &[u8],
    argv: &[&str],
    timeout: Duration,
) -> CmdOutput {
    let args = env.run_args_with_flags(id, false, &RunOpts::default(), &[], argv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.ctr_cmd(&args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let argv_text: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let started = Instant::now();
    let mut child = cmd.spawn().expect("start ctr run");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
        rx
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped")));
    let mut stdin = child.stdin.take().expect("piped");
    let _ = stdin.write_all(data);
    let deadline = started + timeout;
    let _ = poll(timeout, || {
        let running = env.task(id).map(|t| t.status == "RUNNING").unwrap_or(false);
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        (running || exited).then_some(())
    });
    drop(stdin);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for ctr run: {e}"),
        }
    };
    let grace = Duration::from_secs(5);
    CmdOutput {
        argv: argv_text,
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
        elapsed: started.elapsed(),
        timeout,
    }
}

/// `ctr task exec --detach --exec-id <exec_id> <id> <argv>`; panics unless it succeeds.
pub fn exec_detached(env: &TestEnv, id: &str, exec_id: &str, argv: &[&str]) {
    let args = env.exec_args(id, exec_id, true, argv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.ctr(&args, CTR_TIMEOUT).expect_success(&format!(
        "[{}] ctr task exec --detach --exec-id {exec_id} {id}",
        env.runtime
    ));
}

/// Kills `id` with SIGKILL, waits for STOPPED, deletes task and container, and checks both are
/// gone.
pub fn kill_and_delete(env: &TestEnv, id: &str) {
    let rt = env.runtime;
    env.kill(id, "SIGKILL")
        .expect_success(&format!("[{rt}] ctr task kill -s SIGKILL {id}"));
    env.wait_task_status(id, "STOPPED", Duration::from_secs(30));
    env.task_delete(id)
        .expect_success(&format!("[{rt}] ctr task delete {id}"));
    env.container_delete(id)
        .expect_success(&format!("[{rt}] ctr container delete {id}"));
    assert!(env.task(id).is_none(), "[{rt}] task {id} still listed");
    assert!(
        !env.containers().contains(&id.to_string()),
        "[{rt}] container {id} still listed"
    );
}

// ---- pseudo-terminal --------------------------------------------------------------------------

/// A command whose stdin, stdout and stderr are the slave of a fresh pty (its controlling
/// terminal, in a new session), the master read in the background.
pub struct PtyRun {
    argv: String,
    child: Child,
    master: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
    reader_done: mpsc::Receiver<()>,
    started: Instant,
    finished: bool,
}

/// What a command on a pty printed, and how it ended.
#[derive(Debug)]
pub struct PtyOutput {
    pub argv: String,
    /// `None` when killed at the deadline.
    pub status: Option<ExitStatus>,
    /// Everything read from the master (the terminal's output: `\r\n` line ends).
    pub output: Vec<u8>,
    pub elapsed: Duration,
}

impl PtyOutput {
    pub fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }
}

impl fmt::Display for PtyOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "  command: {}", self.argv)?;
        match self.status {
            None => writeln!(f, "  result:  TIMED OUT after {:?} (killed)", self.elapsed)?,
            Some(s) => match (s.code(), s.signal()) {
                (Some(c), _) => writeln!(f, "  result:  exit code {c} after {:?}", self.elapsed)?,
                (None, sig) => writeln!(f, "  result:  signal {sig:?} after {:?}", self.elapsed)?,
            },
        }
        write!(
            f,
            "  terminal output ({} bytes): {}",
            self.output.len(),
            excerpt(&self.output)
        )
    }
}

fn winsize(rows: u16, cols: u16) -> nix::pty::Winsize {
    nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

fn set_cloexec(fd: &OwnedFd) {
    // SAFETY: fcntl on a valid, owned descriptor.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

impl PtyRun {
    /// Starts `cmd` on a new pty of `rows` x `cols`.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtyRun {
        let argv: String = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|s| s.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        let pty = nix::pty::openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        set_cloexec(&pty.master);
        set_cloexec(&pty.slave);
        let dup = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup pty slave"));
        cmd.stdin(dup(&pty.slave))
            .stdout(dup(&pty.slave))
            .stderr(dup(&pty.slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv}: {e}"));
        // The child has its copies; ours must go so the master sees EIO when the child is done.
        drop(cmd);
        drop(pty.slave);

        let output = Arc::new(Mutex::new(Vec::new()));
        let (done_tx, reader_done) = mpsc::channel();
        let mut reader = File::from(pty.master.try_clone().expect("dup pty master"));
        let sink = Arc::clone(&output);
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .expect("pty output lock")
                    .extend_from_slice(&buf[..n]);
            }
            let _ = done_tx.send(());
        });
        PtyRun {
            argv,
            child,
            master: pty.master,
            output,
            reader_done,
            started,
            finished: false,
        }
    }

    /// The terminal output so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().expect("pty output lock")).into_owned()
    }

    /// Waits until the output contains `needle`; false at the deadline or if the command exits
    /// without printing it.
    pub fn wait_for_text(&mut self, needle: &str, timeout: Duration) -> bool {
        poll(timeout, || {
            if self.text().contains(needle) {
                return Some(true);
            }
            matches!(self.child.try_wait(), Ok(Some(_))).then_some(false)
        })
        .unwrap_or(false)
    }

    /// Changes the terminal's size (TIOCSWINSZ on the master); the kernel sends SIGWINCH to
    /// the foreground process group, the command.
    pub fn resize(&self, rows: u16, cols: u16) {
        let ws = winsize(rows, cols);
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
    }

    /// Waits for the command to exit (SIGKILL at the deadline) and for its terminal output.
    pub fn wait(mut self, timeout: Duration) -> PtyOutput {
        let deadline = self.started + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(e) => panic!("waiting for {}: {e}", self.argv),
            }
        };
        let elapsed = self.started.elapsed();
        self.finished = true;
        // Bounded: only a leftover holder of the slave could delay the EIO.
        let _ = self.reader_done.recv_timeout(Duration::from_secs(5));
        PtyOutput {
            argv: self.argv.clone(),
            status,
            output: self.output.lock().expect("pty output lock").clone(),
            elapsed,
        }
    }
}

impl Drop for PtyRun {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---- ctr events -------------------------------------------------------------------------------

/// One line of `ctr events`: `<timestamp> <namespace> <topic> <json>`.
#[derive(Clone, Debug)]
pub struct Event {
    pub namespace: String,
    pub topic: String,
    pub payload: Value,
}

impl Event {
    /// Parses a `ctr events` line; the timestamp (Go's `time.Time` text) contains spaces, so
    /// the topic is the first field starting with `/`.
    pub fn parse(line: &str) -> Option<Event> {
        let fields: Vec<&str> = line.split(' ').collect();
        let t = fields.iter().position(|f| f.starts_with('/'))?;
        let namespace = fields.get(t.checked_sub(1)?)?.to_string();
        let json = fields[t + 1..].join(" ");
        let payload = if json.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(json.trim()).ok()?
        };
        Some(Event {
            namespace,
            topic: fields[t].to_string(),
            payload,
        })
    }

    fn str_field(&self, key: &str) -> Option<&str> {
        self.payload.get(key).and_then(Value::as_str)
    }

    pub fn container_id(&self) -> Option<&str> {
        self.str_field("container_id")
    }

    /// `/tasks/exit`: the process that exited (the container id for the init process).
    pub fn id(&self) -> Option<&str> {
        self.str_field("id")
    }

    pub fn exec_id(&self) -> Option<&str> {
        self.str_field("exec_id")
    }

    /// `exit_status` (Go's JSON omits a zero).
    pub fn exit_status(&self) -> Option<u64> {
        match self.payload.get("exit_status") {
            Some(v) => v.as_u64(),
            None if self.topic == "/tasks/exit" || self.topic == "/tasks/delete" => Some(0),
            None => None,
        }
    }

    pub fn pid(&self) -> Option<u64> {
        self.payload.get("pid").and_then(Value::as_u64)
    }

    /// Short form for messages and order checks: `exit(c1/e1)`, `start(c1)`, ...
    pub fn short(&self) -> String {
        let topic = self.topic.trim_start_matches("/tasks/");
        let c = self.container_id().unwrap_or("?");
        match (self.topic.as_str(), self.exec_id(), self.id()) {
            ("/tasks/exit", _, Some(id)) if id != c => format!("{topic}({c}/{id})"),
            (_, Some(e), _) => format!("{topic}({c}/{e})"),
            _ => format!("{topic}({c})"),
        }
    }
}

/// `ctr events` running in the background, subscribed before [`EventWatcher::start`] returns.
pub struct EventWatcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    ns: String,
}

impl EventWatcher {
    /// Starts `ctr events` and returns once it provably receives events: it labels the
    /// namespace until the `/namespaces/update` of that label shows up.
    pub fn start(env: &TestEnv) -> EventWatcher {
        let mut cmd = env.ctr_cmd(&["events"]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("start ctr events");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let out = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                sink.lock().expect("events lock").push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let err_sink = Arc::clone(&stderr);
        let mut err = child.stderr.take().expect("piped stderr");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err_sink
                    .lock()
                    .expect("stderr lock")
                    .extend_from_slice(&buf[..n]);
            }
        });
        let mut watcher = EventWatcher {
            child,
            lines,
            stderr,
            ns: env.ns.clone(),
        };
        let mut n = 0;
        let subscribed = poll(Duration::from_secs(30), || {
            if let Ok(Some(status)) = watcher.child.try_wait() {
                panic!(
                    "ctr events exited ({status}) before subscribing: {}",
                    String::from_utf8_lossy(&watcher.stderr.lock().expect("stderr lock"))
                );
            }
            n += 1;
            let label = format!("sluice-events-probe={n}");
            env.ctr(&["namespaces", "label", &env.ns, &label], CTR_TIMEOUT)
                .expect_success("ctr namespaces label (events probe)");
            watcher
                .lines()
                .iter()
                .any(|l| l.contains("/namespaces/update"))
                .then_some(())
        });
        assert!(
            subscribed.is_some(),
            "ctr events never reported a /namespaces/update within 30s; it printed: {:?}",
            watcher.lines()
        );
        watcher
    }

    /// Every line printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("events lock").clone()
    }

    /// The `/tasks/...` events of this test's namespace so far, in arrival order.
    pub fn task_events(&self) -> Vec<Event> {
        self.lines()
            .iter()
            .filter_map(|l| Event::parse(l))
            .filter(|e| e.namespace == self.ns && e.topic.starts_with("/tasks/"))
            .collect()
    }

    /// The task events of container `id`.
    pub fn events_of(&self, id: &str) -> Vec<Event> {
        self.task_events()
            .into_iter()
            .filter(|e| e.container_id() == Some(id))
            .collect()
    }

    /// Waits until `pred` holds for some task event; returns it, or panics with all events.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Event) -> bool,
    ) -> Event {
        poll(timeout, || self.task_events().into_iter().find(|e| pred(e))).unwrap_or_else(|| {
            panic!(
                "no {what} event within {timeout:?}; ctr events printed:\n{}",
                self.lines().join("\n")
            )
        })
    }
}

impl Drop for EventWatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Short forms ([`Event::short`]) of `events`, for order assertions and messages.
pub fn shorts(events: &[Event]) -> Vec<String> {
    events.iter().map(Event::short).collect()
}

// ---- ctr task ps / metrics --------------------------------------------------------------------

/// One row of `ctr task ps`: host pid and the INFO column (`-`, or the shim's process details).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsRow {
    pub pid: u32,
    pub info: String,
}

/// `ctr task ps <id>`, parsed; panics unless it succeeds.
pub fn task_ps(env: &TestEnv, id: &str) -> Vec<PsRow> {
    let out = env
        .ctr(&["task", "ps", id], CTR_TIMEOUT)
        .expect_success(&format!("[{}] ctr task ps {id}", env.runtime));
    out.stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.trim();
            let (pid, info) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            Some(PsRow {
                pid: pid.parse().ok()?,
                info: info.trim().to_string(),
            })
        })
        .collect()
}

/// `ctr task metrics <id>` (table format), as metric name → value text; panics unless it
/// succeeds. Returns the raw output too, for messages.
pub fn task_metrics(env: &TestEnv, id: &str) -> (BTreeMap<String, String>, CmdOutput) {
    let out = env
        .ctr(&["task", "metrics", id], CTR_TIMEOUT)
        .expect_success(&format!("[{}] ctr task metrics {id}", env.runtime));
    let mut map = BTreeMap::new();
    let text = out.stdout_str();
    let mut in_table = false;
    for l in text.lines() {
        let l = l.trim();
        if l.starts_with("METRIC") {
            in_table = true;
            continue;
        }
        if in_table && !l.is_empty() {
            let (k, v) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            map.insert(k.to_string(), v.trim().to_string());
        }
    }
    (map, out)
}

// ---- cgroups ----------------------------------------------------------------------------------

/// True on a host whose only hierarchy is cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`).
pub fn cgroup_v2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's cgroup dir for `controller` (ctr's default cgroups path is `/<ns>/<id>`).
pub fn cgroup_dir(env: &TestEnv, controller: &str, id: &str) -> PathBuf {
    let base = if cgroup_v2_only() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    let dir = base.join(&env.ns).join(id);
    assert!(
        dir.is_dir(),
        "[{}] cgroup dir {} of container {id} does not exist",
        env.runtime,
        dir.display()
    );
    dir
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The freezer state of container `id` as v1 spells it: `FROZEN`, `FREEZING` or `THAWED`.
pub fn freezer_state(env: &TestEnv, id: &str) -> String {
    let dir = cgroup_dir(env, "freezer", id);
    if cgroup_v2_only() {
        match read_trimmed(&dir.join("cgroup.freeze")).as_str() {
            "1" => "FROZEN".into(),
            _ => "THAWED".into(),
        }
    } else {
        read_trimmed(&dir.join("freezer.state"))
    }
}

/// The memory limit of container `id` in bytes (`u64::MAX` for v2's `max`).
pub fn memory_limit(env: &TestEnv, id: &str) -> u64 {
    let dir = cgroup_dir(env, "memory", id);
    let file = if cgroup_v2_only() {
        dir.join("memory.max")
    } else {
        dir.join("memory.limit_in_bytes")
    };
    let text = read_trimmed(&file);
    if text == "max" {
        return u64::MAX;
    }
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()))
}

// ---- the shim's ttrpc API ---------------------------------------------------------------------

/// The bundle (task state dir) of container `id` in this test's containerd.
pub fn bundle_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.dir
        .join("state/io.containerd.runtime.v2.task")
        .join(&env.ns)
        .join(id)
}

/// The ttrpc address of the shim serving `id` (`unix:///run/containerd/s/<hash>`), from the
/// bundle's `address` file (containerd 1.x) or `bootstrap.json` (2.x).
pub fn shim_address(env: &TestEnv, id: &str) -> String {
    let bundle = bundle_dir(env, id);
    if let Ok(a) = fs::read_to_string(bundle.join("address")) {
        return a.trim().to_string();
    }
    let boot = bundle.join("bootstrap.json");
    let text = fs::read_to_string(&boot).unwrap_or_else(|e| {
        panic!(
            "[{}] neither {}/address nor bootstrap.json is readable: {e}",
            env.runtime,
            bundle.display()
        )
    });
    let v: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", boot.display()));
    v.get("address")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{}: no address: {text:?}", boot.display()))
        .to_string()
}

/// Sends the Task service's `Update` for `id` straight to the shim at `address`, with
/// `resources_json` (OCI `LinuxResources`, e.g. `{"memory":{"limit":67108864}}`) as containerd
/// would wrap it. Returns the ttrpc error text on failure.
pub fn update_resources(address: &str, id: &str, resources_json: &str) -> Result<(), String> {
    let client = Client::connect(address).map_err(|e| format!("connect {address}: {e:?}"))?;
    let task = TaskClient::new(client);
    let mut any = Any::new();
    any.type_url = LINUX_RESOURCES_URL.to_string();
    any.value = resources_json.as_bytes().to_vec();
    let mut req = UpdateTaskRequest::new();
    req.id = id.to_string();
    req.resources = Some(any).into();
    let timeout_ns = CTR_TIMEOUT.as_nanos() as i64;
    task.update(ttrpc::context::with_timeout(timeout_ns), &req)
        .map(|_| ())
        .map_err(|e| format!("Update({id}) on {address}: {e:?}"))
}

/// Sends the Task service's `CloseIO` with `stdin: true` for process `exec_id` of container
/// `id` (`""` for the init process) straight to the shim at `address`.
pub fn close_stdin(address: &str, id: &str, exec_id: &str) -> Result<(), String> {
    let client = Client::connect(address).map_err(|e| format!("connect {address}: {e:?}"))?;
    let task = TaskClient::new(client);
    let mut req = CloseIORequest::new();
    req.id = id.to_string();
    req.exec_id = exec_id.to_string();
    req.stdin = true;
    let timeout_ns = CTR_TIMEOUT.as_nanos() as i64;
    task.close_io(ttrpc::context::with_timeout(timeout_ns), &req)
        .map(|_| ())
        .map_err(|e| format!("CloseIO({id}, {exec_id:?}) on {address}: {e:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_event_lines() {
        let l = "2024-01-02 03:04:05.123456789 +0000 UTC ns1 /tasks/exit \
                 {\"container_id\":\"c1\",\"id\":\"e1\",\"pid\":42,\"exit_status\":3,\
                 \"exited_at\":\"2024-01-02T03:04:05Z\"}";
        let e = Event::parse(l).expect("parse");
        assert_eq!(e.namespace, "ns1");
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.container_id(), Some("c1"));
        assert_eq!(e.id(), Some("e1"));
        assert_eq!(e.exit_status(), Some(3));
        assert_eq!(e.pid(), Some(42));
        assert_eq!(e.short(), "exit(c1/e1)");

        let l = "2024-01-02 03:04:05 +0000 UTC ns1 /tasks/exit \
                 {\"container_id\":\"c1\",\"id\":\"c1\",\"pid\":41,\"exited_at\":\"x\"}";
        let e = Event::parse(l).expect("parse");
        assert_eq!(e.exit_status(), Some(0));
        assert_eq!(e.short(), "exit(c1)");

        let l = "2024-01-02 03:04:05 +0000 UTC ns1 /tasks/exec-added \
                 {\"container_id\":\"c1\",\"exec_id\":\"e1\"}";
        assert_eq!(Event::parse(l).expect("parse").short(), "exec-added(c1/e1)");
        assert!(Event::parse("garbage").is_none());
    }
}
