//! Parity with containerd's stock `io.containerd.runc.v2` shim (issue 3): terminals, log URIs,
//! pause/resume, ps, metrics, update, OOM events, stdin EOF, grouping and event order, each seen
//! the way a user of `ctr` (or of the shim's ttrpc API) sees it.
//!
//! Every test runs its scenario under sluice and then under the stock shim, each in its own
//! private containerd. Where the stock shim behaves differently, sluice's expected behaviour is
//! asserted and the stock behaviour is printed (and noted next to the assertion).
//!
//! Run: `cargo test -p sluice-integration --test parity -- --ignored --test-threads=2`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use sluice_integration::cgroups::{cgroup_v2_only, freezer_state, memory_limit};
use sluice_integration::cmd::{poll, CmdOutput};
use sluice_integration::containers::{
    self, exec_detached, kill_and_delete, run_detached_with_flags, run_with_flags,
};
use sluice_integration::events::{shorts, EventWatcher};
use sluice_integration::harness::CTR_TIMEOUT;
use sluice_integration::pty::PtyRun;
use sluice_integration::{procs, system, RunOpts, Runtime, TestEnv};

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn assert_code(out: &CmdOutput, expected: i32, what: &str) {
    assert_eq!(out.code(), Some(expected), "{what}: unexpected exit\n{out}");
}

/// Fails before any stock run when the sluice binary is missing.
fn both(mut scenario: impl FnMut(Runtime)) {
    system::sluice_shim_bin();
    scenario(Runtime::Sluice);
    scenario(Runtime::RuncV2);
}

/// A shell function for busybox sh: `w "ROWS COLS" label` waits (up to 15 s) until `stty size`
/// reports that size, then prints `label:<size>`. ctr sends its terminal's size only after the
/// task started, so the first `stty size` may still say `0 0`.
const WAIT_SIZE_FN: &str = "w() { i=0; while [ \"$(stty size)\" != \"$1\" ] && [ $i -lt 150 ]; \
                            do sleep 0.1; i=$((i+1)); done; echo \"$2:$(stty size)\"; }";

// ---- 1. terminals -----------------------------------------------------------------------------

fn tty_scenario(rt: Runtime) {
    let env = TestEnv::start("tty", rt);

    // `ctr run -t` on a 33x101 terminal, resized to 44x120 while the container runs.
    let script = format!("{WAIT_SIZE_FN}; tty; w '33 101' size1; w '44 120' size2; exit 6");
    let args = env.run_args_with_flags(
        "c1",
        false,
        &RunOpts::default(),
        &["--tty"],
        &["sh", "-c", &script],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = PtyRun::spawn(env.ctr_cmd(&args), 33, 101);
    let sized = run.wait_for_text("size1:", CTR_TIMEOUT);
    run.resize(44, 120);
    let out = run.wait(CTR_TIMEOUT);
    let what = format!("[{rt}] ctr run -t sh -c 'tty; stty size ...; exit 6'");
    assert!(sized, "{what}: the container never printed its size\n{out}");
    assert_eq!(out.code(), Some(6), "{what}: unexpected exit\n{out}");
    let text = out.text();
    assert!(
        text.contains("/dev/pts/"),
        "{what}: `tty` did not name a pty\n{out}"
    );
    assert!(
        text.contains("size1:33 101"),
        "{what}: the container's terminal did not get ctr's initial size 33x101\n{out}"
    );
    assert!(
        text.contains("size2:44 120"),
        "{what}: the resize to 44x120 (SIGWINCH → ResizePty) did not reach the container\n{out}"
    );

    // `ctr task exec -t` into a running container, on a 25x90 terminal.
    run_detached_with_flags(&env, "c2", &[], &["sleep", "1000"]);
    env.wait_task_status("c2", "RUNNING", Duration::from_secs(30));
    let fifo = env.fifo_dir().display().to_string();
    let script = format!("{WAIT_SIZE_FN}; tty; w '25 90' size; exit 9");
    let args = [
        "task",
        "exec",
        "--tty",
        "--fifo-dir",
        &fifo,
        "--exec-id",
        "e1",
        "c2",
        "sh",
        "-c",
        &script,
    ];
    let out = PtyRun::spawn(env.ctr_cmd(&args), 25, 90).wait(CTR_TIMEOUT);
    let what = format!("[{rt}] ctr task exec -t sh -c 'tty; stty size; exit 9'");
    assert_eq!(out.code(), Some(9), "{what}: unexpected exit\n{out}");
    let text = out.text();
    assert!(
        text.contains("/dev/pts/"),
        "{what}: `tty` did not name a pty\n{out}"
    );
    assert!(
        text.contains("size:25 90"),
        "{what}: the exec's terminal did not get ctr's size 25x90\n{out}"
    );
    kill_and_delete(&env, "c2");
}

/// `ctr run -t` and `ctr task exec -t`: the process has a pty, its exit code is ctr's, and
/// ctr's window size (initial, and after a SIGWINCH) reaches it through ResizePty.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn tty_run_exec_and_resize() {
    both(tty_scenario);
}

