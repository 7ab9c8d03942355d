//! Robustness scenarios for sluice (issue 5): runc deadlines, floods and crashes of runc, one
//! stuck container among grouped ones, a client that goes away, a real `pids.max`, containerd
//! and shim restarts, hostile input on the shim's ttrpc socket, what the container can see of
//! the shim, and a short soak.
//!
//! Each scenario starts its own private containerd ([`TestEnv`]), whose `Drop` tears down
//! everything (stuck wrapper processes included) even when an assertion fails.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, CreateTaskRequest, DeleteRequest,
    ExecProcessRequest, KillRequest, PauseRequest, PidsRequest, ResizePtyRequest, ResumeRequest,
    StartRequest, StateRequest, StatsRequest, UpdateTaskRequest, WaitRequest,
};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_sync::{Client, TaskClient};
use containerd_shim_protos::ttrpc;

use crate::cmd::{self, poll, CmdOutput};
use crate::fault::Action;
use crate::harness::{TestEnv, CTR_TIMEOUT};
use crate::parity;
use crate::procs;
use crate::scenarios::ctr_error;
use crate::Runtime;

/// The per-container deadline annotation.
pub const TIMEOUT_ANNOTATION: &str = "io.sluice.runc-timeout-seconds";
/// The grouping annotation both shims honour.
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";
/// "Answers within a few seconds" on a loaded 2-core CI machine with a debug build.
const PROMPT: Duration = Duration::from_secs(15);

fn ann(key: &str, value: &str) -> String {
    format!("{key}={value}")
}

fn start_sleeper(env: &TestEnv, id: &str, annotations: &[&str]) -> u32 {
    env.run_detached(id, annotations, &["sleep", "100000"]);
    env.wait_task_status(id, "RUNNING", Duration::from_secs(30))
        .pid
}

fn kill_delete(env: &TestEnv, id: &str) {
    parity::kill_and_delete(env, id);
    assert!(env.task(id).is_none(), "task {id} still listed");
}

/// `ctr task exec` started in the background (for a call that is meant to hang).
fn spawn_exec(env: &TestEnv, id: &str, exec_id: &str, argv: &[&str]) -> cmd::Running {
    let args = env.exec_args(id, exec_id, false, argv);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    cmd::spawn(env.ctr_cmd(&args), None)
}

