//! Fault cells: one runc verb × one way runc misbehaves, run on one shim. A cell brings a
//! container to where the verb applies, arms the fault in the `runc` wrapper, makes the shim
//! call runc (through ctr, or straight to the shim's socket where ctr 1.6 has no command), waits
//! with a limit and removes the container the way a user would.
//!
//! What the stock `io.containerd.runc.v2` shim does in each cell is fixed here
//! ([`stock_hangs`]): it reads runc's pipes only after runc exits and has no deadline, so
//! [`stock_reference`] proves that a fault is real before a suite shows sluice surviving it. The
//! fault matrix (`tests/matrix.rs`) runs every cell; other suites run single stock cells.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{CheckpointTaskRequest, UpdateTaskRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;

use crate::annotations::{GROUP_ANNOTATION, TIMEOUT_ANNOTATION};
use crate::cmd::ctr_error;
use crate::cmd::{self, CmdOutput};
use crate::fault::Action;
use crate::harness::{TestEnv, CTR_TIMEOUT};
use crate::{containers, Runtime};

/// Every runc verb the stock shim or sluice may call for a running container.
pub const VERBS: [&str; 11] = [
    "create",
    "start",
    "exec",
    "kill",
    "delete",
    "pause",
    "resume",
    "update",
    "ps",
    "state",
    "checkpoint",
];

/// sluice's deadline for every runc call of the matrix's containers.
pub const DEADLINE_SECS: u64 = 5;
/// How long the stock shim gets before a call counts as hung: well above the ~0.1-1 s a call
/// takes here, well below anything a user would wait for.
pub const STOCK_SHORT: Duration = Duration::from_secs(4);
/// "Answers promptly" on a loaded 2-core CI machine with a debug build.
pub const PROMPT: Duration = Duration::from_secs(15);
pub const MIB: usize = 1024 * 1024;

/// How runc misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// (a) 1 MiB to stdout and 1 MiB to stderr, then the real runc.
    Flood,
    /// (b) never returns.
    Hang,
    /// (c) a 7 KiB Go crash dump on one-page pipes, exit 2.
    CrashDump,
    /// (d) SIGKILLed mid-way.
    Killed,
    /// (e) one-page pipes, 64 KiB to each, then the real runc.
    OnePage,
}

pub const FAULTS: [Fault; 5] = [
    Fault::Flood,
    Fault::Hang,
    Fault::CrashDump,
    Fault::Killed,
    Fault::OnePage,
];

impl Fault {
    pub fn action(self) -> Action {
        match self {
            Fault::Flood => Action::BothFlood { bytes: MIB },
            Fault::Hang => Action::Hang,
            Fault::CrashDump => Action::CrashDump,
            Fault::Killed => Action::SelfKill,
            Fault::OnePage => Action::OnePageFlood { bytes: 64 << 10 },
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Fault::Flood => "flood-1MiB",
            Fault::Hang => "hang",
            Fault::CrashDump => "crash-dump",
            Fault::Killed => "sigkill",
            Fault::OnePage => "one-page",
        }
    }

    /// Whether the real runc runs after the fault.
    pub fn passes_through(self) -> bool {
        matches!(self, Fault::Flood | Fault::OnePage)
    }
}

/// Neither shim runs `runc state` (both keep the state themselves); the cell proves it.
pub fn verb_is_called(verb: &str) -> bool {
    verb != "state"
}

/// What the stock shim does: it reads runc's stdout/stderr only after runc exits when they are
/// the container's own pipes (create, exec), and it has no deadline on any runc call.
pub fn stock_hangs(verb: &str, fault: Fault) -> bool {
    verb_is_called(verb)
        && match fault {
            Fault::Hang => true,
            Fault::Killed => false,
            Fault::Flood | Fault::CrashDump | Fault::OnePage => matches!(verb, "create" | "exec"),
        }
}

/// Whether the call succeeds under sluice; `None` where the real runc decides (checkpoint
/// through CRIU).
pub fn sluice_succeeds(verb: &str, fault: Fault) -> Option<bool> {
    if !verb_is_called(verb) {
        return Some(true);
    }
    if !fault.passes_through() {
        return Some(false);
    }
    match verb {
        // runc's JSON answer arrives behind the injected bytes: unreadable, for both shims.
        "ps" => Some(false),
        "checkpoint" => None,
        _ => Some(true),
    }
}

/// What came of one call.
pub struct Outcome {
    pub returned: bool,
    pub ok: bool,
    pub elapsed: Duration,
    /// ctr's error, or the RPC's, or (on success) stdout.
    pub text: String,
    pub stdout: String,
}

impl Outcome {
    pub fn from_cmd(out: &CmdOutput) -> Outcome {
        Outcome {
            returned: !out.timed_out(),
            ok: out.success(),
            elapsed: out.elapsed,
            text: if out.success() {
                String::new()
            } else {
                let e = ctr_error(out);
                if e.is_empty() {
                    out.stderr_str()
                } else {
                    e
                }
            },
            stdout: out.stdout_str(),
        }
    }