// ---- 2. file:// log URI -----------------------------------------------------------------------

const LOG_FILE_ROUNDS: usize = 5;

/// `LOG_FILE_ROUNDS` containers, one after the other, logging into one `file://` log; returns
/// the lines that did not arrive (or were lost later: the file must only be appended to).
fn log_file_scenario(rt: Runtime) -> Vec<String> {
    let env = TestEnv::start("logfile", rt);
    // The directory does not exist yet: the shim creates it (as the stock shim does).
    let log = env.dir.join("logs/c.log");
    let uri = format!("file://{}", log.display());
    let read = || fs::read_to_string(&log).unwrap_or_default();
    let mut expected = Vec::new();
    let mut missing = Vec::new();
    for i in 0..LOG_FILE_ROUNDS {
        let script = format!("echo out{i}-a; echo err{i} >&2; echo out{i}-b");
        let out = run_with_flags(
            &env,
            &format!("c{i}"),
            &["--log-uri", &uri],
            &RunOpts::default(),
            &["sh", "-c", &script],
        );
        let what = format!("[{rt}] ctr run --log-uri {uri} sh -c '{script}'");
        assert_code(&out, 0, &what);
        assert!(
            out.stdout.is_empty() && out.stderr.is_empty(),
            "{what}: output reached ctr instead of the file\n{out}"
        );
        let lines = [
            format!("out{i}-a\n"),
            format!("err{i}\n"),
            format!("out{i}-b\n"),
        ];
        let arrived = poll(Duration::from_secs(10), || {
            let t = read();
            lines.iter().all(|l| t.contains(l.as_str())).then_some(())
        });
        if arrived.is_none() {
            let t = read();
            for l in &lines {
                if !t.contains(l.as_str()) {
                    missing.push(format!("{l:?} of c{i} never reached the file"));
                }
            }
        }
        let t = read();
        if let (Some(a), Some(b)) = (t.find(&lines[0]), t.find(&lines[2])) {
            assert!(
                a < b,
                "{what}: stdout lines out of order in {}: {t:?}",
                log.display()
            );
        }
        expected.extend(lines);
    }
    let t = read();
    let lost: Vec<&String> = expected
        .iter()
        .filter(|l| {
            !t.contains(l.as_str()) && !missing.iter().any(|m| m.starts_with(&format!("{l:?}")))
        })
        .collect();
    for l in lost {
        missing.push(format!(
            "{l:?} arrived, then vanished: the file was not appended to"
        ));
    }
    eprintln!("[{rt}] {}:\n{t}", log.display());
    missing
}

/// `--log-uri file:///path`: each container's stdout and stderr are appended to the file
/// (which the shim creates, with its directory), nothing reaches ctr.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn log_uri_file() {
    system::sluice_shim_bin();
    let missing = log_file_scenario(Runtime::Sluice);
    assert!(
        missing.is_empty(),
        "[sluice] file:// log lost output:\n{}",
        missing.join("\n")
    );
    // containerd 1.6.20's stock shim now and then loses the stderr line of a container that
    // exits at once (seen: "err1\n" missing, both stdout lines there): recorded, not judged.
    let missing = log_file_scenario(Runtime::RuncV2);
    if missing.is_empty() {
        eprintln!(
            "[stock runc.v2] file:// log: every line of {LOG_FILE_ROUNDS} containers arrived"
        );
    } else {
        eprintln!(
            "[stock runc.v2] file:// log LOST output:\n{}",
            missing.join("\n")
        );
    }
}

// ---- 3. binary:// log URI ---------------------------------------------------------------------

