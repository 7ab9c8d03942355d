//! The shim's own share of a task's life (issue 14): for each phase, the time from the request
//! to the reply, less the runc calls made inside it.
//!
//! This module plays containerd: it runs `shim start` itself (bootstrap), then sends Create,
//! Start, Exec + Start + Delete of an exec, and Kill + Delete of the task straight to the
//! shim's socket, timing each call at the client (a socket round trip, tens of µs, is in it).
//! runc is `timed-runc` (`src/bin/timed-runc.rs`), which logs each call's verb and pid; the
//! kernel's sched tracepoints ([`crate::lifetimes`]) say when that process finished its exec
//! and when it exited, and every runc call inside a phase's window is subtracted from it. So
//! the shim's own share holds its spawning of runc (fork and exec) and its noticing runc's
//! exit, and runc's holds the wrapper. Without tracefs the wrapper's own window is used,
//! plus a calibrated estimate of its start-up (a few hundred µs less exact per call). The same
//! steps run for either shim, so the shares compare like with like. Stdio is empty
//! (`/dev/null`) throughout: the IO set-up of FIFOs is not in these figures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    ConnectRequest, CreateTaskRequest, DeleteRequest, ExecProcessRequest, KillRequest,
    ShutdownRequest, StartRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageFull};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;
use serde_json::Value;

use crate::harness::{TestEnv, CTR_TIMEOUT};
use crate::lifetimes::{now_ns, Lifetimes};
use crate::Runtime;

const PROCESS_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The phases measured, in the order they happen. `call` is not a phase of a task's life but
/// the floor under each of them: one request that does nothing (`Connect`), there and back,
/// the transport and dispatch that every phase pays once per call (exec makes three).
pub const PHASES: [&str; 6] = ["bootstrap", "call", "create", "start", "exec", "delete"];

/// How many `Connect`s the `call` figure is the mean of.
const CALLS: u32 = 10;

/// One phase of one round: its wall time at the client and the runc time inside it.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub name: &'static str,
    pub wall: Duration,
    pub runc: Duration,
    /// The runc verbs called inside the phase, in order.
    pub verbs: Vec<String>,
}

impl Phase {
    /// The shim's own share: wall time less runc's (the wrapper's overhead included in runc's).
    pub fn own(&self) -> Duration {
        self.wall.saturating_sub(self.runc)
    }
}

/// One runc call as `timed-runc` logged it.
struct Call {
    /// The wrapper's window (CLOCK_MONOTONIC ns): after its own start-up, until runc ended.
    start: u64,
    end: u64,
    pid: i32,
    verb: String,
}

/// Where one round's runc calls are logged, with `timed-runc` installed as `runc`.
pub struct TimedRunc {
    pub dir: PathBuf,
    /// The kernel's view of each call (from the wrapper's exec to its exit), when tracefs can
    /// be used: exact, nothing to calibrate.
    lifetimes: Option<Lifetimes>,
    /// Without it: what the wrapper itself adds to a call outside the window it logs (its own
    /// exec and exit), measured by [`TimedRunc::calibrate`]; subtracted once per runc call.
    pub overhead: Duration,
    /// How runc's calls are timed, for the report: `kernel` or `wrapper`.
    pub clock: &'static str,
}

impl TimedRunc {
    /// Installs `timed-runc` (found beside `fault-runc`) as `<env dir>/timed/runc`.
    pub fn install(env: &TestEnv) -> Result<TimedRunc, String> {
        let dir = env.dir.join("timed");
        fs::create_dir_all(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let fault = crate::harness::fault_runc_bin();
        let bin = fault.with_file_name("timed-runc");
        let real = crate::system::which("runc").ok_or("no runc on PATH")?;
        let dst = dir.join("runc");
        let _ = fs::remove_file(&dst);
        fs::copy(&bin, &dst).map_err(|e| format!("copy {}: {e}", bin.display()))?;
        fs::write(dir.join("real-runc"), real.display().to_string())
            .map_err(|e| format!("write real-runc: {e}"))?;
        let lifetimes = match Lifetimes::watch(&format!("sluice-share-{}", env.ns), &dst) {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("[share] runc timed by its wrapper, calibrated: {e}");
                None
            }
        };
        let mut timed = TimedRunc {
            dir,
            clock: if lifetimes.is_some() {
                "kernel"
            } else {
                "wrapper"
            },
            lifetimes,
            overhead: Duration::ZERO,
        };
        if timed.lifetimes.is_none() {
            timed.overhead = timed.calibrate()?;
        }
        Ok(timed)
    }

