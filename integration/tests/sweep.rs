//! The request sweep (issue 16): Task API requests filled in the ways containerd's Go client
//! (and others) may fill them, not only as `ctr` does, sent straight to the shim's socket, and
//! the answer of each compared with what the stock `io.containerd.runc.v2` shim answers.
//!
//! [`ROWS`] is the table, one row per (request, field, case): what the stock shim answers
//! (status code and the effect a user sees), and, where sluice answers otherwise on purpose,
//! sluice's answer and why. [`run`] sends every row to both shims and fails on any answer that
//! is not the table's. integration/README.md has the same table in prose.
//!
//! Each row runs against one long-lived container (`sleep`, no terminal) with exec IDs of its
//! own; an exec's stdio are FIFOs in the test's directory, read and written here.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, DeleteRequest, DeleteResponse, Empty,
    ExecProcessRequest, KillRequest, ResizePtyRequest, ResumeRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;

use sluice_integration::cmd::poll;
use sluice_integration::harness::TestEnv;
use sluice_integration::{cells, cgroups, containers, Runtime};

/// Every RPC gets this long (Wait on a process that exits at once, runc's own calls).
const RPC_TIMEOUT: Duration = Duration::from_secs(20);
/// In a row where a shim may not answer at all: long enough for any answer here.
const HANG_TIMEOUT: Duration = Duration::from_secs(6);
/// How long an exec's output may take to arrive after its exit.
const OUTPUT_GRACE: Duration = Duration::from_secs(3);
const PROCESS_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// One row of the table.
struct Row {
    pub request: &'static str,
    pub field: &'static str,
    pub case: &'static str,
    /// The stock shim's answer, as [`Row::run`] renders it.
    pub stock: &'static str,
    /// Where a containerd line's stock shim answers otherwise: (line, answer).
    pub stock_on: &'static [(&'static str, &'static str)],
    /// The row may leave a shim stuck: it gets a container (and shim) of its own, and each
    /// request [`HANG_TIMEOUT`].
    pub isolated: bool,
    /// sluice's answer where it differs on purpose, and why.
    pub sluice: Option<(&'static str, &'static str)>,
    run: fn(&Ctx, &str) -> String,
}

impl Row {
    /// What the stock shim of containerd `line` must answer.
    pub fn stock_answer(&self, line: &str) -> &'static str {
        let of = |want: &str| {
            self.stock_on
                .iter()
                .find(|(l, _)| *l == want)
                .map(|(_, a)| *a)
        };
        // An upstream 2.N release answers as the 2.x row says unless it has a row of its own
        // (2.4.2's stock shim answers every 2.x row alike).
        of(line)
            .or_else(|| line.starts_with("2.").then(|| of("2.x")).flatten())
            .unwrap_or(self.stock)
    }

    /// What sluice must answer.
    pub fn sluice_answer(&self) -> &'static str {
        self.sluice.map(|(a, _)| a).unwrap_or(self.stock)
    }

    pub fn name(&self) -> String {
        format!("{} {} {}", self.request, self.field, self.case)
    }
}

/// An RPC's answer: the response, or the status code's name and message.
type Reply<T> = Result<T, (String, String)>;

fn code<T>(r: &Reply<T>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err((c, _)) => c.clone(),
    }
}

/// The code, and whether the message says `needle`.
fn code_saying<T>(r: &Reply<T>, needle: &str) -> String {
    match r {
        Err((c, m)) if m.contains(needle) => format!("{c} ({needle})"),
        Err((c, m)) => format!("{c} (message: {m})"),
        Ok(_) => "OK".into(),
    }
}

/// The shim of one container, spoken to directly.
struct Ctx<'a> {
    env: &'a TestEnv,
    address: String,
    timeout: Duration,
    service: &'static str,
    id: String,
    fifo_dir: PathBuf,
}