/// A logger after containerd's `runtime/v2/logging` contract: stdout on fd 3, stderr on fd 4,
/// close fd 5 when ready. The shim gives it no PATH. The stock shim sends its logger SIGTERM
/// when it closes the task's IO (so that the logger flushes and exits): the script records
/// signals in `signals` and keeps draining until EOF, then writes `done`.
fn logger_script(out_dir: &Path) -> String {
    let d = out_dir.display();
    format!(
        r#"#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
d={d}
trap 'echo TERM >> "$d/signals"' TERM
env > "$d/env"
for a in "$@"; do echo "$a"; done > "$d/args"
cat <&3 > "$d/stdout" 4<&- 5>&- &
p1=$!
cat <&4 > "$d/stderr" 3<&- 5>&- &
p2=$!
exec 3<&- 4<&- 5>&-
# A trapped signal interrupts wait; wait again until both copies are done.
while kill -0 $p1 2>/dev/null || kill -0 $p2 2>/dev/null; do wait; done
echo done > "$d/done"
"#
    )
}

fn log_binary_scenario(rt: Runtime) {
    let env = TestEnv::start("logbin", rt);
    let out_dir = env.dir.join("logger-out");
    fs::create_dir_all(&out_dir).expect("mkdir logger-out");
    let logger = env.dir.join("logger.sh");
    fs::write(&logger, logger_script(&out_dir)).expect("write logger.sh");
    fs::set_permissions(&logger, fs::Permissions::from_mode(0o755)).expect("chmod logger.sh");
    let uri = format!("binary://{}?tag=x", logger.display());

    // More than a pipe holds on each stream.
    let out = run_with_flags(
        &env,
        "c1",
        &["--log-uri", &uri],
        &RunOpts::default(),
        &[
            "sh",
            "-c",
            "yes out | head -c 200000; yes err | head -c 100000 >&2; echo end-out; \
             echo end-err >&2",
        ],
    );
    let what = format!("[{rt}] ctr run --log-uri {uri} (200000 B stdout, 100000 B stderr)");
    assert_code(&out, 0, &what);
    assert!(
        out.stdout.is_empty(),
        "{what}: output reached ctr's stdout instead of the logger\n{out}"
    );
    let done = poll(Duration::from_secs(20), || {
        out_dir.join("done").exists().then_some(())
    });
    let read = |f: &str| fs::read(out_dir.join(f)).unwrap_or_default();
    assert!(
        done.is_some(),
        "{what}: the logger did not finish (EOF on fds 3 and 4) within 20s after the task \
         was deleted; stdout so far {} B, stderr {} B",
        read("stdout").len(),
        read("stderr").len()
    );
    let mut expected_out: Vec<u8> = b"out\n".iter().copied().cycle().take(200_000).collect();
    expected_out.extend_from_slice(b"end-out\n");
    let mut expected_err: Vec<u8> = b"err\n".iter().copied().cycle().take(100_000).collect();
    expected_err.extend_from_slice(b"end-err\n");
    let (got_out, got_err) = (read("stdout"), read("stderr"));
    assert!(
        got_out == expected_out,
        "{what}: the logger's fd 3 got {} bytes, expected {} (200000 B of 'out\\n' then \
         'end-out\\n'); tail {:?}",
        got_out.len(),
        expected_out.len(),
        String::from_utf8_lossy(&got_out[got_out.len().saturating_sub(64)..])
    );
    assert!(
        got_err == expected_err,
        "{what}: the logger's fd 4 got {} bytes, expected {}; tail {:?}",
        got_err.len(),
        expected_err.len(),
        String::from_utf8_lossy(&got_err[got_err.len().saturating_sub(64)..])
    );
    let env_text = String::from_utf8_lossy(&read("env")).into_owned();
    assert!(
        env_text.lines().any(|l| l == "CONTAINER_ID=c1"),
        "{what}: logger environment lacks CONTAINER_ID=c1: {env_text:?}"
    );
    assert!(
        env_text
            .lines()
            .any(|l| l == format!("CONTAINER_NAMESPACE={}", env.ns)),
        "{what}: logger environment lacks CONTAINER_NAMESPACE={}: {env_text:?}",
        env.ns
    );
    assert_eq!(
        String::from_utf8_lossy(&read("args")),
        "tag\nx\n",
        "{what}: logger arguments"
    );
    eprintln!(
        "[{rt}] signals the logger received: {:?}",
        String::from_utf8_lossy(&read("signals"))
    );
}

/// `--log-uri binary:///logger?tag=x`: the logger gets stdout on fd 3 and stderr on fd 4
/// (every byte, also past a pipe's capacity), CONTAINER_ID/CONTAINER_NAMESPACE and `tag x`.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn log_uri_binary() {
    both(log_binary_scenario);
}

// ---- 4. pause, resume, ps, metrics ------------------------------------------------------------

/// What the stock and sluice runs are compared on.
#[derive(Debug)]
struct PsAndMetrics {
    exec_info: String,
    metric_names: BTreeSet<String>,
}

