//! Containers through ctr beyond [`TestEnv`]'s basics: run and exec with extra ctr flags, kill
//! and delete, `ctr task ps` and `ctr task metrics` parsed, a container's bundle and its shim's
//! address, and the shim's ttrpc `Update` and `CloseIO` sent straight to it (ctr 1.6 has no
//! command for either).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{CloseIORequest, UpdateTaskRequest};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim_sync::{Client, TaskClient};
use containerd_shim_protos::ttrpc;
use serde_json::Value;

use crate::cmd::{self, poll, CmdOutput};
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