    /// The least of a few `runc --version` calls through the wrapper, less what it logged.
    fn calibrate(&self) -> Result<Duration, String> {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let before = self.calls().len();
            let t = Instant::now();
            let st = Command::new(self.dir.join("runc"))
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .map_err(|e| format!("timed-runc --version: {e}"))?;
            let wall = t.elapsed();
            if !st.success() {
                return Err(format!("timed-runc --version: {st}"));
            }
            let logged = self
                .calls()
                .get(before)
                .map(|c| Duration::from_nanos(c.end - c.start))
                .ok_or("timed-runc logged nothing")?;
            best = best.min(wall.saturating_sub(logged));
        }
        Ok(best)
    }

    /// Calls logged so far.
    fn calls(&self) -> Vec<Call> {
        let text = fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                Some(Call {
                    start: f.next()?.parse().ok()?,
                    end: f.next()?.parse().ok()?,
                    pid: f.next()?.parse().ok()?,
                    verb: f.next().unwrap_or("").to_string(),
                })
            })
            .collect()
    }

    /// The runc calls that ran inside `[from, to]`: their total time and verbs.
    fn inside(&self, from: u64, to: u64) -> Result<(Duration, Vec<String>), String> {
        let seen = match &self.lifetimes {
            Some(l) => Some(l.read()?),
            None => None,
        };
        let mut total = Duration::ZERO;
        let mut verbs = Vec::new();
        for c in self.calls() {
            if c.start < from || c.end > to {
                continue;
            }
            total += match &seen {
                Some(seen) => {
                    let life = seen.get(&c.pid).ok_or_else(|| {
                        format!(
                            "runc {} (pid {}) is not in the kernel's trace",
                            c.verb, c.pid
                        )
                    })?;
                    Duration::from_nanos(life.exit_ns.saturating_sub(life.exec_ns))
                }
                None => Duration::from_nanos(c.end - c.start) + self.overhead,
            };
            verbs.push(c.verb);
        }
        Ok((total, verbs))
    }
}

/// Times `f` as phase `name`, with the runc calls that ran inside its window.
fn timed<T>(
    runc: &TimedRunc,
    name: &'static str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Phase), String> {
    let (from, t) = (now_ns(), Instant::now());
    let out = f().map_err(|e| format!("{name}: {e}"))?;
    let wall = t.elapsed();
    let to = now_ns();
    let (runc_time, verbs) = runc.inside(from, to).map_err(|e| format!("{name}: {e}"))?;
    let phase = Phase {
        name,
        wall,
        runc: runc_time,
        verbs,
    };
    Ok((out, phase))
}

/// A shim started by hand, spoken to as containerd would.
struct Shim {
    client: Client,
    /// containerd's end of the bundle's `log` FIFO, held as containerd holds it.
    _log: fs::File,
    service: &'static str,
    socket: Option<PathBuf>,
}

impl Shim {
    fn call<Q: Message, R: MessageFull>(&self, method: &str, req: &Q) -> Result<R, String> {
        let mut r = ttrpc::Request::new();
        r.service = self.service.to_string();
        r.method = method.to_string();
        r.payload = req.write_to_bytes().map_err(|e| e.to_string())?;
        r.timeout_nano = RPC_TIMEOUT.as_nanos() as i64;
        let resp = self
            .client
            .request(r)
            .map_err(|e| format!("{method}: {e:?}"))?;
        R::parse_from_bytes(&resp.payload).map_err(|e| format!("{method} reply: {e}"))
    }
}

/// The binary `name` on the environment's PATH (the shims' and runc's, as containerd has it).
fn on_env_path(env: &TestEnv, name: &str) -> Result<PathBuf, String> {
    env.containerd_path()
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| format!("{name} not on {}", env.containerd_path()))
}