fn pause_ps_metrics_scenario(rt: Runtime) -> PsAndMetrics {
    let env = TestEnv::start("pause", rt);
    let events = EventWatcher::start(&env);
    let limit: u64 = 128 << 20;
    let limit_s = limit.to_string();
    run_detached_with_flags(
        &env,
        "c1",
        &["--memory-limit", &limit_s],
        &["sleep", "1000"],
    );
    let init = env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));

    env.ctr(&["task", "pause", "c1"], CTR_TIMEOUT)
        .expect_success(&format!("[{rt}] ctr task pause c1"));
    env.wait_task_status("c1", "PAUSED", Duration::from_secs(10));
    assert_eq!(
        freezer_state(&env, "c1"),
        "FROZEN",
        "[{rt}] ctr task ls says PAUSED but the freezer cgroup is not frozen"
    );
    events.wait_for("/tasks/paused for c1", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/paused" && e.container_id() == Some("c1")
    });

    env.ctr(&["task", "resume", "c1"], CTR_TIMEOUT)
        .expect_success(&format!("[{rt}] ctr task resume c1"));
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(10));
    assert_eq!(
        freezer_state(&env, "c1"),
        "THAWED",
        "[{rt}] ctr task ls says RUNNING after resume but the freezer cgroup is not thawed"
    );
    events.wait_for("/tasks/resumed for c1", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/resumed" && e.container_id() == Some("c1")
    });
    // The container really runs again.
    let out = env.exec("c1", "probe", &["echo", "alive"], CTR_TIMEOUT);
    assert_code(&out, 0, &format!("[{rt}] ctr task exec after resume"));

    // ps: the init alone, then the init and a running exec with its exec id in INFO.
    let ps = containers::task_ps(&env, "c1");
    assert_eq!(
        ps.iter().map(|r| r.pid).collect::<Vec<_>>(),
        vec![init.pid],
        "[{rt}] ctr task ps c1 should list only the init pid {}: {ps:?}",
        init.pid
    );
    exec_detached(&env, "c1", "e1", &["sleep", "2000"]);
    let cg = format!("/{}/c1", env.ns);
    let exec_pid = poll(Duration::from_secs(10), || {
        procs::find(|p| p.argv == ["sleep", "2000"] && p.cgroups.iter().any(|c| c == &cg))
            .first()
            .map(|p| p.pid as u32)
    })
    .unwrap_or_else(|| panic!("[{rt}] exec e1 (sleep 2000) not found in cgroup {cg}"));
    let ps = containers::task_ps(&env, "c1");
    let init_row = ps.iter().find(|r| r.pid == init.pid);
    let exec_row = ps.iter().find(|r| r.pid == exec_pid);
    assert_eq!(ps.len(), 2, "[{rt}] ctr task ps c1: {ps:?}");
    let init_row = init_row.unwrap_or_else(|| panic!("[{rt}] init pid not in ps: {ps:?}"));
    let exec_row = exec_row.unwrap_or_else(|| panic!("[{rt}] exec pid not in ps: {ps:?}"));
    assert_eq!(
        init_row.info, "-",
        "[{rt}] the init process has no exec id: {ps:?}"
    );
    assert!(
        exec_row.info.contains("e1"),
        "[{rt}] ctr task ps must show exec id e1 in INFO for pid {exec_pid}: {ps:?}"
    );

    // metrics: the cgroup as ctr shows it.
    let (metrics, out) = containers::task_metrics(&env, "c1");
    let num = |k: &str| -> u64 {
        metrics
            .get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("[{rt}] ctr task metrics: no numeric {k}\n{out}"))
    };
    assert_eq!(
        num("pids.current"),
        2,
        "[{rt}] pids.current (init + exec)\n{out}"
    );
    if cgroup_v2_only() {
        assert!(num("memory.usage") > 0, "[{rt}] memory.usage\n{out}");
        assert_eq!(
            num("memory.usage_limit"),
            limit,
            "[{rt}] memory limit\n{out}"
        );
    } else {
        assert!(
            num("memory.usage_in_bytes") > 0,
            "[{rt}] memory.usage_in_bytes\n{out}"
        );
        assert_eq!(
            num("memory.limit_in_bytes"),
            limit,
            "[{rt}] memory.limit_in_bytes is not --memory-limit\n{out}"
        );
    }
    eprintln!("[{rt}] ctr task ps c1: {ps:?}\n[{rt}] ctr task metrics c1:\n{out}");
    kill_and_delete(&env, "c1");
    PsAndMetrics {
        exec_info: exec_row.info.clone(),
        metric_names: metrics.keys().cloned().collect(),
    }
}