fn shim_pid(env: &TestEnv) -> i32 {
    let shims = env.shims(Runtime::Sluice);
    assert_eq!(
        shims.len(),
        1,
        "expected exactly one sluice shim: {:?}",
        shims
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    shims[0].pid
}

pub fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn status_field(pid: i32, key: &str) -> u64 {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|r| r.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"))
}

pub fn threads(pid: i32) -> u64 {
    status_field(pid, "Threads")
}

pub fn rss_kib(pid: i32) -> u64 {
    status_field(pid, "VmRSS")
}

fn fds_of(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort_by_key(|s| s.parse::<u32>().unwrap_or(u32::MAX));
    v
}

fn fd_targets(pid: u32) -> Vec<String> {
    fds_of(pid)
        .iter()
        .map(|fd| {
            let t = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap_or_default();
            format!("{fd}->{}", t.display())
        })
        .collect()
}

fn pids_cgroup(env: &TestEnv, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/pids").join(&env.ns).join(id)
}

fn cgroup_procs(env: &TestEnv, id: &str) -> Vec<u32> {
    fs::read_to_string(pids_cgroup(env, id).join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Everything `runc list` knows in this test's runc root.
fn runc_list(env: &TestEnv) -> String {
    let runc = crate::system::tools().runc.clone();
    let mut c = std::process::Command::new(runc);
    c.arg("--root").arg(&env.runc_root).arg("list").arg("-q");
    let out = cmd::run(c, None, Duration::from_secs(30));
    out.stdout_str()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&d))
        .map(str::to_string)
        .collect()
}

/// No runc state, no mount under the bundle, no cgroup dir, no runc process of `id` left.
fn assert_no_leftovers(env: &TestEnv, id: &str) {
    let bundle = parity::bundle_dir(env, id);
    let ok = poll(Duration::from_secs(15), || {
        (!runc_list(env).lines().any(|l| l.trim() == id)
            && mounts_under(&bundle).is_empty()
            && !pids_cgroup(env, id).exists()
            && env.wrapper_procs().is_empty())
        .then_some(())
    });
    assert!(
        ok.is_some(),
        "leftovers of {id}: runc list {:?}, mounts {:?}, cgroup {} exists={}, wrappers {:?}",
        runc_list(env),
        mounts_under(&bundle),
        pids_cgroup(env, id).display(),
        pids_cgroup(env, id).exists(),
        env.wrapper_procs()
            .iter()
            .map(|p| p.cmdline())
            .collect::<Vec<_>>()
    );
}

fn assert_timed_error(out: &CmdOutput, verb: &str, id: &str, min: Duration, max: Duration) {
    assert!(!out.timed_out(), "runc {verb} did not return:\n{out}");
    assert!(!out.success(), "runc {verb} should have failed:\n{out}");
    assert!(
        out.elapsed >= min && out.elapsed <= max,
        "runc {verb} failed after {:?}, expected {min:?}..{max:?}:\n{out}",
        out.elapsed
    );
    let err = ctr_error(out);
    for needle in [format!("runc {verb}"), id.to_string()] {
        assert!(
            err.contains(&needle),
            "error does not name {needle:?}: {err:?}\n{out}"
        );
    }
}

// ---- 1. deadlines, floods, a killed runc ------------------------------------------------------

/// A runc that hangs on `exec`, with a 3 s deadline on the container: the exec fails in time
/// with the verb, the container and the time in the error; nothing of it is left; the container
/// stays usable.
pub fn deadline_on_exec() {
    let env = TestEnv::start("deadline-exec", Runtime::Sluice);
    let deadline = ann(TIMEOUT_ANNOTATION, "3");
    start_sleeper(&env, "c1", &[&deadline]);
    env.set_fault("exec", Action::Hang, true);
    let out = env.exec("c1", "e1", &["true"], Duration::from_secs(90));
    eprintln!("[deadline-exec] exec with hung runc:\n{out}");
    assert_eq!(env.fault_fired("exec"), 1, "{}", env.fault_log());
    assert_timed_error(
        &out,
        "exec",
        "c1",
        Duration::from_millis(2500),
        Duration::from_secs(30),
    );
    let err = ctr_error(&out);
    assert!(
        err.contains("did not finish within 3") || err.contains("within 3."),
        "error does not give the time waited: {err:?}"
    );
    // The shim warned, naming the container, when the call passed half its deadline.
    let log = env.log_tail(2000);
    assert!(
        log.lines().any(
            |l| l.contains("runc exec for container c1 still running after")
                && l.contains("half its deadline")
        ),
        "no half-deadline warning in the shim log:\n{log}"
    );
    let left = poll(Duration::from_secs(10), || {
        env.runc_procs().is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "runc/wrapper processes left after the deadline: {:?}",
        env.runc_procs()
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    // A new exec (the fault was once), then kill and delete.
    let again = env.exec("c1", "e2", &["echo", "ok"], CTR_TIMEOUT);
    assert!(again.success(), "exec after the deadline failed:\n{again}");
    assert_eq!(again.stdout_str(), "ok\n", "{again}");
    kill_delete(&env, "c1");
    assert_no_leftovers(&env, "c1");
}

/// A runc that hangs on `create`: `ctr run` fails in time; after deleting the container no
/// mount, cgroup, runc state or process is left.
pub fn deadline_on_create() {
    let env = TestEnv::start("deadline-create", Runtime::Sluice);
    env.set_fault("create", Action::Hang, true);
    let deadline = ann(TIMEOUT_ANNOTATION, "3");
    let args = env.run_args_with_flags(
        "c1",
        true,
        &crate::RunOpts {
            annotations: vec![deadline],
            ..Default::default()
        },
        &[],
        &["sleep", "1000"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.ctr(&args, Duration::from_secs(90));
    eprintln!("[deadline-create] ctr run with hung runc create:\n{out}");
    assert_eq!(env.fault_fired("create"), 1, "{}", env.fault_log());
    assert_timed_error(
        &out,
        "create",
        "c1",
        Duration::from_millis(2500),
        Duration::from_secs(45),
    );
    // ctr run leaves the container record; the task never existed.
    let _ = env.ctr(&["task", "delete", "--force", "c1"], CTR_TIMEOUT);
    let _ = env.container_delete("c1");
    assert!(
        !env.containers().contains(&"c1".to_string()),
        "container still listed"
    );
    assert_no_leftovers(&env, "c1");
    // The environment still runs containers.
    let ok = env.run("c2", &["echo", "fine"]);
    assert!(ok.success() && ok.stdout_str() == "fine\n", "{ok}");
}

/// A runc that writes 1 MiB to stdout and 1 MiB to stderr before running the real runc, on
/// `exec`, `start` and `kill`: all succeed.
pub fn double_flood_on_exec_start_kill() {
    const MIB: usize = 1024 * 1024;
    let env = TestEnv::start("double-flood", Runtime::Sluice);
    env.set_fault("start", Action::BothFlood { bytes: MIB }, false);
    let t = Instant::now();
    start_sleeper(&env, "c1", &[]);
    eprintln!(
        "[double-flood] start with 2 MiB of runc output: {:?}",
        t.elapsed()
    );
    assert!(env.fault_fired("start") >= 1, "{}", env.fault_log());

    env.set_fault("exec", Action::BothFlood { bytes: MIB }, false);
    let out = env.exec("c1", "e1", &["echo", "exec-ok"], Duration::from_secs(90));
    eprintln!(
        "[double-flood] exec: {:?}, stdout {} bytes, stderr {} bytes",
        out.elapsed,
        out.stdout.len(),
        out.stderr.len()
    );
    assert!(
        out.success(),
        "exec with 2 MiB of runc output failed:\n{out}"
    );
    assert!(
        out.stdout_str().ends_with("exec-ok\n"),
        "exec's own output missing:\n{out}"
    );
    assert!(env.fault_fired("exec") >= 1, "{}", env.fault_log());

    env.set_fault("kill", Action::BothFlood { bytes: MIB }, false);
    let k = env.kill("c1", "SIGKILL");
    assert!(k.success(), "kill with 2 MiB of runc output failed:\n{k}");
    env.wait_task_status("c1", "STOPPED", Duration::from_secs(30));
    assert!(env.fault_fired("kill") >= 1, "{}", env.fault_log());
    env.set_fault("", Action::None, false);
    env.task_delete("c1").expect_success("task delete");
    env.container_delete("c1")
        .expect_success("container delete");
    assert_no_leftovers(&env, "c1");
}

/// runc SIGKILLed mid-way on `exec`: the exec fails promptly naming the verb; the container
/// stays manageable.
pub fn runc_killed_on_exec() {
    let env = TestEnv::start("runc-sigkill", Runtime::Sluice);
    start_sleeper(&env, "c1", &[]);
    env.set_fault("exec", Action::SelfKill, true);
    let out = env.exec("c1", "e1", &["true"], Duration::from_secs(90));
    eprintln!("[runc-sigkill] exec with runc killed by SIGKILL:\n{out}");
    assert_eq!(env.fault_fired("exec"), 1, "{}", env.fault_log());
    assert_timed_error(&out, "exec", "c1", Duration::ZERO, PROMPT);
    let again = env.exec("c1", "e2", &["echo", "ok"], CTR_TIMEOUT);
    assert!(
        again.success(),
        "exec after the killed runc failed:\n{again}"
    );
    kill_delete(&env, "c1");
    assert_no_leftovers(&env, "c1");
}

// ---- 2. grouped containers, one stuck ---------------------------------------------------------

fn timed(what: &str, f: impl FnOnce() -> CmdOutput) -> CmdOutput {
    let out = f();
    eprintln!(
        "[group-stuck] {what}: {:?} (exit {:?})",
        out.elapsed,
        out.code()
    );
    assert!(
        out.success() && out.elapsed <= PROMPT,
        "{what} while a grouped container is stuck in runc:\n{out}"
    );
    out
}

pub fn grouped_one_stuck() {
    let env = TestEnv::start("group-stuck", Runtime::Sluice);
    let group = ann(GROUP_ANNOTATION, "g");
    let deadline = ann(TIMEOUT_ANNOTATION, "30");
    start_sleeper(&env, "a", &[&group, &deadline]);
    start_sleeper(&env, "b", &[&group]);
    let shim = shim_pid(&env);
    env.set_fault("exec", Action::Hang, true);
    let stuck = spawn_exec(&env, "a", "stuck", &["true"]);
    poll(Duration::from_secs(30), || {
        (env.fault_fired("exec") == 1).then_some(())
    })
    .unwrap_or_else(|| panic!("the exec never reached runc: {}", env.fault_log()));
    std::thread::sleep(Duration::from_millis(500));

    let ls = timed("ctr task ls", || env.ctr(&["task", "ls"], PROMPT * 2));
    let text = ls.stdout_str();
    for id in ["a", "b"] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().next() == Some(id) && l.contains("RUNNING")),
            "{id} not RUNNING in task ls: {text}"
        );
    }
    timed("ctr task ps a", || {
        env.ctr(&["task", "ps", "a"], PROMPT * 2)
    });
    timed("ctr task ps b", || {
        env.ctr(&["task", "ps", "b"], PROMPT * 2)
    });
    timed("exec into b", || {
        env.exec("b", "eb", &["echo", "b-ok"], PROMPT * 2)
    });
    timed("kill b", || env.kill("b", "SIGKILL"));
    env.wait_task_status("b", "STOPPED", PROMPT);
    timed("task delete b", || env.task_delete("b"));
    timed("container delete b", || env.container_delete("b"));
    assert_eq!(shim_pid(&env), shim, "the group's shim changed");
    // The stuck exec is still stuck (deadline 30 s); un-wedge it and a must still work.
    let victims = env.unwedge();
    let out = stuck.wait(Duration::from_secs(60));
    eprintln!(
        "[group-stuck] stuck exec after killing {} wrapper(s): {:?}, {}",
        victims.len(),
        out.elapsed,
        ctr_error(&out).trim()
    );
    assert!(!out.timed_out() && !out.success(), "{out}");
    kill_delete(&env, "a");
}

// ---- 3. client gone while the container floods stdout -----------------------------------------

/// The container's loop counter (`/tmp/count` in its rootfs). The shell truncates and rewrites
/// it each round, so an empty read is retried.
fn counter(env: &TestEnv) -> u64 {
    for _ in 0..200 {
        if let Some(n) = fs::read_to_string(env.rootfs.join("tmp/count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    0
}

pub fn client_killed_while_flooding() {
    let env = TestEnv::start("client-gone", Runtime::Sluice);
    let script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count; \
                  echo \"line $i ................................................................\"; done";
    // Attached `ctr run`, then the client is SIGKILLed.
    let run_args = env.run_args_with_flags(
        "c1",
        false,
        &crate::RunOpts::default(),
        &[],
        &["sh", "-c", script],
    );
    // run_args puts --rm for attached runs; the task outlives ctr anyway.
    let run_args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let client = cmd::spawn(env.ctr_cmd(&run_args), None);
    let pid = client.pid() as i32;
    poll(Duration::from_secs(30), || {
        (counter(&env) > 100).then_some(())
    })
    .unwrap_or_else(|| panic!("the container never started writing"));
    procs::signal(pid, libc::SIGKILL);
    let killed = client.wait(Duration::from_secs(10));
    eprintln!(
        "[client-gone] ctr run SIGKILLed after reading {} bytes",
        killed.stdout.len()
    );
    assert!(!killed.stdout.is_empty(), "ctr run got no output");
    std::thread::sleep(Duration::from_secs(2));
    let c1 = counter(&env);
    std::thread::sleep(Duration::from_secs(3));
    let c2 = counter(&env);
    eprintln!("[client-gone] counter without a client: {c1} -> {c2} in 3 s");
    assert!(
        c2 > c1,
        "the container is blocked without a client ({c1} -> {c2})"
    );
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(5));
    let ex = env.exec("c1", "e1", &["echo", "alive"], CTR_TIMEOUT);
    assert!(ex.success(), "exec while the client is gone:\n{ex}");

    // Reattach: output flows again.
    let attach = cmd::spawn(env.ctr_cmd(&["task", "attach", "c1"]), None);
    std::thread::sleep(Duration::from_secs(4));
    procs::signal(attach.pid() as i32, libc::SIGKILL);
    let out = attach.wait(Duration::from_secs(10));
    eprintln!(
        "[client-gone] ctr task attach received {} bytes",
        out.stdout.len()
    );
    assert!(
        out.stdout_str().contains("line "),
        "reattach received no output:\n{out}"
    );
    let c3 = counter(&env);
    std::thread::sleep(Duration::from_secs(2));
    assert!(counter(&env) > c3, "container blocked after the reattach");
    kill_delete(&env, "c1");
}

// ---- 4. a real pids.max -----------------------------------------------------------------------

/// Sets the container's `pids.max` to its current count and execs into it. Returns the ctr
/// output (the caller asserts).
pub fn exec_at_pids_max(env: &TestEnv, timeout: Duration) -> CmdOutput {
    start_sleeper(env, "c1", &[]);
    let dir = pids_cgroup(env, "c1");
    let current = fs::read_to_string(dir.join("pids.current"))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join("pids.current").display()));
    fs::write(dir.join("pids.max"), current.trim()).expect("write pids.max");
    eprintln!("[{}] pids.max of c1 set to {}", env.runtime, current.trim());
    env.exec("c1", "e1", &["true"], timeout)
}

/// The exec that must fork inside the container (a plain `true` needs no new pid: runc 1.1's
/// `runc init` joins the cgroup with its threads already started, so it passes at pids.max).
const FORKING_EXEC: [&str; 3] = ["sh", "-c", "sleep 0 & wait"];

pub fn real_pids_max_sluice() {
    let env = TestEnv::start("pids-max", Runtime::Sluice);
    let out = exec_at_pids_max(&env, Duration::from_secs(90));
    eprintln!("[sluice] exec `true` at pids.max:\n{out}");
    assert!(
        !out.timed_out(),
        "exec at pids.max hung under sluice:\n{out}"
    );
    assert!(out.elapsed <= Duration::from_secs(30), "{out}");
    // The shim warned before the exec, naming the container.
    let log = env.log_tail(2000);
    assert!(
        log.lines()
            .any(|l| l.contains("exec e1 in container c1:") && l.contains("of pids.max")),
        "no pids.max warning in the shim log:\n{log}"
    );
    let fork = env.exec("c1", "e-fork", &FORKING_EXEC, Duration::from_secs(90));
    eprintln!("[sluice] exec of a forking command at pids.max:\n{fork}");
    assert!(
        !fork.timed_out(),
        "forking exec at pids.max hung under sluice:\n{fork}"
    );
    assert!(fork.elapsed <= Duration::from_secs(30), "{fork}");
    assert!(!fork.success(), "a fork at pids.max succeeded?\n{fork}");
    eprintln!("[sluice] error text: {}", ctr_error(&fork).trim());
    fs::write(pids_cgroup(&env, "c1").join("pids.max"), "max").expect("reset pids.max");
    let again = env.exec("c1", "e2", &["echo", "ok"], CTR_TIMEOUT);
    assert!(again.success(), "exec after raising pids.max:\n{again}");
    kill_delete(&env, "c1");
}

/// Measured, not asserted: does the stock shim hang on the same exec?
pub fn real_pids_max_stock_measured() {
    let env = TestEnv::start("pids-max-stock", Runtime::RuncV2);
    let first = exec_at_pids_max(&env, Duration::from_secs(20));
    eprintln!("[stock] exec `true` at pids.max:\n{first}");
    let out = env.exec("c1", "e-fork", &FORKING_EXEC, Duration::from_secs(20));
    let stuck: Vec<String> = env
        .runc_procs()
        .iter()
        .map(|p| format!("{} [{}] {}", p.pid, p.wchan, p.cmdline()))
        .collect();
    eprintln!(
        "[stock] forking exec at pids.max: {} after {:?}; runc processes: {stuck:?}\n{out}",
        if out.timed_out() {
            "HUNG (killed at 20s)"
        } else {
            "returned"
        },
        out.elapsed
    );
    // Hung or failed, a fork at pids.max never succeeds: the limit is real for both shims.
    assert!(
        !out.success(),
        "[stock] a fork at pids.max succeeded?\n{out}"
    );
}

// ---- 5. containerd and shim restarts ----------------------------------------------------------

pub fn restarts() {
    let mut env = TestEnv::start("restarts", Runtime::Sluice);
    let init = start_sleeper(&env, "c1", &[]);
    env.run_detached("c2", &[], &["sh", "-c", "sleep 3; exit 7"]);
    env.wait_task_status("c2", "RUNNING", Duration::from_secs(30));
    env.kill_containerd();
    let down = Instant::now();
    std::thread::sleep(Duration::from_secs(6));
    env.restart_containerd();
    eprintln!("[restarts] containerd down for {:?}", down.elapsed());
    let c1 = env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    assert_eq!(c1.pid, init, "c1's pid changed across the restart");
    env.wait_task_status("c2", "STOPPED", Duration::from_secs(30));
    let del = env.task_delete("c2");
    eprintln!("[restarts] task delete c2:\n{del}");
    assert!(del.success(), "{del}");
    assert!(
        del.stderr_str().contains("exit code 7"),
        "exit status 7 of c2 lost across the restart:\n{del}"
    );
    env.container_delete("c2")
        .expect_success("container delete c2");
    let ex = env.exec("c1", "e1", &["echo", "after-restart"], CTR_TIMEOUT);
    assert!(ex.success() && ex.stdout_str() == "after-restart\n", "{ex}");

    // Now the shim dies.
    let shims: Vec<i32> = env.shims(Runtime::Sluice).iter().map(|p| p.pid).collect();
    assert!(!shims.is_empty(), "no sluice shim");
    procs::kill_all(&shims, Duration::from_secs(10));
    let killed = Instant::now();
    // containerd notices the dead shim by itself and runs `<shim> delete` (runc delete --force);
    // `ctr task rm -f` then finds no task ("not found") or does the same cleanup.
    let rm = env.ctr(&["task", "rm", "-f", "c1"], CTR_TIMEOUT);
    eprintln!("[restarts] ctr task rm -f c1 after the shim was SIGKILLed:\n{rm}");
    assert!(
        rm.success() || rm.stderr_str().contains("not found"),
        "ctr task rm -f c1 after the shim died:\n{rm}"
    );
    let rmc = env.container_delete("c1");
    eprintln!("[restarts] ctr container rm c1:\n{rmc}");
    assert!(rmc.success(), "{rmc}");
    let gone = poll(Duration::from_secs(30), || {
        (!procs::alive(init as i32)).then_some(())
    });
    assert!(gone.is_some(), "container process {init} still alive");
    let clean = poll(Duration::from_secs(60), || {
        runc_list(&env).trim().is_empty().then_some(())
    });
    eprintln!(
        "[restarts] runc state gone {:?} after the shim was killed: {:?}",
        killed.elapsed(),
        runc_list(&env)
    );
    assert!(clean.is_some(), "runc state left: {}", runc_list(&env));
    assert_no_leftovers(&env, "c1");
    assert!(env.containers().is_empty(), "{:?}", env.containers());
}

// ---- 6. hostile input on the shim's socket ----------------------------------------------------

fn code_of<T>(r: ttrpc::Result<T>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err(ttrpc::Error::RpcStatus(s)) => format!("{:?}", s.code()),
        Err(e) => format!("TRANSPORT: {e:?}"),
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_timeout(Duration::from_secs(30).as_nanos() as i64)
}

fn state(t: &TaskClient, id: &str) -> String {
    let mut r = StateRequest::new();
    r.id = id.into();
    code_of(t.state(ctx(), &r))
}

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// An ID that is never `real`: empty, traversal, NUL, unicode, long, or plain random.
    fn id(&mut self, real: &str) -> String {
        let s = match self.below(8) {
            0 => String::new(),
            1 => "../x".into(),
            2 => "a/b".into(),
            3 => "a\0b".into(),
            4 => "ü☃".repeat(1 + self.below(5) as usize),
            5 => "x".repeat(1 + self.below(400) as usize),
            _ => format!("r{:x}", self.next()),
        };
        if s == real {
            "not-real".into()
        } else {
            s
        }
    }
    fn text(&mut self) -> String {
        String::from_utf8_lossy(&self.bytes(64)).into_owned()
    }
    fn any(&mut self) -> Any {
        let mut a = Any::new();
        a.type_url = self.text();
        a.value = self.bytes(256);
        a
    }
}

const METHODS: [&str; 16] = [
    "State",
    "Create",
    "Start",
    "Delete",
    "Pids",
    "Pause",
    "Resume",
    "Checkpoint",
    "Kill",
    "Exec",
    "ResizePty",
    "CloseIO",
    "Update",
    "Wait",
    "Stats",
    "Connect",
];

fn random_request(t: &TaskClient, rng: &mut XorShift, real: &str) -> (&'static str, String) {
    let m = METHODS[rng.below(METHODS.len() as u64) as usize];
    let id = rng.id(real);
    let exec_id = if rng.bool() {
        String::new()
    } else {
        rng.id(real)
    };
    let code = match m {
        "State" => {
            let mut r = StateRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            code_of(t.state(ctx(), &r))
        }
        "Create" => {
            let mut r = CreateTaskRequest::new();
            r.id = id;
            r.bundle = if rng.bool() {
                format!("/tmp/{}", rng.text())
            } else {
                rng.text()
            };
            r.terminal = rng.bool();
            r.stdin = rng.text();
            r.stdout = rng.text();
            r.stderr = rng.text();
            r.checkpoint = rng.text();
            if rng.bool() {
                r.options = Some(rng.any()).into();
            }
            code_of(t.create(ctx(), &r))
        }
        "Start" => {
            let mut r = StartRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            code_of(t.start(ctx(), &r))
        }
        "Delete" => {
            let mut r = DeleteRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            code_of(t.delete(ctx(), &r))
        }
        "Pids" => {
            let mut r = PidsRequest::new();
            r.id = id;
            code_of(t.pids(ctx(), &r))
        }
        "Pause" => {
            let mut r = PauseRequest::new();
            r.id = id;
            code_of(t.pause(ctx(), &r))
        }
        "Resume" => {
            let mut r = ResumeRequest::new();
            r.id = id;
            code_of(t.resume(ctx(), &r))
        }
        "Checkpoint" => {
            let mut r = CheckpointTaskRequest::new();
            r.id = id;
            r.path = rng.text();
            if rng.bool() {
                r.options = Some(rng.any()).into();
            }
            code_of(t.checkpoint(ctx(), &r))
        }
        "Kill" => {
            let mut r = KillRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            r.signal = rng.next() as u32 % 80;
            r.all = rng.bool();
            code_of(t.kill(ctx(), &r))
        }
        "Exec" => {
            let mut r = ExecProcessRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            r.terminal = rng.bool();
            r.stdin = rng.text();
            r.stdout = rng.text();
            r.stderr = rng.text();
            if rng.bool() {
                r.spec = Some(rng.any()).into();
            }
            code_of(t.exec(ctx(), &r))
        }
        "ResizePty" => {
            let mut r = ResizePtyRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            r.width = rng.next() as u32;
            r.height = rng.next() as u32;
            code_of(t.resize_pty(ctx(), &r))
        }
        "CloseIO" => {
            let mut r = CloseIORequest::new();
            r.id = id;
            r.exec_id = exec_id;
            r.stdin = rng.bool();
            code_of(t.close_io(ctx(), &r))
        }
        "Update" => {
            let mut r = UpdateTaskRequest::new();
            r.id = id;
            if rng.bool() {
                r.resources = Some(rng.any()).into();
            }
            code_of(t.update(ctx(), &r))
        }
        "Wait" => {
            let mut r = WaitRequest::new();
            r.id = id;
            r.exec_id = exec_id;
            code_of(t.wait(ctx(), &r))
        }
        "Stats" => {
            let mut r = StatsRequest::new();
            r.id = id;
            code_of(t.stats(ctx(), &r))
        }
        _ => {
            let mut r = ConnectRequest::new();
            r.id = id;
            code_of(t.connect(ctx(), &r))
        }
    };
    (m, code)
}

// Raw ttrpc frames: 10-byte header (length u32 BE, stream id u32 BE, type u8, flags u8), then a
// protobuf `Request { service = 1; method = 2; payload = 3; timeout_nano = 4; }`.
fn pb_bytes(field: u32, data: &[u8]) -> Vec<u8> {
    let mut v = vec![((field << 3) | 2) as u8];
    let mut n = data.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            v.push(b);
            break;
        }
        v.push(b | 0x80);
    }
    v.extend_from_slice(data);
    v
}