/// A bundle for `id`: the OCI spec ctr makes for `sleep 1000` on the test's rootfs.
fn make_bundle(env: &TestEnv, id: &str) -> Result<PathBuf, String> {
    let tmpl = format!("{id}-spec");
    env.ctr(
        &[
            "container",
            "create",
            "--env",
            "PATH=/bin",
            "--rootfs",
            &env.rootfs.display().to_string(),
            &tmpl,
            "sleep",
            "1000",
        ],
        CTR_TIMEOUT,
    )
    .expect_success("ctr container create (spec template)");
    let info = env.ctr(&["container", "info", &tmpl], CTR_TIMEOUT);
    env.ctr(&["container", "delete", &tmpl], CTR_TIMEOUT);
    let v: Value = serde_json::from_str(&info.stdout_str())
        .map_err(|e| format!("ctr container info: {e}: {info}"))?;
    let mut spec = v
        .get("Spec")
        .cloned()
        .ok_or("ctr container info: no Spec")?;
    if let Some(l) = spec.get_mut("linux") {
        l["cgroupsPath"] = Value::String(format!("/{}/{id}", env.ns));
    }
    let bundle = env.dir.join("share-bundles").join(id);
    fs::create_dir_all(&bundle).map_err(|e| format!("mkdir {}: {e}", bundle.display()))?;
    fs::write(bundle.join("config.json"), spec.to_string())
        .map_err(|e| format!("write config.json: {e}"))?;
    Ok(bundle)
}