impl<'a> Ctx<'a> {
    fn new(env: &'a TestEnv, id: &str, timeout: Duration) -> Ctx<'a> {
        let fifo_dir = env.dir.join("sweep-fifos");
        std::fs::create_dir_all(&fifo_dir).expect("mkdir sweep-fifos");
        Ctx {
            env,
            address: containers::shim_address(env, id),
            timeout,
            service: cells::task_service(env, id),
            id: id.to_string(),
            fifo_dir,
        }
    }

    fn rpc<Q: Message, R: Message>(&self, method: &str, req: &Q) -> Reply<R> {
        let mut r = ttrpc::Request::new();
        r.service = self.service.to_string();
        r.method = method.to_string();
        r.payload = req.write_to_bytes().expect("encode request");
        r.timeout_nano = self.timeout.as_nanos() as i64;
        // A connection per request: one that timed out is of no further use.
        let client = match Client::connect(&self.address) {
            Ok(c) => c,
            Err(e) => return Err(("CONNECT".into(), format!("{e:?}"))),
        };
        match client.request(r) {
            Ok(resp) => Ok(R::parse_from_bytes(&resp.payload)
                .unwrap_or_else(|e| panic!("{method}: undecodable response: {e}"))),
            Err(ttrpc::Error::RpcStatus(s)) => {
                Err((format!("{:?}", s.code()), s.message().to_string()))
            }
            Err(e) if format!("{e:?}").contains("timeout") => Err((
                "NO_ANSWER".into(),
                format!("none within {:?}", self.timeout),
            )),
            Err(e) => Err(("TRANSPORT".into(), format!("{e:?}"))),
        }
    }

    fn exec(
        &self,
        exec_id: &str,
        spec: Option<Vec<u8>>,
        terminal: bool,
        io: &Stdio,
    ) -> Reply<Empty> {
        let mut r = ExecProcessRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        r.terminal = terminal;
        r.stdin = io.stdin.clone();
        r.stdout = io.stdout.clone();
        r.stderr = io.stderr.clone();
        if let Some(spec) = spec {
            let mut any = Any::new();
            any.type_url = PROCESS_URL.into();
            any.value = spec;
            r.spec = Some(any).into();
        }
        self.rpc("Exec", &r)
    }

    fn start(&self, exec_id: &str) -> Reply<StartResponse> {
        let mut r = StartRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        self.rpc("Start", &r)
    }

    fn wait(&self, exec_id: &str) -> Reply<WaitResponse> {
        let mut r = WaitRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        self.rpc("Wait", &r)
    }

    fn state(&self, exec_id: &str) -> Reply<StateResponse> {
        let mut r = StateRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        self.rpc("State", &r)
    }

    fn kill(&self, exec_id: &str, signal: u32) -> Reply<Empty> {
        let mut r = KillRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        r.signal = signal;
        self.rpc("Kill", &r)
    }

    fn delete(&self, exec_id: &str) -> Reply<DeleteResponse> {
        let mut r = DeleteRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        self.rpc("Delete", &r)
    }

    fn resize(&self, exec_id: &str, width: u32, height: u32) -> Reply<Empty> {
        let mut r = ResizePtyRequest::new();
        r.id = self.id.clone();
        r.exec_id = exec_id.into();
        r.width = width;
        r.height = height;
        self.rpc("ResizePty", &r)
    }

    /// `STATUS pid=<0|set> exit=N` of a process.
    fn status(&self, exec_id: &str) -> String {
        match self.state(exec_id) {
            Ok(s) => {
                let status = match s.status.enum_value() {
                    Ok(v) => format!("{v:?}"),
                    Err(n) => format!("status {n}"),
                };
                let pid = if s.pid == 0 { "0" } else { "set" };
                format!("{status} pid={pid} exit={}", s.exit_status)
            }
            Err((c, _)) => format!("State {c}"),
        }
    }

    /// FIFOs for an exec: `stdin` data (written and kept open), and stdout/stderr read in the
    /// background.
    fn stdio(&self, exec_id: &str, stdin: Option<&[u8]>, stdout: bool, stderr: bool) -> Stdio {
        let dir = self.fifo_dir.join(exec_id);
        std::fs::create_dir_all(&dir).expect("mkdir exec fifo dir");
        let fifo = |name: &str| {
            let p = dir.join(name);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .unwrap_or_else(|e| panic!("mkfifo {}: {e}", p.display()));
            p
        };
        let mut io = Stdio::default();
        if let Some(data) = stdin {
            let p = fifo("stdin");
            // Read-write: never blocks, and the data waits in the FIFO for the shim.
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .expect("open stdin fifo");
            f.write_all(data).expect("write stdin fifo");
            io.stdin = p.display().to_string();
            io.stdin_file = Some(f);
        }
        if stdout {
            let p = fifo("stdout");
            io.out = Some(FifoReader::start(&p));
            io.stdout = p.display().to_string();
        }
        if stderr {
            let p = fifo("stderr");
            io.err = Some(FifoReader::start(&p));
            io.stderr = p.display().to_string();
        }
        io
    }

    /// Exec, Start, Wait, the output, Delete: `Exec OK, Start OK, exit N, stdout "..."`, or the
    /// answer up to the first request that failed (then `State` of the exec after it).
    fn run_exec(&self, exec_id: &str, spec: Vec<u8>, terminal: bool, io: Stdio) -> String {
        let mut answer = vec![];
        let e = self.exec(exec_id, Some(spec), terminal, &io);
        answer.push(format!("Exec {}", code_saying(&e, "")));
        if e.is_err() {
            return answer.join(", ");
        }
        let s = self.start(exec_id);
        if let Err((c, m)) = &s {
            answer.push(format!("Start {c} ({})", runc_words(m)));
            answer.push(format!("then {}", self.status(exec_id)));
            let _ = self.delete(exec_id);
            return answer.join(", ");
        }
        answer.push("Start OK".into());
        match self.wait(exec_id) {
            Ok(w) => answer.push(format!("exit {}", w.exit_status)),
            Err((c, m)) => answer.push(format!("Wait {c}: {m}")),
        }
        if let Some(out) = io.out {
            answer.push(format!("stdout {:?}", normalize(&out.finish())));
        }
        if let Some(err) = io.err {
            let text = normalize(&err.finish());
            if !text.is_empty() {
                answer.push(format!("stderr {text:?}"));
            }
        }
        drop(io.stdin_file);
        let _ = self.delete(exec_id);
        answer.join(", ")
    }

    /// Exec and Start of a long-running exec; panics unless both succeed.
    fn start_sleeper(&self, exec_id: &str) {
        let io = Stdio::default();
        self.exec(exec_id, Some(process(&["sleep", "1000"])), false, &io)
            .unwrap_or_else(|e| panic!("[{}] Exec {exec_id}: {e:?}", self.env.runtime));
        self.start(exec_id)
            .unwrap_or_else(|e| panic!("[{}] Start {exec_id}: {e:?}", self.env.runtime));
    }

    /// An exec that ran `true` and exited (not deleted).
    fn exited_exec(&self, exec_id: &str) {
        let io = Stdio::default();
        self.exec(exec_id, Some(process(&["true"])), false, &io)
            .unwrap_or_else(|e| panic!("[{}] Exec {exec_id}: {e:?}", self.env.runtime));
        self.start(exec_id)
            .unwrap_or_else(|e| panic!("[{}] Start {exec_id}: {e:?}", self.env.runtime));
        self.wait(exec_id)
            .unwrap_or_else(|e| panic!("[{}] Wait {exec_id}: {e:?}", self.env.runtime));
    }

    /// An exec added and never started.
    fn created_exec(&self, exec_id: &str) {
        self.exec(exec_id, Some(process(&["true"])), false, &Stdio::default())
            .unwrap_or_else(|e| panic!("[{}] Exec {exec_id}: {e:?}", self.env.runtime));
    }

    /// SIGKILL, Wait and Delete of a running exec.
    fn end(&self, exec_id: &str) {
        let _ = self.kill(exec_id, libc::SIGKILL as u32);
        let _ = self.wait(exec_id);
        let _ = self.delete(exec_id);
    }
}

/// runc's complaint in a failed start, without the parts that name paths, pids or the shim.
fn runc_words(msg: &str) -> String {
    for known in [
        "args must not be empty",
        "Cwd property must not be empty",
        "cannot start a running process",
        "cannot start a stopped process",
    ] {
        if msg.contains(known) {
            return known.into();
        }
    }
    format!("message: {msg}")
}

/// Terminal output as plain lines: `\r\n` → `\n`, trimmed, pty numbers as `N`.
fn normalize(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes).replace("\r\n", "\n");
    let text = text.trim();
    match text.strip_prefix("/dev/pts/") {
        Some(n) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => "/dev/pts/N".into(),
        _ => text.to_string(),
    }
}