fn frame(stream: u32, payload: &[u8], declared_len: Option<u32>) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&declared_len.unwrap_or(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(&stream.to_be_bytes());
    v.push(1); // request
    v.push(0);
    v.extend_from_slice(payload);
    v
}

/// Sends one raw frame on a fresh connection; returns the reply's status code, or what
/// happened to the connection.
fn raw_exchange(socket: &Path, bytes: &[u8], wait: Duration) -> String {
    let mut s = UnixStream::connect(socket).expect("connect to the shim socket");
    s.set_read_timeout(Some(wait)).ok();
    if let Err(e) = s.write_all(bytes) {
        return format!("write failed: {e}");
    }
    let mut header = [0u8; 10];
    match s.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return "CLOSED".into(),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            return "no reply, connection kept open".into()
        }
        Err(e) => return format!("no reply: {e}"),
    }
    let len = u32::from_be_bytes(header[..4].try_into().unwrap()) as usize;
    let mut body = vec![0u8; len];
    if let Err(e) = s.read_exact(&mut body) {
        return format!("short reply: {e}");
    }
    match ttrpc::Response::parse_from_bytes(&body) {
        Ok(r) => match r.status.as_ref() {
            Some(st) => format!("{:?}", st.code()),
            None => "OK".into(),
        },
        Err(e) => format!("undecodable reply: {e}"),
    }
}

