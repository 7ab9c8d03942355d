//! The shim's own share of a task's life (issue 14): for each phase, the time from the request
//! to the reply, less the runc calls made inside it.
//!
//! This module plays containerd: it runs `shim start` itself (bootstrap), then sends Create,
//! Start, Exec + Start + Delete of an exec, and Kill + Delete of the task straight to the
//! shim's socket, timing each call at the client (a socket round trip, tens of µs, is in it).
//! runc is `timed-runc` (`src/bin/timed-runc.rs`), which logs when each real runc call began
//! and ended; every runc call that falls inside a phase's window is subtracted from it. The
//! same steps run for either shim, so the shares compare like with like. Stdio is empty
//! (`/dev/null`) throughout: the IO set-up of FIFOs is not in these figures.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
use crate::Runtime;

const PROCESS_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// The phases measured, in the order they happen.
pub const PHASES: [&str; 5] = ["bootstrap", "create", "start", "exec", "delete"];

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

/// Where one round's runc calls are logged, with `timed-runc` installed as `runc`.
pub struct TimedRunc {
    pub dir: PathBuf,
    /// What the wrapper itself adds to a call outside the window it logs (its own exec and
    /// exit), measured by [`TimedRunc::calibrate`]; subtracted once per runc call.
    pub overhead: Duration,
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
        let mut timed = TimedRunc {
            dir,
            overhead: Duration::ZERO,
        };
        timed.overhead = timed.calibrate()?;
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
                .map(|(s, e, _)| Duration::from_nanos((e - s) as u64))
                .ok_or("timed-runc logged nothing")?;
            best = best.min(wall.saturating_sub(logged));
        }
        Ok(best)
    }

    /// Calls logged so far: (start, end, verb), times since the epoch.
    fn calls(&self) -> Vec<(u128, u128, String)> {
        let text = fs::read_to_string(self.dir.join("calls.log")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let mut f = l.split(' ');
                let s = f.next()?.parse().ok()?;
                let e = f.next()?.parse().ok()?;
                Some((s, e, f.next().unwrap_or("").to_string()))
            })
            .collect()
    }
}

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Times `f` as phase `name`, with the runc calls that ran inside its window.
fn timed<T>(
    runc: &TimedRunc,
    name: &'static str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<(T, Phase), String> {
    let (from, t) = (epoch_ns(), Instant::now());
    let out = f().map_err(|e| format!("{name}: {e}"))?;
    let wall = t.elapsed();
    let to = epoch_ns();
    let mut phase = Phase {
        name,
        wall,
        ..Phase::default()
    };
    for (s, e, verb) in runc.calls() {
        if s >= from && e <= to {
            phase.runc += Duration::from_nanos((e - s) as u64) + runc.overhead;
            phase.verbs.push(verb);
        }
    }
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
    let (shim, boot) = timed(runc, "bootstrap", || bootstrap(env, rt, runc, &id, &bundle))?;
    let result = phases(&shim, runc, &id, &bundle);
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