/// An exec's stdio paths, and our ends of its FIFOs.
#[derive(Default)]
struct Stdio {
    stdin: String,
    stdout: String,
    stderr: String,
    stdin_file: Option<File>,
    out: Option<FifoReader>,
    err: Option<FifoReader>,
}

/// The read end of a FIFO, opened before the shim opens its write end, read in the background
/// until the writer has come and gone.
struct FifoReader {
    buf: Arc<Mutex<Vec<u8>>>,
    done: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FifoReader {
    fn start(path: &Path) -> FifoReader {
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        let buf = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (b, d, s) = (buf.clone(), done.clone(), stop.clone());
        thread::spawn(move || {
            // Before any writer and after the last one, read says 0; in between, EAGAIN.
            let mut writer_seen = false;
            let mut chunk = [0u8; 4096];
            while !s.load(Ordering::SeqCst) {
                match f.read(&mut chunk) {
                    Ok(0) if writer_seen => break,
                    Ok(0) => thread::sleep(Duration::from_millis(10)),
                    Ok(n) => {
                        writer_seen = true;
                        b.lock().expect("fifo buf").extend_from_slice(&chunk[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        writer_seen = true;
                        thread::sleep(Duration::from_millis(10));
                    }
                    Err(_) => break,
                }
            }
            d.store(true, Ordering::SeqCst);
        });
        FifoReader { buf, done, stop }
    }

    /// What arrived, once the writer left or [`OUTPUT_GRACE`] passed.
    fn finish(self) -> Vec<u8> {
        let _ = poll(OUTPUT_GRACE, || {
            self.done.load(Ordering::SeqCst).then_some(())
        });
        self.stop.store(true, Ordering::SeqCst);
        self.buf.lock().expect("fifo buf").clone()
    }
}

/// An OCI process spec running `args` as root in `/`, without a terminal.
fn process(args: &[&str]) -> Vec<u8> {
    serde_json::json!({
        "args": args,
        "env": ["PATH=/bin"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
        "terminal": false,
    })
    .to_string()
    .into_bytes()
}

/// `process(args)` with one field changed (`None`: removed).
fn process_with(args: &[&str], field: &str, value: Option<serde_json::Value>) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(&process(args)).expect("json");
    let obj = v.as_object_mut().expect("object");
    match value {
        Some(x) => obj.insert(field.into(), x),
        None => obj.remove(field),
    };
    v.to_string().into_bytes()
}

// ---- the rows ---------------------------------------------------------------------------------

fn exec_terminal_over_spec(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, None, true, false);
    c.run_exec(x, process(&["tty"]), true, io)
}

fn exec_no_terminal_over_spec(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, None, true, true);
    let spec = process_with(&["tty"], "terminal", Some(true.into()));
    c.run_exec(x, spec, false, io)
}

fn exec_stdin_and_stdout(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, Some(b"abc\n"), true, true);
    c.run_exec(x, process(&["sh", "-c", "read l; echo got:$l"]), false, io)
}

fn exec_stdin_only(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, Some(b"abc\n"), false, false);
    c.run_exec(x, process(&["sh", "-c", "read l; exit ${#l}"]), false, io)
}

fn exec_stdout_only(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, None, true, false);
    c.run_exec(
        x,
        process(&["sh", "-c", "echo out; echo err >&2; exit 5"]),
        false,
        io,
    )
}

fn exec_null_io(c: &Ctx, x: &str) -> String {
    c.run_exec(
        x,
        process(&["sh", "-c", "echo out; exit 4"]),
        false,
        Stdio::default(),
    )
}