pub fn hostile_ttrpc() {
    let env = TestEnv::start("hostile", Runtime::Sluice);
    start_sleeper(&env, "c1", &[]);
    let shim = shim_pid(&env);
    let address = parity::shim_address(&env, "c1");
    let socket = PathBuf::from(address.trim_start_matches("unix://"));
    // Let the shim settle (containerd's own connection, first State).
    std::thread::sleep(Duration::from_secs(1));
    let (fds0, threads0) = (fd_count(shim), threads(shim));

    let task = TaskClient::new(Client::connect(&address).expect("connect"));
    let mut fixed: Vec<(String, String, &str)> = Vec::new();
    let mut check = |what: String, got: String, want: &'static str| {
        fixed.push((what, got, want));
    };
    check(
        "State(unknown)".into(),
        state(&task, "no-such"),
        "NOT_FOUND",
    );
    for bad in ["../x", "a/b", "a\0b", ".."] {
        check(
            format!("State({bad:?})"),
            state(&task, bad),
            "INVALID_ARGUMENT",
        );
    }
    {
        let mut r = StateRequest::new();
        r.id = "c1".into();
        r.exec_id = "../e".into();
        check(
            "State(c1, exec ../e)".into(),
            code_of(task.state(ctx(), &r)),
            "INVALID_ARGUMENT",
        );
        r.exec_id = "no-such-exec".into();
        check(
            "State(c1, unknown exec)".into(),
            code_of(task.state(ctx(), &r)),
            "NOT_FOUND",
        );
    }
    for sig in [0u32, 65, 1000] {
        let mut r = KillRequest::new();
        r.id = "c1".into();
        r.signal = sig;
        check(
            format!("Kill(c1, signal {sig})"),
            code_of(task.kill(ctx(), &r)),
            "INVALID_ARGUMENT",
        );
    }
    {
        let mut r = KillRequest::new();
        r.id = "no-such".into();
        r.signal = 9;
        check(
            "Kill(unknown)".into(),
            code_of(task.kill(ctx(), &r)),
            "NOT_FOUND",
        );
    }
    let bundle = parity::bundle_dir(&env, "c1");
    {
        let mut r = CreateTaskRequest::new();
        r.id = "c1".into();
        r.bundle = bundle.display().to_string();
        check(
            "Create(c1) twice".into(),
            code_of(task.create(ctx(), &r)),
            "ALREADY_EXISTS",
        );
        let mut r = CreateTaskRequest::new();
        r.id = "evil".into();
        r.bundle = "/tmp/evil".into();
        check(
            "Create(bundle /tmp/evil)".into(),
            code_of(task.create(ctx(), &r)),
            "INVALID_ARGUMENT",
        );
        let mut r = CreateTaskRequest::new();
        r.id = "evil".into();
        r.bundle = format!("{}/../evil", bundle.display());
        check(
            "Create(bundle <bundle>/../evil)".into(),
            code_of(task.create(ctx(), &r)),
            "INVALID_ARGUMENT",
        );
        let mut r = CreateTaskRequest::new();
        r.id = "../c1".into();
        r.bundle = bundle.display().to_string();
        check(
            "Create(id ../c1)".into(),
            code_of(task.create(ctx(), &r)),
            "INVALID_ARGUMENT",
        );
    }
    {
        let mut r = DeleteRequest::new();
        r.id = "c1".into();
        check(
            "Delete(c1) while running".into(),
            code_of(task.delete(ctx(), &r)),
            "FAILED_PRECONDITION",
        );
    }
    for (label, env_bytes) in [("1 MiB", 1usize << 20), ("3 MiB", 3 << 20)] {
        let big = "A".repeat(env_bytes);
        let spec = format!(
            r#"{{"args":["/bin/true"],"env":["PATH=/bin","BIG={big}"],"cwd":"/","user":{{"uid":0,"gid":0}}}}"#
        );
        let mut r = ExecProcessRequest::new();
        r.id = "c1".into();
        r.exec_id = format!("big-{}", env_bytes >> 20);
        let mut any = Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        any.value = spec.into_bytes();
        r.spec = Some(any).into();
        let got = code_of(task.exec(ctx(), &r));
        eprintln!("[hostile] Exec with a {label} env: {got}");
        if got == "OK" {
            // Start it: one env string over the kernel's 128 KiB MAX_ARG_STRLEN makes execve
            // fail inside runc init; the reply must still be a status.
            let mut st = StartRequest::new();
            st.id = "c1".into();
            st.exec_id = r.exec_id.clone();
            let reply = task.start(ctx(), &st);
            if let Err(ttrpc::Error::RpcStatus(status)) = &reply {
                eprintln!("[hostile]   Start message: {}", status.message());
            }
            let started = code_of(reply);
            if started == "OK" {
                let mut w = WaitRequest::new();
                w.id = "c1".into();
                w.exec_id = r.exec_id.clone();
                match task.wait(ctx(), &w) {
                    Ok(resp) => eprintln!("[hostile]   its exit status: {}", resp.exit_status),
                    Err(e) => eprintln!("[hostile]   Wait on it: {e:?}"),
                }
            }
            eprintln!("[hostile]   Start of that exec: {started}");
            assert!(
                !started.starts_with("TRANSPORT"),
                "Start of the exec with a {label} env broke the connection: {started}"
            );
            let mut d = DeleteRequest::new();
            d.id = "c1".into();
            d.exec_id = r.exec_id.clone();
            let deleted = poll(Duration::from_secs(15), || {
                let c = code_of(task.delete(ctx(), &d));
                (c != "FAILED_PRECONDITION").then_some(c)
            });
            eprintln!("[hostile]   Delete of that exec: {deleted:?}");
        }
        assert!(
            !got.starts_with("TRANSPORT"),
            "Exec with a {label} env broke the connection: {got}"
        );
    }
    assert_eq!(
        state(&task, "c1"),
        "OK",
        "State(c1) after the fixed requests"
    );

    // 1,000 random requests.
    let mut rng = XorShift(0x5eed_cafe_f00d_d00d);
    let mut by_rpc: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_pair: BTreeMap<(&str, String), usize> = BTreeMap::new();
    let mut transport = Vec::new();
    let t0 = Instant::now();
    for i in 0..1000 {
        let (m, code) = random_request(&task, &mut rng, "c1");
        *by_rpc.entry(m).or_default() += 1;
        if code.starts_with("TRANSPORT") {
            transport.push(format!("#{i} {m}: {code}"));
        }
        *by_pair.entry((m, code.clone())).or_default() += 1;
        *by_code.entry(code).or_default() += 1;
    }
    eprintln!("[hostile] 1000 random requests in {:?}", t0.elapsed());
    eprintln!("[hostile] requests by RPC:");
    for (m, n) in &by_rpc {
        eprintln!("  {m:<12} {n:>5}");
    }
    eprintln!("[hostile] replies by code:");
    for (c, n) in &by_code {
        eprintln!("  {c:<20} {n:>5}");
    }
    eprintln!("[hostile] replies by RPC and code:");
    for ((m, c), n) in &by_pair {
        eprintln!("  {m:<12} {c:<20} {n:>5}");
    }

    // Raw frames.
    let svc = pb_bytes(1, b"containerd.task.v2.Task");
    let state_m = pb_bytes(2, b"State");
    let mut garbage_payload = svc.clone();
    garbage_payload.extend(&state_m);
    garbage_payload.extend(pb_bytes(3, &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x80]));
    let mut unknown_method = svc.clone();
    unknown_method.extend(pb_bytes(2, b"NoSuchMethod"));
    let mut unknown_service = pb_bytes(1, b"no.such.Service");
    unknown_service.extend(&state_m);
    let raw: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "State with a malformed payload",
            frame(1, &garbage_payload, None),
            true,
        ),
        ("unknown method", frame(3, &unknown_method, None), true),
        ("unknown service", frame(5, &unknown_service, None), true),
        (
            "malformed Request",
            frame(7, &[0x0a, 0xff, 0x01, 0x02], None),
            false,
        ),
        ("random bytes", frame(9, &rng.bytes(200), None), false),
        (
            "declared length 64 MiB",
            frame(11, b"x", Some(64 << 20)),
            false,
        ),
        ("even stream id", frame(2, &garbage_payload, None), false),
        (
            "header only, then close",
            frame(13, &[], Some(100))[..10].to_vec(),
            false,
        ),
    ];
    let mut raw_results = Vec::new();
    for (what, bytes, must_answer) in raw {
        let wait = Duration::from_secs(if must_answer { 15 } else { 3 });
        let got = raw_exchange(&socket, &bytes, wait);
        eprintln!("[hostile] raw {what}: {got}");
        if must_answer {
            assert!(
                got.chars().all(|c| c.is_ascii_uppercase() || c == '_') && got != "CLOSED",
                "raw {what}: expected a status code, got {got}"
            );
        }
        raw_results.push((what, got));
    }

    // The shim still serves, and nothing leaked.
    drop(task);
    let task = TaskClient::new(Client::connect(&address).expect("reconnect"));
    assert_eq!(
        state(&task, "c1"),
        "OK",
        "State(c1) after the hostile input"
    );
    drop(task);
    assert!(procs::alive(shim), "the shim died");
    let settled = poll(Duration::from_secs(15), || {
        (fd_count(shim) <= fds0 + 1 && threads(shim) <= threads0 + 1).then_some(())
    });
    eprintln!(
        "[hostile] shim {shim}: fds {fds0} -> {}, threads {threads0} -> {}",
        fd_count(shim),
        threads(shim)
    );
    let wrong: Vec<String> = fixed
        .iter()
        .filter(|(_, got, want)| got != want)
        .map(|(what, got, want)| format!("{what}: got {got}, want {want}"))
        .collect();
    for (what, got, want) in &fixed {
        eprintln!("[hostile] {what:<34} {got:<20} (want {want})");
    }
    assert!(wrong.is_empty(), "wrong codes:\n{}", wrong.join("\n"));
    assert!(
        transport.is_empty(),
        "random requests without a status reply:\n{}",
        transport.join("\n")
    );
    assert!(
        settled.is_some(),
        "shim leaked: fds {fds0} -> {}, threads {threads0} -> {}",
        fd_count(shim),
        threads(shim)
    );
    let ex = env.exec("c1", "e1", &["echo", "ok"], CTR_TIMEOUT);
    assert!(ex.success(), "{ex}");
    kill_delete(&env, "c1");
}