/// pause → PAUSED, freezer FROZEN, /tasks/paused; resume → RUNNING, THAWED, /tasks/resumed;
/// `ctr task ps` shows the init pid and a running exec's pid with its exec id; `ctr task
/// metrics` shows the cgroup's values; the INFO text and metric names match the stock shim's.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn pause_resume_ps_metrics() {
    system::sluice_shim_bin();
    let sluice = pause_ps_metrics_scenario(Runtime::Sluice);
    let stock = pause_ps_metrics_scenario(Runtime::RuncV2);
    assert_eq!(
        sluice.exec_info, stock.exec_info,
        "ctr task ps INFO of an exec differs from the stock shim's"
    );
    assert_eq!(
        sluice.metric_names, stock.metric_names,
        "ctr task metrics shows other metrics than with the stock shim"
    );
}

// ---- 5. update ------------------------------------------------------------------------------

fn update_scenario(rt: Runtime) {
    let env = TestEnv::start("update", rt);
    run_detached_with_flags(&env, "c1", &[], &["sleep", "1000"]);
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    let limit: u64 = 64 << 20;
    let before = memory_limit(&env, "c1");
    assert_ne!(before, limit, "[{rt}] memory limit already {limit}");

    let addr = containers::shim_address(&env, "c1");
    let json = format!("{{\"memory\":{{\"limit\":{limit}}}}}");
    containers::update_resources(&addr, "c1", &json)
        .unwrap_or_else(|e| panic!("[{rt}] Update {json}: {e}"));
    assert_eq!(
        memory_limit(&env, "c1"),
        limit,
        "[{rt}] Update {json} did not reach the container's memory cgroup (was {before})"
    );
    if !cgroup_v2_only() {
        let (metrics, out) = containers::task_metrics(&env, "c1");
        assert_eq!(
            metrics.get("memory.limit_in_bytes").map(String::as_str),
            Some(limit.to_string().as_str()),
            "[{rt}] ctr task metrics after Update\n{out}"
        );
    }
    // The container still runs under the new limit.
    let out = env.exec("c1", "probe", &["echo", "alive"], CTR_TIMEOUT);
    assert_code(&out, 0, &format!("[{rt}] ctr task exec after Update"));

    let err = containers::update_resources(&addr, "nope", &json)
        .expect_err("Update of an unknown container must fail");
    eprintln!("[{rt}] Update of an unknown container: {err}");
    kill_and_delete(&env, "c1");
}

/// The Task service's `Update` (sent straight to the shim; ctr 1.6 has no command for it)
/// changes the memory limit in the container's cgroup; an unknown id is an error.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn update_memory_limit() {
    both(update_scenario);
}

// ---- 6. OOM -----------------------------------------------------------------------------------

fn oom_scenario(rt: Runtime) {
    let env = TestEnv::start("oom", rt);
    let events = EventWatcher::start(&env);
    // dd's 64 MiB buffer in a 16 MiB cgroup (no swap limit needed: the machine has none, and
    // runc leaves memsw at the memory limit only when asked). The second of sleep lets the
    // shim's OOM watch be in place, for both shims.
    let out = run_with_flags(
        &env,
        "c1",
        &["--memory-limit", "16777216"],
        &RunOpts::default(),
        &[
            "sh",
            "-c",
            "sleep 1; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
        ],
    );
    let what = format!("[{rt}] ctr run --memory-limit 16MiB dd bs=64M");
    assert_code(&out, 137, &what);
    let oom = events.wait_for("/tasks/oom for c1", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/oom" && e.container_id() == Some("c1")
    });
    let exit = events.wait_for("/tasks/exit of c1", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/exit" && e.container_id() == Some("c1") && e.id() == Some("c1")
    });
    assert_eq!(exit.exit_status(), Some(137), "[{rt}] exit event {exit:?}");
    eprintln!("[{rt}] OOM events: {:?}", shorts(&events.events_of("c1")));
    let _ = oom;
}

/// A container over its memory limit is OOM-killed: `ctr events` shows `/tasks/oom` for it
/// and the task exits 137.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn oom_event() {
    both(oom_scenario);
}

// ---- 7. stdin EOF -----------------------------------------------------------------------------

const EOF_ROUNDS: usize = 20;