fn exec_empty_id(c: &Ctx, _x: &str) -> String {
    let e = c.exec("", Some(process(&["true"])), false, &Stdio::default());
    // The init is still what an empty exec ID names.
    format!("Exec {}, then State(\"\") {}", code(&e), c.status(""))
}

fn exec_duplicate_id(c: &Ctx, x: &str) -> String {
    c.created_exec(x);
    let e = c.exec(x, Some(process(&["true"])), false, &Stdio::default());
    let _ = c.delete(x);
    format!("Exec {}", code(&e))
}

fn exec_no_args(c: &Ctx, x: &str) -> String {
    let spec = process_with(&[], "args", None);
    c.run_exec(x, spec, false, Stdio::default())
}

fn exec_no_cwd(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, None, true, true);
    c.run_exec(x, process_with(&["pwd"], "cwd", None), false, io)
}

fn exec_no_user(c: &Ctx, x: &str) -> String {
    let io = c.stdio(x, None, true, true);
    c.run_exec(x, process_with(&["id", "-u"], "user", None), false, io)
}

fn exec_spec_not_json(c: &Ctx, x: &str) -> String {
    let e = c.exec(x, Some(b"not json".to_vec()), false, &Stdio::default());
    let mut a = format!("Exec {}", code(&e));
    if e.is_ok() {
        let s = c.start(x);
        a.push_str(&format!(", Start {}", code(&s)));
        let _ = c.delete(x);
    }
    a
}

fn kill_exited_exec(c: &Ctx, x: &str) -> String {
    c.exited_exec(x);
    let k = c.kill(x, libc::SIGKILL as u32);
    let _ = c.delete(x);
    format!("Kill {}", code(&k))
}

fn kill_created_exec(c: &Ctx, x: &str) -> String {
    c.created_exec(x);
    let k = c.kill(x, libc::SIGKILL as u32);
    let a = format!("Kill {}, then {}", code(&k), c.status(x));
    let _ = c.delete(x);
    a
}

fn kill_unknown_exec(c: &Ctx, x: &str) -> String {
    format!("Kill {}", code(&c.kill(x, libc::SIGKILL as u32)))
}

fn start_init_again(c: &Ctx, _x: &str) -> String {
    let s = c.start("");
    format!("Start {}, then {}", code(&s), c.status(""))
}

fn start_running_exec_again(c: &Ctx, x: &str) -> String {
    c.start_sleeper(x);
    let s = c.start(x);
    let a = format!("Start {}, then {}", code(&s), c.status(x));
    c.end(x);
    a
}

fn start_exited_exec(c: &Ctx, x: &str) -> String {
    c.exited_exec(x);
    let s = c.start(x);
    let a = format!("Start {}, then {}", code(&s), c.status(x));
    let _ = c.delete(x);
    a
}

fn start_unknown_exec(c: &Ctx, x: &str) -> String {
    format!("Start {}", code(&c.start(x)))
}

fn state_created_exec(c: &Ctx, x: &str) -> String {
    c.created_exec(x);
    let a = format!("State {}", c.status(x));
    let _ = c.delete(x);
    a
}

fn state_exited_exec(c: &Ctx, x: &str) -> String {
    c.exited_exec(x);
    let a = format!("State {}", c.status(x));
    let _ = c.delete(x);
    a
}

fn state_unknown_exec(c: &Ctx, x: &str) -> String {
    c.status(x)
}

fn wait_unknown_exec(c: &Ctx, x: &str) -> String {
    format!("Wait {}", code(&c.wait(x)))
}

fn wait_exited_exec(c: &Ctx, x: &str) -> String {
    c.exited_exec(x);
    let w = c.wait(x);
    let _ = c.delete(x);
    match w {
        Ok(w) => format!("Wait OK exit={}", w.exit_status),
        Err((code, _)) => format!("Wait {code}"),
    }
}

fn resize_init_without_terminal(c: &Ctx, _x: &str) -> String {
    let r = c.resize("", 100, 40);
    format!("ResizePty {}, then {}", code(&r), c.status(""))
}

fn resize_running_exec_without_terminal(c: &Ctx, x: &str) -> String {
    resize_running_exec(c, x, false, &["sh", "-c", "sleep 1; echo still-here"])
}

/// Starts exec `x` (`argv`, on a terminal or not), resizes it while it runs, and reports the
/// answers, its exit and what it printed.
fn resize_running_exec(c: &Ctx, x: &str, terminal: bool, argv: &[&str]) -> String {
    let io = c.stdio(x, None, true, !terminal);
    let e = c.exec(x, Some(process(argv)), terminal, &io);
    let s = c.start(x);
    let r = c.resize(x, 100, 40);
    let w = c.wait(x);
    let out = io.out.map(|o| normalize(&o.finish())).unwrap_or_default();
    let _ = c.delete(x);
    format!(
        "Exec {}, Start {}, ResizePty {}, exit {}, stdout {out:?}",
        code(&e),
        code(&s),
        code(&r),
        w.map(|w| w.exit_status.to_string())
            .unwrap_or_else(|(c, _)| c),
    )
}

fn resize_created_exec(c: &Ctx, x: &str) -> String {
    c.created_exec(x);
    let r = c.resize(x, 100, 40);
    let a = format!("ResizePty {}, then {}", code(&r), c.status(x));
    let _ = c.delete(x);
    a
}