// ---- 7. security ------------------------------------------------------------------------------

pub fn security() {
    let env = TestEnv::start("security", Runtime::Sluice);
    let init = start_sleeper(&env, "c1", &[]);
    let address = parity::shim_address(&env, "c1");
    let socket = PathBuf::from(address.trim_start_matches("unix://"));
    let mode = fs::metadata(&socket)
        .expect("stat socket")
        .permissions()
        .mode()
        & 0o7777;
    let dir = socket.parent().expect("socket dir");
    let dir_mode = fs::metadata(dir).expect("stat dir").permissions().mode() & 0o7777;
    eprintln!(
        "[security] socket {} mode {mode:o}; dir {} mode {dir_mode:o}",
        socket.display(),
        dir.display()
    );
    assert_eq!(
        mode & 0o077,
        0,
        "shim socket is reachable by group/others: {mode:o}"
    );
    assert_eq!(
        dir_mode & 0o007,
        0,
        "socket dir is accessible to others: {dir_mode:o}"
    );

    let init_fds = fd_targets(init);
    eprintln!("[security] init {init} fds: {init_fds:?}");
    assert_eq!(fds_of(init), ["0", "1", "2"], "init fds: {init_fds:?}");

    parity::exec_detached(&env, "c1", "e1", &["sleep", "1000"]);
    let exec_pid = poll(Duration::from_secs(15), || {
        cgroup_procs(&env, "c1").into_iter().find(|p| {
            *p != init
                && fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .map(|c| c.starts_with("sleep\0"))
                    .unwrap_or(false)
        })
    })
    .expect("the exec's sleep never appeared in the container's cgroup");
    let exec_fds = fd_targets(exec_pid);
    eprintln!("[security] exec {exec_pid} fds: {exec_fds:?}");
    assert_eq!(fds_of(exec_pid), ["0", "1", "2"], "exec fds: {exec_fds:?}");
    kill_delete(&env, "c1");
}