/// `shim start` in `bundle`, until the socket it names answers `Connect`.
fn bootstrap(
    env: &TestEnv,
    rt: Runtime,
    runc: &TimedRunc,
    id: &str,
    bundle: &Path,
) -> Result<Shim, String> {
    let bin = on_env_path(env, rt.shim_binary())?;
    // The stock shim's server opens `log` for writing and exits if it is missing, as
    // containerd always makes it first.
    let log_path = bundle.join("log");
    nix::unistd::mkfifo(&log_path, nix::sys::stat::Mode::from_bits_truncate(0o700))
        .map_err(|e| format!("mkfifo {}: {e}", log_path.display()))?;
    let log = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log_path)
        .map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let containerd = on_env_path(env, "containerd")?;
    let sock = env.sock.display().to_string();
    let out = Command::new(&bin)
        .args(["-namespace", &env.ns, "-address", &sock, "-publish-binary"])
        .arg(&containerd)
        .args(["-id", id, "start"])
        .current_dir(bundle)
        .env(
            "PATH",
            format!("{}:{}", runc.dir.display(), env.containerd_path()),
        )
        .env("TTRPC_ADDRESS", format!("{sock}.ttrpc"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("{} start: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        return Err(format!(
            "{} start: {}: {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // 1.x: the address; 2.x: {"version":3,"address":...,"protocol":"ttrpc"}.
    let (address, service) = match serde_json::from_str::<Value>(&text) {
        Ok(v) if v.is_object() => (
            v["address"].as_str().unwrap_or_default().to_string(),
            if v["version"].as_u64() == Some(3) {
                "containerd.task.v3.Task"
            } else {
                "containerd.task.v2.Task"
            },
        ),
        _ => (text.clone(), "containerd.task.v2.Task"),
    };
    let socket = address.strip_prefix("unix://").map(PathBuf::from);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last;
    loop {
        match Client::connect(&address) {
            Err(e) => last = format!("connect: {e:?}"),
            Ok(client) => {
                let shim = Shim {
                    client,
                    _log: log.try_clone().map_err(|e| format!("dup log: {e}"))?,
                    service,
                    socket: socket.clone(),
                };
                let mut req = ConnectRequest::new();
                req.id = id.to_string();
                let r: Result<containerd_shim_protos::api::ConnectResponse, _> =
                    shim.call("Connect", &req);
                match r {
                    Ok(_) => return Ok(shim),
                    Err(e) => last = e,
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the shim at {address:?} never answered Connect: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn exec_spec() -> Any {
    let mut any = Any::new();
    any.type_url = PROCESS_URL.to_string();
    any.value = serde_json::json!({
        "args": ["/bin/true"],
        "cwd": "/",
        "env": ["PATH=/bin"],
        "user": {"uid": 0, "gid": 0},
    })
    .to_string()
    .into_bytes();
    any
}

/// One task's life under `rt`, phase by phase. Leaves nothing behind: the task is deleted and
/// the shim shut down, also when a phase fails.
pub fn round(env: &TestEnv, rt: Runtime, runc: &TimedRunc, n: usize) -> Result<Vec<Phase>, String> {
    let tag = match rt {
        Runtime::Sluice => "sluice",
        Runtime::RuncV2 => "stock",
    };
    let id = format!("share-{tag}-{n}");
    let bundle = make_bundle(env, &id)?;
    if let Some(l) = &runc.lifetimes {
        l.clear()?;
    }
    let (shim, boot) = timed(runc, "bootstrap", || bootstrap(env, rt, runc, &id, &bundle))?;
    let result = floor(&shim, runc, &id).and_then(|call| {
        let mut v = vec![call];
        v.extend(phases(&shim, runc, &id, &bundle)?);
        Ok(v)
    });
    let mut kill = KillRequest::new();
    kill.id = id.clone();
    kill.signal = 9;
    kill.all = true;
    let _: Result<containerd_shim_protos::api::Empty, _> = shim.call("Kill", &kill);
    let mut del = DeleteRequest::new();
    del.id = id.clone();
    let _: Result<containerd_shim_protos::api::DeleteResponse, _> = shim.call("Delete", &del);
    let mut sd = ShutdownRequest::new();
    sd.id = id.clone();
    sd.now = true;
    let _: Result<containerd_shim_protos::api::Empty, _> = shim.call("Shutdown", &sd);
    if let Some(s) = &shim.socket {
        let _ = fs::remove_file(s);
    }
    let _ = fs::remove_dir_all(&bundle);
    let mut all = vec![boot];
    all.extend(result?);
    Ok(all)
}

/// The mean round trip of a `Connect`: a request the shim answers without any work.
fn floor(shim: &Shim, runc: &TimedRunc, id: &str) -> Result<Phase, String> {
    let mut req = ConnectRequest::new();
    req.id = id.to_string();
    let (_, mut p) = timed(runc, "call", || {
        for _ in 0..CALLS {
            shim.call::<_, containerd_shim_protos::api::ConnectResponse>("Connect", &req)?;
        }
        Ok(())
    })?;
    p.wall /= CALLS;
    p.runc /= CALLS;
    Ok(p)
}

fn phases(shim: &Shim, runc: &TimedRunc, id: &str, bundle: &Path) -> Result<Vec<Phase>, String> {
    use containerd_shim_protos::api::{
        CreateTaskResponse, DeleteResponse, Empty, StartResponse, WaitResponse,
    };
    let mut create = CreateTaskRequest::new();
    create.id = id.to_string();
    create.bundle = bundle.display().to_string();
    let (_, c) = timed(runc, "create", || {
        shim.call::<_, CreateTaskResponse>("Create", &create)
    })?;
    let mut start = StartRequest::new();
    start.id = id.to_string();
    let (_, s) = timed(runc, "start", || {
        shim.call::<_, StartResponse>("Start", &start)
    })?;

    let mut exec = ExecProcessRequest::new();
    exec.id = id.to_string();
    exec.exec_id = "probe".into();
    exec.spec = Some(exec_spec()).into();
    let mut exec_start = StartRequest::new();
    exec_start.id = id.to_string();
    exec_start.exec_id = "probe".into();
    let mut wait = WaitRequest::new();
    wait.id = id.to_string();
    wait.exec_id = "probe".into();
    let mut exec_del = DeleteRequest::new();
    exec_del.id = id.to_string();
    exec_del.exec_id = "probe".into();
    let (_, e1) = timed(runc, "exec", || {
        shim.call::<_, Empty>("Exec", &exec)?;
        shim.call::<_, StartResponse>("Start", &exec_start)
    })?;
    // Waiting for /bin/true to end is the process's time, not the shim's.
    shim.call::<_, WaitResponse>("Wait", &wait)?;
    let (_, e2) = timed(runc, "exec", || {
        shim.call::<_, DeleteResponse>("Delete", &exec_del)
    })?;
    let e = Phase {
        name: "exec",
        wall: e1.wall + e2.wall,
        runc: e1.runc + e2.runc,
        verbs: [e1.verbs, e2.verbs].concat(),
    };

    let mut kill = KillRequest::new();
    kill.id = id.to_string();
    kill.signal = 9;
    shim.call::<_, Empty>("Kill", &kill)?;
    let mut wait = WaitRequest::new();
    wait.id = id.to_string();
    shim.call::<_, WaitResponse>("Wait", &wait)?;
    let mut del = DeleteRequest::new();
    del.id = id.to_string();
    let (_, d) = timed(runc, "delete", || {
        shim.call::<_, DeleteResponse>("Delete", &del)
    })?;
    Ok(vec![c, s, e, d])
}