fn resize_exited_exec(c: &Ctx, x: &str) -> String {
    c.exited_exec(x);
    let r = c.resize(x, 100, 40);
    let _ = c.delete(x);
    format!("ResizePty {}", code(&r))
}

fn resize_terminal_exec(c: &Ctx, x: &str) -> String {
    // Prints the size once it has changed from the console's initial one.
    let script = "for i in $(seq 50); do s=$(stty size 2>/dev/null); [ \"$s\" = '40 100' ] && break; sleep 0.1; done; echo $s";
    resize_running_exec(c, x, true, &["sh", "-c", script])
}

fn resize_unknown_exec(c: &Ctx, x: &str) -> String {
    format!("ResizePty {}", code(&c.resize(x, 100, 40)))
}

fn delete_running_exec(c: &Ctx, x: &str) -> String {
    c.start_sleeper(x);
    let d = c.delete(x);
    let a = format!("Delete {}, then {}", code(&d), c.status(x));
    c.end(x);
    a
}

fn delete_unknown_exec(c: &Ctx, x: &str) -> String {
    format!("Delete {}", code(&c.delete(x)))
}

fn close_io_without_stdin(c: &Ctx, x: &str) -> String {
    c.start_sleeper(x);
    let mut r = CloseIORequest::new();
    r.id = c.id.clone();
    r.exec_id = x.into();
    r.stdin = true;
    let a: Reply<Empty> = c.rpc("CloseIO", &r);
    let a = format!("CloseIO {}, then {}", code(&a), c.status(x));
    c.end(x);
    a
}

fn resume_running(c: &Ctx, _x: &str) -> String {
    let mut r = ResumeRequest::new();
    r.id = c.id.clone();
    let a: Reply<Empty> = c.rpc("Resume", &r);
    format!("Resume {}, then {}", code(&a), c.status(""))
}

fn update(c: &Ctx, resources: Option<&[u8]>) -> String {
    let mut r = UpdateTaskRequest::new();
    r.id = c.id.clone();
    if let Some(v) = resources {
        let mut any = Any::new();
        any.type_url = containers::LINUX_RESOURCES_URL.into();
        any.value = v.to_vec();
        r.resources = Some(any).into();
    }
    let a: Reply<Empty> = c.rpc("Update", &r);
    format!("Update {}, then {}", code(&a), c.status(""))
}

fn update_empty_object(c: &Ctx, _x: &str) -> String {
    update(c, Some(b"{}"))
}

fn update_empty_value(c: &Ctx, _x: &str) -> String {
    update(c, Some(b""))
}

fn checkpoint(c: &Ctx, path: &str) -> String {
    let mut r = CheckpointTaskRequest::new();
    r.id = c.id.clone();
    r.path = path.into();
    let a: Reply<Empty> = c.rpc("Checkpoint", &r);
    format!("Checkpoint {}, then {}", code(&a), c.status(""))
}

fn checkpoint_no_options(c: &Ctx, x: &str) -> String {
    let path = c.env.dir.join(format!("checkpoint-{x}"));
    checkpoint(c, &path.display().to_string())
}

fn checkpoint_no_path(c: &Ctx, _x: &str) -> String {
    checkpoint(c, "")
}

/// Why sluice's exec whose `runc exec` failed is STOPPED with 255 where the stock shim's stays
/// CREATED.
const EXEC_NEVER_RAN: &str = "the stock exec stays CREATED, so a Wait already sent (ctr and the Go client wait before they start) blocks until the client gives up; sluice ends it with 255 at once, as a process that could not be run";