// ---- 8. soak ----------------------------------------------------------------------------------

/// The fewest fds the shim holds over 2 s: a connection or pipe in flight right after a cycle
/// is not a leak.
fn settled_fds(pid: i32) -> usize {
    let mut least = fd_count(pid);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        least = least.min(fd_count(pid));
    }
    least
}

pub fn soak() {
    let cycles: usize = std::env::var("SLUICE_SOAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    assert!(cycles >= 20, "SLUICE_SOAK_CYCLES must be at least 20");
    let env = TestEnv::start("soak", Runtime::Sluice);
    let group = ann(GROUP_ANNOTATION, "soak");
    start_sleeper(&env, "anchor", &[&group]);
    let shim = shim_pid(&env);
    let started = Instant::now();
    let (mut injected, mut survived) = (0, 0);
    let mut base = (0u64, 0usize);
    let mut base_fds = Vec::new();
    let mut slowest = Duration::ZERO;
    for i in 0..cycles {
        let id = format!("s{i}");
        let t = Instant::now();
        env.run_detached(&id, &[&group], &["sleep", "1000"]);
        env.wait_task_status(&id, "RUNNING", Duration::from_secs(30));
        let fault = i % 10 == 9;
        if fault {
            env.set_fault("exec", Action::CrashDump, true);
            injected += 1;
        }
        let out = env.exec(&id, "e", &["sh", "-c", "exit 3"], Duration::from_secs(60));
        assert!(!out.timed_out(), "cycle {i}: exec hung:\n{out}");
        if fault {
            assert!(
                !out.success(),
                "cycle {i}: crash-dump exec succeeded?\n{out}"
            );
            assert!(
                ctr_error(&out).contains("runc exec"),
                "cycle {i}: {}",
                ctr_error(&out)
            );
            survived += 1;
            env.set_fault("", Action::None, false);
            let ok = env.exec(&id, "e2", &["sh", "-c", "exit 3"], Duration::from_secs(60));
            assert_eq!(ok.code(), Some(3), "cycle {i}: exec after the fault:\n{ok}");
        } else {
            assert_eq!(out.code(), Some(3), "cycle {i}: exec exit code:\n{out}");
        }
        env.kill(&id, "SIGKILL")
            .expect_success(&format!("cycle {i}: kill"));
        env.wait_task_status(&id, "STOPPED", Duration::from_secs(30));
        let del = env
            .task_delete(&id)
            .expect_success(&format!("cycle {i}: delete"));
        assert!(
            del.stderr_str().contains("exit code 137"),
            "cycle {i}: exit 137 not reported:\n{del}"
        );
        env.container_delete(&id)
            .expect_success(&format!("cycle {i}: container delete"));
        slowest = slowest.max(t.elapsed());
        assert_eq!(shim_pid(&env), shim, "cycle {i}: the group's shim changed");
        if i == 9 {
            base = (rss_kib(shim), settled_fds(shim));
            base_fds = fd_targets(shim as u32);
        }
    }
    let end = (rss_kib(shim), settled_fds(shim));
    if end.1 > base.1 + 2 {
        eprintln!(
            "[soak] shim fds at cycle 10: {base_fds:?}\n[soak] shim fds at the end: {:?}",
            fd_targets(shim as u32)
        );
    }
    eprintln!(
        "[soak] {cycles} cycles in {:?} (slowest {slowest:?}); faults injected {injected}, \
         survived {survived}; shim {shim} RSS {} KiB -> {} KiB, fds {} -> {}",
        started.elapsed(),
        base.0,
        end.0,
        base.1,
        end.1
    );
    assert!(
        end.1 <= base.1 + 2,
        "shim fds grew from {} to {} over {cycles} cycles",
        base.1,
        end.1
    );
    // Allocator noise: a few MiB. A leak per cycle would show as steady growth.
    let bound = 8 * 1024 + base.0 / 4;
    assert!(
        end.0 <= base.0 + bound,
        "shim RSS grew from {} KiB to {} KiB over {cycles} cycles",
        base.0,
        end.0
    );
    kill_delete(&env, "anchor");
}