    pub fn summary(&self) -> String {
        let what = match (self.returned, self.ok) {
            (false, _) => "HUNG",
            (true, true) => "ok",
            (true, false) => "error",
        };
        format!("{what} after {:.2}s", self.elapsed.as_secs_f64())
    }

    /// The error's first 200 characters, on one line.
    pub fn short_text(&self) -> String {
        let one_line = self.text.trim().replace('\n', " ");
        match one_line.char_indices().nth(200) {
            Some((i, _)) => format!("{}...", &one_line[..i]),
            None => one_line,
        }
    }
}

/// A call in flight: a ctr command, or an RPC straight to the shim on its own thread (ctr 1.6
/// has no command for Update, and its checkpoint needs an image).
pub enum Pending {
    Ctr(cmd::Running),
    Rpc {
        rx: mpsc::Receiver<Result<(), String>>,
        started: Instant,
    },
}

impl Pending {
    pub fn is_done(&mut self) -> bool {
        match self {
            Pending::Ctr(r) => r.has_exited(),
            Pending::Rpc { rx, .. } => {
                matches!(rx.try_recv(), Ok(_) | Err(mpsc::TryRecvError::Disconnected))
            }
        }
    }

    pub fn wait(self, timeout: Duration) -> Outcome {
        match self {
            Pending::Ctr(r) => Outcome::from_cmd(&r.wait(timeout)),
            Pending::Rpc { rx, started } => {
                let left = timeout.saturating_sub(started.elapsed());
                let got = rx.recv_timeout(left);
                let elapsed = started.elapsed();
                match got {
                    Ok(Ok(())) => Outcome {
                        returned: true,
                        ok: true,
                        elapsed,
                        text: String::new(),
                        stdout: String::new(),
                    },
                    Ok(Err(e)) => Outcome {
                        returned: true,
                        ok: false,
                        elapsed,
                        text: e,
                        stdout: String::new(),
                    },
                    // The thread stays blocked until the shim answers or dies with the env.
                    Err(_) => Outcome {
                        returned: false,
                        ok: false,
                        elapsed,
                        text: String::new(),
                        stdout: String::new(),
                    },
                }
            }
        }
    }
}

/// The Task service the shim of `id` serves: containerd 2.x's stock shim announces task API v3
/// in `bootstrap.json`, sluice and every 1.x shim serve v2 (the messages are the same).
pub fn task_service(env: &TestEnv, id: &str) -> &'static str {
    let boot = containers::bundle_dir(env, id).join("bootstrap.json");
    let version = std::fs::read_to_string(boot)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
    if version == Some(3) {
        "containerd.task.v3.Task"
    } else {
        "containerd.task.v2.Task"
    }
}

/// Sends one Task RPC without a ttrpc timeout (containerd sets none on these calls either), so
/// only the shim's own deadline can end it.
pub fn rpc(env: &TestEnv, id: &str, method: &'static str, payload: Vec<u8>) -> Pending {
    let address = containers::shim_address(env, id);
    let service = task_service(env, id);
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let result = Client::connect(&address)
            .map_err(|e| format!("connect {address}: {e:?}"))
            .and_then(|c| {
                let mut req = ttrpc::Request::new();
                req.service = service.to_string();
                req.method = method.to_string();
                req.payload = payload;
                c.request(req).map(|_| ()).map_err(status_text)
            });
        let _ = tx.send(result);
    });
    Pending::Rpc { rx, started }
}

pub fn status_text(e: ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other:?}"),
    }
}

pub fn update_payload(id: &str) -> Vec<u8> {
    let mut any = Any::new();
    any.type_url = containers::LINUX_RESOURCES_URL.to_string();
    any.value = br#"{"pids":{"limit":1000}}"#.to_vec();
    let mut r = UpdateTaskRequest::new();
    r.id = id.to_string();
    r.resources = Some(any).into();
    r.write_to_bytes().expect("encode UpdateTaskRequest")
}

pub fn checkpoint_payload(env: &TestEnv, id: &str) -> Vec<u8> {
    let mut r = CheckpointTaskRequest::new();
    r.id = id.to_string();
    r.path = env
        .dir
        .join(format!("checkpoint-{id}"))
        .display()
        .to_string();
    r.write_to_bytes().expect("encode CheckpointTaskRequest")
}

pub fn annotations(rt: Runtime) -> Vec<String> {
    match rt {
        Runtime::Sluice => vec![
            format!("{TIMEOUT_ANNOTATION}={DEADLINE_SECS}"),
            format!("{GROUP_ANNOTATION}=matrix"),
        ],
        Runtime::RuncV2 => Vec::new(),
    }
}

pub fn run_detached_args(env: &TestEnv, id: &str) -> Vec<String> {
    let opts = crate::RunOpts {
        annotations: annotations(env.runtime),
        ..Default::default()
    };
    env.run_args_with_flags(id, true, &opts, &[], &["sleep", "100000"])
}

pub fn ctr_ok(env: &TestEnv, args: &[&str]) {
    env.ctr(args, CTR_TIMEOUT)
        .expect_success(&format!("[{}] ctr {}", env.runtime, args.join(" ")));
}