/// The table. `stock` is what containerd 1.6's stock shim answers (1.7's and 2.x's where a
/// row says so); `sluice` only where sluice answers otherwise, with the reason.
const ROWS: &[Row] = &[
    Row {
        request: "Exec",
        field: "terminal",
        case: "true, spec's terminal false",
        stock: "Exec OK, Start OK, exit 0, stdout \"/dev/pts/N\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_terminal_over_spec,
    },
    Row {
        request: "Exec",
        field: "terminal",
        case: "false, spec's terminal true",
        stock: "Exec OK, Start OK, exit 1, stdout \"not a tty\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_no_terminal_over_spec,
    },
    Row {
        request: "Exec",
        field: "stdin",
        case: "with stdout and stderr",
        stock: "Exec OK, Start OK, exit 0, stdout \"got:abc\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_stdin_and_stdout,
    },
    Row {
        request: "Exec",
        field: "stdin",
        case: "without stdout or stderr",
        stock: "Exec OK, Start NO_ANSWER (message: none within 6s), then State NO_ANSWER; then Kill of the init NO_ANSWER, task STOPPED",
        sluice: Some((
            "Exec OK, Start OK, exit 3; then Kill of the init OK, task STOPPED",
            "stock bug: with no stdout or stderr pipe go-runc reads runc's output to EOF, which the exec inherits, before the stdin copy starts: the exec waits for its stdin forever and the shim with it (issue 4434's shape)",
        )),
        // 1.6's stock shim answers no Kill of the container either while that Start hangs;
        // 1.7's and 2.x's do.
        stock_on: &[
            ("1.7", "Exec OK, Start NO_ANSWER (message: none within 6s), then State NO_ANSWER; then Kill of the init OK, task STOPPED"),
            ("2.x", "Exec OK, Start NO_ANSWER (message: none within 6s), then State NO_ANSWER; then Kill of the init OK, task STOPPED"),
        ],
        isolated: true,
        run: exec_stdin_only,
    },
    Row {
        request: "Exec",
        field: "stderr",
        case: "empty, stdout set",
        stock: "Exec OK, Start UNKNOWN (message: failed to start io pipe copy: unable to copy pipes: containerd-shim: opening file \"\" failed: open : no such file or directory), then CREATED pid=0 exit=0",
        sluice: Some((
            "Exec OK, Start OK, exit 5, stdout \"out\"",
            "stock bug: it opens the empty stderr path after runc has started the exec, fails the Start and leaves the process running unmanaged; an empty path means no such stream everywhere else",
        )),
        stock_on: &[],
        isolated: false,
        run: exec_stdout_only,
    },
    Row {
        request: "Exec",
        field: "stdin, stdout, stderr",
        case: "all empty",
        stock: "Exec OK, Start OK, exit 4",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_null_io,
    },
    Row {
        request: "Exec",
        field: "exec_id",
        case: "empty",
        stock: "Exec OK, then State(\"\") RUNNING pid=set exit=0",
        sluice: Some((
            "Exec INVALID_ARGUMENT, then State(\"\") RUNNING pid=set exit=0",
            "stock bug: it adds an exec no later request can name (an empty exec ID means the init in Start, State, Kill, Wait and Delete)",
        )),
        stock_on: &[],
        isolated: false,
        run: exec_empty_id,
    },
    Row {
        request: "Exec",
        field: "exec_id",
        case: "already added",
        stock: "Exec ALREADY_EXISTS",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_duplicate_id,
    },
    Row {
        request: "Exec",
        field: "spec.args",
        case: "absent",
        stock: "Exec OK, Start UNKNOWN (args must not be empty), then CREATED pid=0 exit=0",
        sluice: Some((
            "Exec OK, Start UNKNOWN (args must not be empty), then STOPPED pid=0 exit=255",
            EXEC_NEVER_RAN,
        )),
        stock_on: &[],
        isolated: false,
        run: exec_no_args,
    },
    Row {
        request: "Exec",
        field: "spec.cwd",
        case: "absent",
        stock: "Exec OK, Start UNKNOWN (Cwd property must not be empty), then CREATED pid=0 exit=0",
        sluice: Some((
            "Exec OK, Start UNKNOWN (Cwd property must not be empty), then STOPPED pid=0 exit=255",
            EXEC_NEVER_RAN,
        )),
        stock_on: &[],
        isolated: false,
        run: exec_no_cwd,
    },
    Row {
        request: "Exec",
        field: "spec.user",
        case: "absent",
        stock: "Exec OK, Start OK, exit 0, stdout \"0\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: exec_no_user,
    },
    Row {
        request: "Exec",
        field: "spec",
        case: "not JSON",
        stock: "Exec UNKNOWN",
        sluice: Some((
            "Exec INVALID_ARGUMENT",
            "both refuse at Exec; the stock shim passes on a bare JSON error (UNKNOWN), sluice names the kind",
        )),
        stock_on: &[],
        isolated: false,
        run: exec_spec_not_json,
    },
    Row {
        request: "Kill",
        field: "exec_id",
        case: "an exec that exited",
        stock: "Kill NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: kill_exited_exec,
    },
    Row {
        request: "Kill",
        field: "exec_id",
        case: "an exec never started",
        stock: "Kill FAILED_PRECONDITION, then CREATED pid=0 exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: kill_created_exec,
    },
    Row {
        request: "Kill",
        field: "exec_id",
        case: "unknown",
        stock: "Kill NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: kill_unknown_exec,
    },
    Row {
        request: "Start",
        field: "exec_id",
        case: "empty: the running init, again",
        stock: "Start UNKNOWN, then RUNNING pid=set exit=0",
        sluice: Some((
            "Start FAILED_PRECONDITION, then RUNNING pid=set exit=0",
            "the stock shim's refusal is a bare Go error, so UNKNOWN; sluice gives every state refusal its kind (FAILED_PRECONDITION), as src/error.rs explains",
        )),
        stock_on: &[],
        isolated: false,
        run: start_init_again,
    },
    Row {
        request: "Start",
        field: "exec_id",
        case: "a running exec, again",
        stock: "Start UNKNOWN, then RUNNING pid=set exit=0; then Kill of the init OK, task STOPPED",
        sluice: Some((
            "Start FAILED_PRECONDITION, then RUNNING pid=set exit=0; then Kill of the init OK, task STOPPED",
            "the stock shim's refusal is a bare Go error (UNKNOWN), and 1.7's and 2.x's then register the running exec a second time, count its exit twice and panic at the init's exit (the task vanishes); sluice refuses with FAILED_PRECONDITION and keeps its count",
        )),
        // The stock 1.7/2.x shim counts the exec's exit twice; at the init's exit its count of
        // running execs is negative and it panics (makechan: size out of range).
        stock_on: &[
            ("1.7", "Start UNKNOWN, then RUNNING pid=set exit=0; then Kill of the init OK or lost with the shim, task gone"),
            ("2.x", "Start UNKNOWN, then RUNNING pid=set exit=0; then Kill of the init OK or lost with the shim, task gone"),
        ],
        isolated: true,
        run: start_running_exec_again,
    },
    Row {
        request: "Start",
        field: "exec_id",
        case: "an exec that exited",
        stock: "Start UNKNOWN, then STOPPED pid=set exit=0",
        sluice: Some((
            "Start FAILED_PRECONDITION, then STOPPED pid=set exit=0",
            "the stock shim's refusal is a bare Go error, so UNKNOWN; sluice gives every state refusal its kind (FAILED_PRECONDITION), as src/error.rs explains",
        )),
        stock_on: &[],
        isolated: false,
        run: start_exited_exec,
    },
    Row {
        request: "Start",
        field: "exec_id",
        case: "unknown",
        stock: "Start NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: start_unknown_exec,
    },
    Row {
        request: "State",
        field: "exec_id",
        case: "an exec never started",
        stock: "State CREATED pid=0 exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: state_created_exec,
    },
    Row {
        request: "State",
        field: "exec_id",
        case: "an exec that exited",
        stock: "State STOPPED pid=set exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: state_exited_exec,
    },
    Row {
        request: "State",
        field: "exec_id",
        case: "unknown",
        stock: "State NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: state_unknown_exec,
    },
    Row {
        request: "Wait",
        field: "exec_id",
        case: "unknown",
        stock: "Wait NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: wait_unknown_exec,
    },
    Row {
        request: "Wait",
        field: "exec_id",
        case: "an exec that exited",
        stock: "Wait OK exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: wait_exited_exec,
    },
    Row {
        request: "ResizePty",
        field: "exec_id",
        case: "empty: the init, which has no terminal",
        stock: "ResizePty OK, then RUNNING pid=set exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: resize_init_without_terminal,
    },
    Row {
        request: "ResizePty",
        field: "exec_id",
        case: "a running exec without a terminal",
        stock: "Exec OK, Start OK, ResizePty OK, exit 0, stdout \"still-here\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: resize_running_exec_without_terminal,
    },
    Row {
        request: "ResizePty",
        field: "exec_id",
        case: "an exec never started",
        stock: "ResizePty OK, then CREATED pid=0 exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: resize_created_exec,
    },
    Row {
        request: "ResizePty",
        field: "exec_id",
        case: "an exec that exited",
        stock: "ResizePty UNKNOWN",
        sluice: Some((
            "ResizePty FAILED_PRECONDITION",
            "the stock shim's refusal is a bare Go error, so UNKNOWN; sluice gives every state refusal its kind (FAILED_PRECONDITION), as src/error.rs explains",
        )),
        stock_on: &[],
        isolated: false,
        run: resize_exited_exec,
    },
    Row {
        request: "ResizePty",
        field: "width, height",
        case: "an exec with a terminal",
        stock: "Exec OK, Start OK, ResizePty OK, exit 0, stdout \"40 100\"",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: resize_terminal_exec,
    },
    Row {
        request: "ResizePty",
        field: "exec_id",
        case: "unknown",
        stock: "ResizePty NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: resize_unknown_exec,
    },
    Row {
        request: "Delete",
        field: "exec_id",
        case: "a running exec",
        stock: "Delete UNKNOWN, then RUNNING pid=set exit=0",
        sluice: Some((
            "Delete FAILED_PRECONDITION, then RUNNING pid=set exit=0",
            "the stock shim's refusal is a bare Go error, so UNKNOWN; sluice gives every state refusal its kind (FAILED_PRECONDITION), as src/error.rs explains",
        )),
        stock_on: &[],
        isolated: false,
        run: delete_running_exec,
    },
    Row {
        request: "Delete",
        field: "exec_id",
        case: "unknown",
        stock: "Delete NOT_FOUND",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: delete_unknown_exec,
    },
    Row {
        request: "CloseIO",
        field: "stdin",
        case: "a process without stdin",
        stock: "CloseIO OK, then RUNNING pid=set exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: close_io_without_stdin,
    },
    Row {
        request: "Resume",
        field: "id",
        case: "a running container",
        stock: "Resume UNKNOWN, then RUNNING pid=set exit=0",
        sluice: Some((
            "Resume FAILED_PRECONDITION, then RUNNING pid=set exit=0",
            "the stock shim's refusal is a bare Go error, so UNKNOWN; sluice gives every state refusal its kind (FAILED_PRECONDITION), as src/error.rs explains",
        )),
        stock_on: &[],
        isolated: false,
        run: resume_running,
    },
    Row {
        request: "Update",
        field: "resources",
        case: "{} (nothing to change)",
        stock: "Update OK, then RUNNING pid=set exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: update_empty_object,
    },
    Row {
        request: "Update",
        field: "resources",
        case: "an Any with an empty value",
        stock: "Update UNKNOWN, then RUNNING pid=set exit=0",
        sluice: Some((
            "Update INVALID_ARGUMENT, then RUNNING pid=set exit=0",
            "both refuse before runc runs; the stock shim passes on the bare JSON error (UNKNOWN), sluice names the kind",
        )),
        stock_on: &[],
        isolated: false,
        run: update_empty_value,
    },
    Row {
        request: "Checkpoint",
        field: "options",
        case: "absent",
        stock: "Checkpoint UNKNOWN, then RUNNING pid=set exit=0",
        sluice: None,
        stock_on: &[],
        isolated: false,
        run: checkpoint_no_options,
    },
    Row {
        request: "Checkpoint",
        field: "path",
        case: "empty, options absent",
        stock: "Checkpoint UNKNOWN, then RUNNING pid=set exit=0",
        sluice: Some((
            "Checkpoint INVALID_ARGUMENT, then RUNNING pid=set exit=0",
            "the stock shim runs runc checkpoint with no --image-path (runc then picks a directory of its own; here it fails for want of CRIU); sluice refuses a checkpoint with nowhere to go before runc runs",
        )),
        stock_on: &[],
        isolated: false,
        run: checkpoint_no_path,
    },
];