/// `EOF_ROUNDS` times `x | ctr run --rm ... cat` (through `run`); returns the failures, after
/// cleaning up the containers of rounds that hung.
fn stdin_eof_rounds(env: &TestEnv, mut run: impl FnMut(&str) -> CmdOutput) -> Vec<String> {
    let rt = env.runtime;
    let mut failures = Vec::new();
    for i in 0..EOF_ROUNDS {
        let id = format!("s{i}");
        let out = run(&id);
        if out.code() == Some(0) && out.stdout == b"x" {
            continue;
        }
        failures.push(format!("round {i}:\n{out}"));
        if env.task(&id).is_some() {
            // The attached ctr was killed at the deadline: cat still waits for EOF.
            kill_and_delete(env, &id);
        } else if env.containers().contains(&id) {
            env.container_delete(&id)
                .expect_success(&format!("[{rt}] ctr container delete {id}"));
        }
    }
    failures
}

fn report_rounds(rt: Runtime, what: &str, failures: &[String]) {
    eprintln!(
        "[{rt}] {what}: {}/{EOF_ROUNDS} printed x and exited 0",
        EOF_ROUNDS - failures.len()
    );
    for f in failures {
        eprintln!("[{rt}] {f}");
    }
}

/// (a) `printf x | ctr run --rm ... cat`, 20 times in a row, each must print `x` and exit 0.
///
/// Caution: here stdin usually hits EOF while ctr 1.6 is still inside NewTask, before its
/// `stdinCloser` has the task handle (it gets it when NewTask returns), so ctr sends no
/// CloseIO; the only EOF cat can then get is the close of ctr's own end of the stdin FIFO. The
/// stock shim keeps a write end of its own (EOF only on CloseIO) and hangs in 19-20 runs of
/// 20. sluice takes a client that wrote its input and closed the FIFO within two seconds as
/// the end of stdin (`src/io/stdin.rs`), and otherwise holds a write end of its own like the
/// stock shim, so it passes this and `stdin_survives_a_detached_client` both.
///
/// (b) the same with stdin's EOF after the task runs, when ctr does send CloseIO: CloseIO must
/// deliver EOF every time, under both shims.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stdin_eof_every_time() {
    system::sluice_shim_bin();
    let env = TestEnv::start("eof", Runtime::Sluice);
    let failures = stdin_eof_rounds(&env, |id| {
        let opts = RunOpts {
            stdin: Some(b"x".to_vec()),
            timeout: Some(Duration::from_secs(20)),
            ..RunOpts::default()
        };
        env.run_with(id, &opts, &["cat"])
    });
    report_rounds(env.runtime, "printf x | ctr run --rm cat", &failures);
    assert!(
        failures.is_empty(),
        "[sluice] {}/{EOF_ROUNDS} runs of `printf x | ctr run --rm cat` failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let failures = stdin_eof_rounds(&env, |id| {
        containers::run_eof_when_running(&env, id, b"x", &["cat"], Duration::from_secs(20))
    });
    report_rounds(env.runtime, "x, EOF once RUNNING (CloseIO)", &failures);
    assert!(
        failures.is_empty(),
        "[sluice] {}/{EOF_ROUNDS} runs with CloseIO after start failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    drop(env);

    // The stock shim on (a) is measured, not judged (see above).
    let env = TestEnv::start("eof-stock", Runtime::RuncV2);
    let failures = stdin_eof_rounds(&env, |id| {
        let opts = RunOpts {
            stdin: Some(b"x".to_vec()),
            timeout: Some(Duration::from_secs(3)),
            ..RunOpts::default()
        };
        env.run_with(id, &opts, &["cat"])
    });
    report_rounds(
        env.runtime,
        "printf x | ctr run --rm cat (3s each)",
        &failures,
    );
    let failures = stdin_eof_rounds(&env, |id| {
        containers::run_eof_when_running(&env, id, b"x", &["cat"], Duration::from_secs(20))
    });
    report_rounds(env.runtime, "x, EOF once RUNNING (CloseIO)", &failures);
    assert!(
        failures.is_empty(),
        "[stock runc.v2] {}/{EOF_ROUNDS} runs with CloseIO after start failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// `ctr run --detach ... cat` whose own stdin stays open: ctr leaves after the start and its
/// end of the stdin FIFO closes with it. Returns whether cat still ran 3 s later.
fn stdin_after_detach_scenario(rt: Runtime) -> bool {
    let env = TestEnv::start("detach", rt);
    let args = env.run_args_with_flags("c1", true, &RunOpts::default(), &[], &["cat"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.ctr_cmd(&args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut ctr = cmd.spawn().expect("start ctr run --detach");
    // Held open (no data, no EOF) until ctr is gone.
    let stdin = ctr.stdin.take();
    let exited = poll(CTR_TIMEOUT, || ctr.try_wait().ok().flatten());
    let status = exited.unwrap_or_else(|| {
        let _ = ctr.kill();
        panic!("[{rt}] ctr run --detach cat did not return within {CTR_TIMEOUT:?}")
    });
    assert!(status.success(), "[{rt}] ctr run --detach cat: {status}");
    drop(stdin);
    std::thread::sleep(Duration::from_secs(3));
    let running = env.task("c1").map(|t| t.status);
    let still_running = running.as_deref() == Some("RUNNING");
    eprintln!(
        "[{rt}] `ctr run --detach cat` 3s after ctr left (its stdin FIFO end closed): {running:?}"
    );
    if !still_running {
        let log = env.log_tail(400);
        let stdin_lines: Vec<&str> = log.lines().filter(|l| l.contains("stdin:")).collect();
        eprintln!(
            "[{rt}] containerd log lines about stdin:\n{}",
            stdin_lines.join("\n")
        );
    }
    if still_running {
        // Only CloseIO ends the stdin: cat exits 0.
        let addr = containers::shim_address(&env, "c1");
        containers::close_stdin(&addr, "c1", "").unwrap_or_else(|e| panic!("[{rt}] {e}"));
        env.wait_task_status("c1", "STOPPED", Duration::from_secs(10));
        let out = env
            .task_delete("c1")
            .expect_success(&format!("[{rt}] ctr task delete c1"));
        assert!(
            !out.stderr_str().contains("exit code"),
            "[{rt}] cat did not exit 0 after CloseIO\n{out}"
        );
        env.container_delete("c1")
            .expect_success(&format!("[{rt}] ctr container delete c1"));
    }
    still_running
}

/// A client that leaves (`ctr run --detach`, a restarted containerd) is not the end of the
/// container's stdin: the stock shim keeps its own write end of the stdin FIFO, so only CloseIO
/// delivers EOF. sluice must do the same, and its CloseIO must then end the stdin.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stdin_survives_a_detached_client() {
    system::sluice_shim_bin();
    let stock = stdin_after_detach_scenario(Runtime::RuncV2);
    assert!(
        stock,
        "[stock runc.v2] expected cat to keep running after ctr --detach left"
    );
    let sluice = stdin_after_detach_scenario(Runtime::Sluice);
    assert!(
        sluice,
        "[sluice] cat got EOF when the detached ctr exited: sluice holds no write end of the \
         stdin FIFO, so a client leaving (or containerd restarting) closes the container's \
         stdin, unlike the stock shim, which ends it only on CloseIO"
    );
}

// ---- 8. grouping with events ------------------------------------------------------------------

fn group_scenario(rt: Runtime) {
    let env = TestEnv::start("group-ev", rt);
    let events = EventWatcher::start(&env);
    let ann = "io.containerd.runc.v2.group=g";
    env.run_detached("g1", &[ann], &["sleep", "1000"]);
    env.run_detached("g2", &[ann], &["sleep", "1000"]);
    let t1 = env.wait_task_status("g1", "RUNNING", Duration::from_secs(30));
    let t2 = env.wait_task_status("g2", "RUNNING", Duration::from_secs(30));
    let one = poll(Duration::from_secs(10), || {
        (env.shims(rt).len() == 1).then_some(())
    });
    assert!(
        one.is_some(),
        "[{rt}] expected one shim for g1 and g2: {:?}",
        env.shims(rt)
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    let (a1, a2) = (
        containers::shim_address(&env, "g1"),
        containers::shim_address(&env, "g2"),
    );
    assert_eq!(a1, a2, "[{rt}] g1 and g2 must be served at one address");
    let socket = a1
        .strip_prefix("unix://")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| panic!("[{rt}] shim address {a1:?} is not unix://"));
    assert!(
        socket.exists(),
        "[{rt}] shim socket {} missing",
        socket.display()
    );

    kill_and_delete(&env, "g1");
    assert_eq!(
        env.shims(rt).len(),
        1,
        "[{rt}] the group's shim must stay while g2 lives"
    );
    let out = env.exec("g2", "e1", &["echo", "still-here"], CTR_TIMEOUT);
    let what = format!("[{rt}] ctr task exec g2 after g1 was deleted");
    assert_code(&out, 0, &what);
    assert_eq!(out.stdout_str(), "still-here\n", "{what}\n{out}");
    kill_and_delete(&env, "g2");

    let gone = poll(Duration::from_secs(15), || {
        env.shims(rt).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "[{rt}] the group's shim still runs 15s after its last task was deleted"
    );
    assert!(
        !socket.exists(),
        "[{rt}] the group's shim exited but left {} behind",
        socket.display()
    );

    for (id, task) in [("g1", &t1), ("g2", &t2)] {
        events.wait_for(&format!("/tasks/delete of {id}"), EVENT_TIMEOUT, |e| {
            e.topic == "/tasks/delete" && e.container_id() == Some(id)
        });
        let own = events.events_of(id);
        // The init's own lifecycle (g2 also has an exec, whose events are checked elsewhere).
        let lifecycle: Vec<String> = own
            .iter()
            .filter(|e| match e.topic.as_str() {
                "/tasks/create" | "/tasks/start" | "/tasks/delete" => true,
                "/tasks/exit" => e.id() == Some(id),
                _ => false,
            })
            .map(|e| e.short())
            .collect();
        assert_eq!(
            lifecycle,
            [
                format!("create({id})"),
                format!("start({id})"),
                format!("exit({id})"),
                format!("delete({id})"),
            ],
            "[{rt}] {id}'s own task events, in order (all of them: {:?})",
            shorts(&own)
        );
        let start = own
            .iter()
            .find(|e| e.topic == "/tasks/start")
            .expect("start");
        assert_eq!(
            start.pid(),
            Some(u64::from(task.pid)),
            "[{rt}] /tasks/start of {id} names another pid than ctr task ls"
        );
    }
}

/// Two containers of one `io.containerd.runc.v2.group` share a shim; each gets its own
/// create/start/exit/delete events; the second survives the first's deletion; after both are
/// deleted the shim exits and removes its socket.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn group_events_and_shim_lifetime() {
    both(group_scenario);
}

// ---- 9. event order ---------------------------------------------------------------------------

/// Returns the observed order (short forms).
fn event_order_scenario(rt: Runtime) -> Vec<String> {
    let env = TestEnv::start("evorder", rt);
    let events = EventWatcher::start(&env);
    env.run_detached("c1", &[], &["sleep", "1000"]);
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    let out = env.exec("c1", "e1", &["sh", "-c", "exit 3"], CTR_TIMEOUT);
    assert_code(&out, 3, &format!("[{rt}] ctr task exec e1 sh -c 'exit 3'"));
    // An exec still running when the init dies: its exit must come before the init's.
    exec_detached(&env, "c1", "e2", &["sleep", "2000"]);
    events.wait_for("/tasks/exec-started of e2", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/exec-started" && e.exec_id() == Some("e2")
    });
    kill_and_delete(&env, "c1");
    events.wait_for("/tasks/delete of c1", EVENT_TIMEOUT, |e| {
        e.topic == "/tasks/delete" && e.container_id() == Some("c1")
    });
    let all = events.events_of("c1");
    let exit_status = |short: &str| {
        all.iter()
            .find(|e| e.short() == short)
            .and_then(|e| e.exit_status())
    };
    assert_eq!(exit_status("exit(c1/e1)"), Some(3), "[{rt}] {all:?}");
    assert_eq!(exit_status("exit(c1/e2)"), Some(137), "[{rt}] {all:?}");
    assert_eq!(exit_status("exit(c1)"), Some(137), "[{rt}] {all:?}");
    assert_eq!(exit_status("delete(c1)"), Some(137), "[{rt}] {all:?}");
    shorts(&all)
}

const EXPECTED_ORDER: [&str; 10] = [
    "create(c1)",
    "start(c1)",
    "exec-added(c1/e1)",
    "exec-started(c1/e1)",
    "exit(c1/e1)",
    "exec-added(c1/e2)",
    "exec-started(c1/e2)",
    "exit(c1/e2)",
    "exit(c1)",
    "delete(c1)",
];

/// One container with two execs (one exits by itself, one dies with the init): `ctr events`
/// shows create, start, exec-added, exec-started, the exec's exit, ..., the init's exit (after
/// every exec's), delete, in that order, with the right exit statuses.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn event_order() {
    system::sluice_shim_bin();
    let sluice = event_order_scenario(Runtime::Sluice);
    assert_eq!(
        sluice, EXPECTED_ORDER,
        "[sluice] task events of c1, in order"
    );
    // containerd 1.6's stock shim publishes the init's exit without waiting for the exits of
    // execs that die with it, so it may report them the other way round: recorded, not judged.
    let stock = event_order_scenario(Runtime::RuncV2);
    if stock == EXPECTED_ORDER {
        eprintln!("[stock runc.v2] same event order as sluice");
    } else {
        eprintln!("[stock runc.v2] DIFFERENT event order: {stock:?}");
    }
}