pub fn start_container(env: &TestEnv, id: &str) {
    let args = run_detached_args(env, id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctr_ok(env, &args);
    env.wait_task_status(id, "RUNNING", Duration::from_secs(30));
}

/// Brings `id` to where `verb` applies, with the fault not yet armed.
pub fn prepare(env: &TestEnv, verb: &str, id: &str) {
    match verb {
        "create" | "start" => {}
        _ => {
            start_container(env, id);
            if verb == "resume" {
                ctr_ok(env, &["task", "pause", id]);
                env.wait_task_status(id, "PAUSED", Duration::from_secs(30));
            }
            if verb == "delete" {
                ctr_ok(env, &["task", "kill", "--signal", "SIGKILL", id]);
                env.wait_task_status(id, "STOPPED", Duration::from_secs(30));
            }
        }
    }
}

/// Starts the call that makes the shim run runc `verb` for `id`.
pub fn call(env: &TestEnv, verb: &str, id: &str) -> Pending {
    let args: Vec<String> = match verb {
        "create" | "start" => run_detached_args(env, id),
        "exec" => env.exec_args(id, "e1", false, &["echo", "exec-ok"]),
        "kill" => ["task", "kill", "--signal", "SIGKILL", id]
            .map(String::from)
            .to_vec(),
        "delete" | "pause" | "resume" | "ps" => ["task", verb, id].map(String::from).to_vec(),
        // The State RPC, for every task of the namespace.
        "state" => ["task", "ls"].map(String::from).to_vec(),
        "update" => return rpc(env, id, "Update", update_payload(id)),
        "checkpoint" => return rpc(env, id, "Checkpoint", checkpoint_payload(env, id)),
        other => panic!("no call for runc {other}"),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Pending::Ctr(cmd::spawn(env.ctr_cmd(&args), None))
}

/// Disarms the fault and removes `id` through ctr, the way a user would.
pub fn remove(env: &TestEnv, id: &str) {
    env.set_fault("", Action::None, false);
    if let Some(t) = env.task(id) {
        if t.status == "PAUSED" {
            ctr_ok(env, &["task", "resume", id]);
        }
        ctr_ok(env, &["task", "delete", "--force", id]);
    }
    if env.containers().iter().any(|c| c == id) {
        ctr_ok(env, &["container", "delete", id]);
    }
}

pub fn cell_line(rt: Runtime, verb: &str, fault: Fault, out: &Outcome, extra: &str) {
    eprintln!(
        "MATRIX|{rt}|{verb}|{}|{}|{extra}|{}",
        fault.label(),
        out.summary(),
        out.short_text()
    );
}

/// The stock shim under `fault` on `verb`: hangs or returns as [`stock_hangs`] says.
pub fn stock_cell(env: &TestEnv, verb: &str, fault: Fault) {
    let rt = env.runtime;
    let id = format!("{verb}-{}", fault.label());
    prepare(env, verb, &id);
    env.set_fault(verb, fault.action(), true);
    let fired_before = env.fault_fired(verb);
    let out = call(env, verb, &id).wait(STOCK_SHORT);
    let fired = env.fault_fired(verb) - fired_before;
    cell_line(rt, verb, fault, &out, &format!("fired={fired}"));
    let expect_hang = stock_hangs(verb, fault);
    if verb_is_called(verb) {
        assert_eq!(
            fired,
            1,
            "[{rt}] {verb} {fault:?}: fault did not fire\n{}",
            env.fault_log()
        );
    } else {
        assert_eq!(
            fired,
            0,
            "[{rt}] runc {verb} was called:\n{}",
            env.fault_log()
        );
    }
    if expect_hang {
        assert!(
            !out.returned,
            "[{rt}] expected the stock shim to hang on runc {verb} with {fault:?}, but the call \
             returned ({}): {}",
            out.summary(),
            out.text
        );
        env.unwedge();
    } else {
        assert!(
            out.returned && out.elapsed <= PROMPT,
            "[{rt}] expected the stock shim to return on runc {verb} with {fault:?}: {}",
            out.summary()
        );
    }
    remove(env, &id);
}

/// `fault` on `verb` under the stock shim, in a containerd of its own: the proof a robustness
/// test gives that its fault is real.
pub fn stock_reference(verb: &str, fault: Fault) {
    let env = TestEnv::start(&format!("ref-{verb}-stock"), Runtime::RuncV2);
    stock_cell(&env, verb, fault);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_cover_every_cell() {
        let mut stock_hangs_n = 0;
        for verb in VERBS {
            for fault in FAULTS {
                if stock_hangs(verb, fault) {
                    stock_hangs_n += 1;
                }
                if fault == Fault::Hang && verb_is_called(verb) {
                    assert_eq!(sluice_succeeds(verb, fault), Some(false));
                }
            }
        }
        // 10 hangs + flood, crash dump and one page on create and exec.
        assert_eq!(stock_hangs_n, 16);
    }
}