/// Ends an isolated row's container: Kill of its init through the shim, and what containerd
/// then shows of the task (`STOPPED`, or `gone` when the shim died); returns that. If the shim
/// did not answer, every process of the container is SIGKILLed through its cgroup (the stuck
/// stock shim waits for an exec that this ends). Then the task and container are deleted.
fn end_isolated(env: &TestEnv, ctx: &Ctx, id: &str) -> String {
    let kill = ctx.kill("", libc::SIGKILL as u32);
    let settled = |env: &TestEnv| {
        poll(Duration::from_secs(20), || match env.task(id) {
            None => Some("task gone"),
            Some(t) if t.status == "STOPPED" => Some("task STOPPED"),
            Some(_) => None,
        })
    };
    let mut what = settled(env);
    if what.is_none() {
        let procs = cgroups::cgroup_dir(env, "pids", id).join("cgroup.procs");
        let text = std::fs::read_to_string(&procs).unwrap_or_default();
        for pid in text.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: kill(2) has no memory effects.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        what = settled(env);
    }
    let what = what.unwrap_or_else(|| panic!("[{}] task {id} never stopped", env.runtime));
    if env.task(id).is_some() {
        env.task_delete(id)
            .expect_success(&format!("[{}] ctr task delete {id}", env.runtime));
    }
    env.container_delete(id)
        .expect_success(&format!("[{}] ctr container delete {id}", env.runtime));
    // A shim that dies of the init's exit (the stock 1.7/2.x shim, in one row) may die before
    // or after its reply to the Kill leaves: the same outcome, told apart by a race.
    let kill = match (code(&kill), what) {
        (c, "task gone") if c == "OK" || c == "TRANSPORT" => "OK or lost with the shim".into(),
        (c, _) => c,
    };
    format!("then Kill of the init {kill}, {what}")
}

