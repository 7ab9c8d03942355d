//! The fault matrix (issue 5, item 1): every runc verb a shim may call × five ways runc can
//! misbehave, each run first against the stock `io.containerd.runc.v2` shim with a short
//! timeout (proving what the fault does to a shim that reads runc's pipes late and has no
//! deadline), then against sluice.
//!
//! Under sluice every call must return before its deadline (5 s here, set per container with
//! the `io.sluice.runc-timeout-seconds` annotation), a failure must name the verb, the container,
//! the elapsed time and what runc last wrote, the container must stay manageable, and once it is
//! deleted no runc state, mount, cgroup, runc process or shim descriptor may be left. While one
//! container's call hangs, a second container in the same shim must answer State, Exec, Kill and
//! Delete.
//!
//! Each cell prints one `MATRIX|` line; `scripts/test.sh` output keeps them for the figures.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{CheckpointTaskRequest, UpdateTaskRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;

use crate::cmd::{self, poll, CmdOutput};
use crate::fault::{Action, CGO_CRASH_LINE};
use crate::harness::{TestEnv, CTR_TIMEOUT};
use crate::robustness::{fd_count, GROUP_ANNOTATION, TIMEOUT_ANNOTATION};
use crate::scenarios::ctr_error;
use crate::traces::assert_no_leftovers;
use crate::{parity, Runtime};

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
const DEADLINE_SECS: u64 = 5;
/// How long the stock shim gets before a call counts as hung: well above the ~0.1-1 s a call
/// takes here, well below anything a user would wait for.
const STOCK_SHORT: Duration = Duration::from_secs(4);
/// "Answers promptly" on a loaded 2-core CI machine with a debug build.
const PROMPT: Duration = Duration::from_secs(15);
const MIB: usize = 1024 * 1024;

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
    fn action(self) -> Action {
        match self {
            Fault::Flood => Action::BothFlood { bytes: MIB },
            Fault::Hang => Action::Hang,
            Fault::CrashDump => Action::CrashDump,
            Fault::Killed => Action::SelfKill,
            Fault::OnePage => Action::OnePageFlood { bytes: 64 << 10 },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Fault::Flood => "flood-1MiB",
            Fault::Hang => "hang",
            Fault::CrashDump => "crash-dump",
            Fault::Killed => "sigkill",
            Fault::OnePage => "one-page",
        }
    }

    /// Whether the real runc runs after the fault.
    fn passes_through(self) -> bool {
        matches!(self, Fault::Flood | Fault::OnePage)
    }
}

/// Neither shim runs `runc state` (both keep the state themselves); the cell proves it.
fn verb_is_called(verb: &str) -> bool {
    verb != "state"
}

/// What the stock shim does: it reads runc's stdout/stderr only after runc exits when they are
/// the container's own pipes (create, exec), and it has no deadline on any runc call.
fn stock_hangs(verb: &str, fault: Fault) -> bool {
    verb_is_called(verb)
        && match fault {
            Fault::Hang => true,
            Fault::Killed => false,
            Fault::Flood | Fault::CrashDump | Fault::OnePage => matches!(verb, "create" | "exec"),
        }
}