/// Runs `rows` (every row whose name contains one of `filters`; all for none) against `rt` in a
/// containerd of its own; returns each row's answer, in order.
fn answers(rt: Runtime, label: &str, filters: &[&str]) -> Vec<(&'static Row, String)> {
    let env = TestEnv::start(label, rt);
    env.run_detached("c1", &[], &["sleep", "100000"]);
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    let ctx = Ctx::new(&env, "c1", RPC_TIMEOUT);
    let mut out = Vec::new();
    for (i, row) in ROWS.iter().enumerate() {
        if !filters.is_empty() && !filters.iter().any(|f| row.name().contains(f)) {
            continue;
        }
        let exec_id = format!("x{i:02}");
        let answer = if row.isolated {
            // Its own container, so its own shim: a stuck one leaves the other rows alone, and
            // is unstuck when its container is killed.
            let id = format!("c-{exec_id}");
            env.run_detached(&id, &[], &["sleep", "100000"]);
            env.wait_task_status(&id, "RUNNING", Duration::from_secs(30));
            let ctx = Ctx::new(&env, &id, HANG_TIMEOUT);
            let answer = (row.run)(&ctx, &exec_id);
            format!("{answer}; {}", end_isolated(&env, &ctx, &id))
        } else {
            (row.run)(&ctx, &exec_id)
        };
        eprintln!(
            "SWEEP|{rt}|{}|{}|{}|{answer}",
            row.request, row.field, row.case
        );
        out.push((row, answer));
    }
    containers::kill_and_delete(&env, "c1");
    out
}

/// Runs the rows `filters` selects against the stock shim, then sluice, and fails on every
/// answer that is not the table's.
fn run(label: &str, filters: &[&str]) {
    sluice_integration::system::sluice_shim_bin();
    let line = sluice_integration::versions::selected_line().label();
    let mut wrong = Vec::new();
    for rt in [Runtime::RuncV2, Runtime::Sluice] {
        let tag = match rt {
            Runtime::RuncV2 => "stock",
            Runtime::Sluice => "sluice",
        };
        let got = answers(rt, &format!("{label}-{tag}"), filters);
        assert!(!got.is_empty(), "no row matches {filters:?}");
        for (row, answer) in got {
            let want = match rt {
                Runtime::RuncV2 => row.stock_answer(line),
                Runtime::Sluice => row.sluice_answer(),
            };
            if answer != want {
                wrong.push(format!(
                    "[{rt}, containerd {line}] {}:\n    got:  {answer}\n    want: {want}",
                    row.name()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} answer(s) differ from the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// An exec whose request asks for a terminal while its spec (copied from the container's) says
/// none, as the Go client's `task.Exec` with a terminal IO sends it, gets a tty; and the other
/// way round gets none: the request's flag wins, under both shims.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn exec_terminal_flag_overrides_the_spec() {
    run("sweep-tty", &["Exec terminal"]);
}

/// ResizePty of a process without a terminal (init, a running or a never-started exec) is OK
/// and changes nothing; a terminal's resize reaches it.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn resize_without_a_terminal_is_a_no_op() {
    run("sweep-resize", &["ResizePty"]);
}

/// Every row of the table, against both shims.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn every_row_answers_as_the_stock_shim() {
    run("sweep", &[]);
}