/// Whether the call succeeds under sluice; `None` where the real runc decides (checkpoint
/// through CRIU).
fn sluice_succeeds(verb: &str, fault: Fault) -> Option<bool> {
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
struct Outcome {
    returned: bool,
    ok: bool,
    elapsed: Duration,
    /// ctr's error, or the RPC's, or (on success) stdout.
    text: String,
    stdout: String,
}

impl Outcome {
    fn from_cmd(out: &CmdOutput) -> Outcome {
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

    fn summary(&self) -> String {
        let what = match (self.returned, self.ok) {
            (false, _) => "HUNG",
            (true, true) => "ok",
            (true, false) => "error",
        };
        format!("{what} after {:.2}s", self.elapsed.as_secs_f64())
    }

    /// The error's first 200 characters, on one line.
    fn short_text(&self) -> String {
        let one_line = self.text.trim().replace('\n', " ");
        match one_line.char_indices().nth(200) {
            Some((i, _)) => format!("{}...", &one_line[..i]),
            None => one_line,
        }
    }
}

/// A call in flight: a ctr command, or an RPC straight to the shim on its own thread (ctr 1.6
/// has no command for Update, and its checkpoint needs an image).
enum Pending {
    Ctr(cmd::Running),
    Rpc {
        rx: mpsc::Receiver<Result<(), String>>,
        started: Instant,
    },
}

impl Pending {
    fn is_done(&mut self) -> bool {
        match self {
            Pending::Ctr(r) => r.has_exited(),
            Pending::Rpc { rx, .. } => {
                matches!(rx.try_recv(), Ok(_) | Err(mpsc::TryRecvError::Disconnected))
            }
        }
    }

    fn wait(self, timeout: Duration) -> Outcome {
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
    let boot = parity::bundle_dir(env, id).join("bootstrap.json");
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
fn rpc(env: &TestEnv, id: &str, method: &'static str, payload: Vec<u8>) -> Pending {
    let address = parity::shim_address(env, id);
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

fn status_text(e: ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => format!("{other:?}"),
    }
}

fn update_payload(id: &str) -> Vec<u8> {
    let mut any = Any::new();
    any.type_url = parity::LINUX_RESOURCES_URL.to_string();
    any.value = br#"{"pids":{"limit":1000}}"#.to_vec();
    let mut r = UpdateTaskRequest::new();
    r.id = id.to_string();
    r.resources = Some(any).into();
    r.write_to_bytes().expect("encode UpdateTaskRequest")
}

fn checkpoint_payload(env: &TestEnv, id: &str) -> Vec<u8> {
    let mut r = CheckpointTaskRequest::new();
    r.id = id.to_string();
    r.path = env
        .dir
        .join(format!("checkpoint-{id}"))
        .display()
        .to_string();
    r.write_to_bytes().expect("encode CheckpointTaskRequest")
}

fn annotations(rt: Runtime) -> Vec<String> {
    match rt {
        Runtime::Sluice => vec![
            format!("{TIMEOUT_ANNOTATION}={DEADLINE_SECS}"),
            format!("{GROUP_ANNOTATION}=matrix"),
        ],
        Runtime::RuncV2 => Vec::new(),
    }
}

fn run_detached_args(env: &TestEnv, id: &str) -> Vec<String> {
    let opts = crate::RunOpts {
        annotations: annotations(env.runtime),
        ..Default::default()
    };
    env.run_args_with_flags(id, true, &opts, &[], &["sleep", "100000"])
}

fn ctr_ok(env: &TestEnv, args: &[&str]) {
    env.ctr(args, CTR_TIMEOUT)
        .expect_success(&format!("[{}] ctr {}", env.runtime, args.join(" ")));
}

fn start_container(env: &TestEnv, id: &str) {
    let args = run_detached_args(env, id);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ctr_ok(env, &args);
    env.wait_task_status(id, "RUNNING", Duration::from_secs(30));
}

/// Brings `id` to where `verb` applies, with the fault not yet armed.
fn prepare(env: &TestEnv, verb: &str, id: &str) {
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
fn call(env: &TestEnv, verb: &str, id: &str) -> Pending {
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
fn remove(env: &TestEnv, id: &str) {
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

fn cell_line(rt: Runtime, verb: &str, fault: Fault, out: &Outcome, extra: &str) {
    eprintln!(
        "MATRIX|{rt}|{verb}|{}|{}|{extra}|{}",
        fault.label(),
        out.summary(),
        out.short_text()
    );
}

/// The stock shim under `fault` on `verb`: hangs or returns as [`stock_hangs`] says.
fn stock_cell(env: &TestEnv, verb: &str, fault: Fault) {
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

/// sluice under `fault` on `verb`, with a grouped neighbour that must keep answering.
fn sluice_cell(env: &TestEnv, verb: &str, fault: Fault, shim_fds: (i32, usize)) {
    let rt = env.runtime;
    let id = format!("{verb}-{}", fault.label());
    prepare(env, verb, &id);
    let hang = fault == Fault::Hang && verb_is_called(verb);
    if hang {
        start_container(env, "neighbour");
    }
    env.set_fault(verb, fault.action(), true);
    let fired_before = env.fault_fired(verb);
    let mut pending = call(env, verb, &id);

    let mut neighbour = String::new();
    if hang {
        // Only once runc is stuck does the neighbour's turn prove anything.
        let stuck = poll(PROMPT, || {
            (env.fault_fired(verb) > fired_before).then_some(())
        });
        assert!(
            stuck.is_some(),
            "runc {verb} never called:\n{}",
            env.fault_log()
        );
        neighbour = neighbour_answers(env, "neighbour");
        assert!(
            !pending.is_done(),
            "runc {verb} of {id} returned before its {DEADLINE_SECS} s deadline while the \
             neighbour was served: the check proves nothing"
        );
    }
    let out = pending.wait(PROMPT + Duration::from_secs(DEADLINE_SECS));
    let fired = env.fault_fired(verb) - fired_before;
    cell_line(rt, verb, fault, &out, &format!("fired={fired} {neighbour}"));
    let what = format!("[{rt}] runc {verb} with {fault:?}");

    if verb_is_called(verb) {
        assert_eq!(fired, 1, "{what}: fault did not fire\n{}", env.fault_log());
    } else {
        assert_eq!(
            fired,
            0,
            "{what}: sluice ran runc {verb}:\n{}",
            env.fault_log()
        );
    }
    assert!(
        out.returned,
        "{what}: the call did not return: {}",
        out.summary()
    );
    let (min, max) = if hang {
        let d = Duration::from_secs(DEADLINE_SECS);
        (d - Duration::from_millis(500), d + PROMPT)
    } else {
        (Duration::ZERO, PROMPT)
    };
    assert!(
        out.elapsed >= min && out.elapsed <= max,
        "{what}: returned after {:?}, expected {min:?}..{max:?}: {}",
        out.elapsed,
        out.text
    );
    match sluice_succeeds(verb, fault) {
        Some(true) => {
            assert!(out.ok, "{what}: failed: {}", out.text);
            if verb == "exec" {
                assert!(
                    out.stdout.ends_with("exec-ok\n"),
                    "{what}: exec's own output lost"
                );
            }
        }
        Some(false) => {
            assert!(!out.ok, "{what}: succeeded");
            assert_names(&what, &out.text, verb, &id, fault);
        }
        None if !out.ok => assert_names(&what, &out.text, verb, &id, fault),
        None => {}
    }

    // Still manageable, and nothing of it is left once removed.
    remove(env, &id);
    assert_no_leftovers(env, &id);
    let (pid, before) = shim_fds;
    let settled = poll(Duration::from_secs(10), || {
        (fd_count(pid) <= before).then_some(())
    });
    assert!(
        settled.is_some(),
        "{what}: shim {pid} holds {} descriptors, {before} before the cell",
        fd_count(pid)
    );
}

/// The error of a failed call: which verb, which container, how long, and runc's last words.
fn assert_names(what: &str, text: &str, verb: &str, id: &str, fault: Fault) {
    let mut needles = vec![format!("runc {verb} for container {id}")];
    match fault {
        Fault::Hang => needles.push(format!("within {DEADLINE_SECS}.0s")),
        Fault::CrashDump => {
            needles.push(" after ".into());
            needles.push(CGO_CRASH_LINE.into());
        }
        Fault::Killed => needles.push(" after ".into()),
        // runc ps's answer behind the injected bytes.
        Fault::Flood | Fault::OnePage => needles.push("unreadable output".into()),
    }
    if verb == "checkpoint" && fault.passes_through() {
        needles.truncate(1);
    }
    for n in needles {
        assert!(
            text.contains(&n),
            "{what}: the error does not say {n:?}: {text}"
        );
    }
}

/// State, Exec, Kill and Delete of `id`, each prompt; returns their timings.
fn neighbour_answers(env: &TestEnv, id: &str) -> String {
    let mut timings = Vec::new();
    let mut step = |name: &str, out: CmdOutput| {
        assert!(
            out.success() && out.elapsed <= PROMPT,
            "neighbour {id}: {name} while the other container is stuck: {out}"
        );
        timings.push(format!("{name}={}ms", out.elapsed.as_millis()));
        out
    };
    let ls = step("state", env.ctr(&["task", "ls"], PROMPT));
    assert!(ls.stdout_str().contains(id), "{ls}");
    let ex = step(
        "exec",
        env.exec(id, "n1", &["echo", "neighbour-ok"], PROMPT),
    );
    assert_eq!(ex.stdout_str(), "neighbour-ok\n", "{ex}");
    step(
        "kill",
        env.ctr(&["task", "kill", "--signal", "SIGKILL", id], PROMPT),
    );
    env.wait_task_status(id, "STOPPED", PROMPT);
    step("delete", env.ctr(&["task", "delete", id], PROMPT));
    env.container_delete(id)
        .expect_success("ctr container delete neighbour");
    format!("neighbour:{}", timings.join(","))
}

/// `fault` on `verb` under the stock shim, in a containerd of its own: the proof a robustness
/// test gives that its fault is real.
pub fn stock_reference(verb: &str, fault: Fault) {
    let env = TestEnv::start(&format!("ref-{verb}-stock"), Runtime::RuncV2);
    stock_cell(&env, verb, fault);
}

/// One verb's row: every fault under the stock shim, then under sluice.
pub fn verb_row(verb: &str) {
    crate::system::sluice_shim_bin();
    {
        let env = TestEnv::start(&format!("matrix-{verb}-stock"), Runtime::RuncV2);
        for fault in FAULTS {
            stock_cell(&env, verb, fault);
        }
    }
    let env = TestEnv::start(&format!("matrix-{verb}"), Runtime::Sluice);
    // A long-lived container keeps the group's shim alive, so its descriptors can be compared
    // across cells.
    start_container(&env, "anchor");
    let shim = env.shims(Runtime::Sluice);
    assert_eq!(shim.len(), 1, "one shim for the group expected");
    let pid = shim[0].pid;
    std::thread::sleep(Duration::from_millis(500));
    let before = fd_count(pid);
    for fault in FAULTS {
        sluice_cell(&env, verb, fault, (pid, before));
    }
    eprintln!("MATRIX|sluice|{verb}|shim-fds|{before}->{}|", fd_count(pid));
    let shims = env.shims(Runtime::Sluice);
    assert_eq!(shims.len(), 1, "extra shims left: {}", shims.len());
    remove(&env, "anchor");
    assert_no_leftovers(&env, "anchor");
    let gone = poll(Duration::from_secs(15), || {
        env.shims(Runtime::Sluice).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "the shim did not exit after its last container"
    );
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
