//! The triggers: one function per executable row, run once per shim. Each starts its own
//! containerd, runs the trigger with short deadlines (a stock hang is bounded, then undone
//! with `unwedge` or a thaw), and reports what a user would notice as a [`Measured`].

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use containerd_shim_protos::api::{
    DeleteRequest, DeleteResponse, Empty, PidsRequest, PidsResponse, ShutdownRequest, StateRequest,
    StateResponse,
};

use sluice_integration::annotations::GROUP_ANNOTATION;
use sluice_integration::cmd::{self, poll};
use sluice_integration::events::EventWatcher;
use sluice_integration::fault::Action;
use sluice_integration::harness::{RunOpts, TestEnv};
use sluice_integration::pty::PtyRun;
use sluice_integration::{containers, procs, Runtime};

use super::shim::{
    container_procs, leftovers, one_shim, remove, rpc, settled_fds, zombie_children, SmallFs,
};
use super::verdict::{Measured, Verdict};

const UP: Duration = Duration::from_secs(30);
/// How long a removal may take to leave nothing behind.
const SETTLE: Duration = Duration::from_secs(10);

fn env(row: &str, rt: Runtime) -> TestEnv {
    let tag = match rt {
        Runtime::Sluice => "s",
        Runtime::RuncV2 => "k",
    };
    TestEnv::start(&format!("{row}-{tag}"), rt)
}

fn sleeper(env: &TestEnv, id: &str, annotations: &[&str]) -> u32 {
    env.run_detached(id, annotations, &["sleep", "100000"]);
    env.wait_task_status(id, "RUNNING", UP).pid
}

fn removed_clean(m: &mut Measured, env: &TestEnv, id: &str) {
    let left = remove(env, id, SETTLE);
    m.check(
        !left.is_empty(),
        Verdict::Leak,
        format!("{id} removed: {left:?}"),
    );
}

// ---- a child keeps an exec's stdout open ---------------------------------------------------

/// How long an exec or a run whose child holds its stdout may take to return: the stock shim
/// gives the copy 2 s after the exit (`waitTimeout` in process/exec.go and init.go).
const HELD_BOUND: Duration = Duration::from_secs(5);
/// ctr is killed after this: the holder sleeps 600 s.
const HELD_LIMIT: Duration = Duration::from_secs(12);

pub fn held_stdout(rt: Runtime) -> Measured {
    let env = env("held", rt);
    let mut m = Measured::default();
    sleeper(&env, "c1", &[]);
    let script = ["sh", "-c", "sleep 600 & echo ok"];
    let ex = env.exec("c1", "e1", &script, HELD_LIMIT);
    m.figure(format!(
        "exec: code {:?} after {:.1} s, stdout {:?}",
        ex.code(),
        ex.elapsed.as_secs_f64(),
        ex.stdout_str()
    ));
    m.check(
        ex.timed_out() || ex.elapsed > HELD_BOUND,
        Verdict::Hang,
        format!(
            "exec returned after {:.1} s (bound {HELD_BOUND:?}, killed at {HELD_LIMIT:?})",
            ex.elapsed.as_secs_f64()
        ),
    );
    m.check(
        ex.stdout_str() != "ok\n",
        Verdict::Loss,
        format!("exec printed {:?}, not \"ok\\n\"", ex.stdout_str()),
    );
    let opts = RunOpts {
        timeout: Some(HELD_LIMIT),
        ..RunOpts::default()
    };
    let run = env.run_with("c2", &opts, &script);
    m.figure(format!(
        "init: code {:?} after {:.1} s, stdout {:?}",
        run.code(),
        run.elapsed.as_secs_f64(),
        run.stdout_str()
    ));
    m.check(
        run.timed_out() || run.elapsed > HELD_BOUND,
        Verdict::Hang,
        format!("ctr run returned after {:.1} s", run.elapsed.as_secs_f64()),
    );
    m.check(
        run.stdout_str() != "ok\n" || run.code() != Some(0),
        Verdict::Loss,
        format!("ctr run: {:?} code {:?}", run.stdout_str(), run.code()),
    );
    env.unwedge();
    removed_clean(&mut m, &env, "c1");
    if env.containers().iter().any(|c| c == "c2") {
        removed_clean(&mut m, &env, "c2");
    }
    m
}

// ---- exit events out of order or never sent -------------------------------------------------

/// Execs started against each short-lived init, and how many such inits.
const RACE_ROUNDS: usize = 4;
const RACE_EXECS: usize = 3;
/// Detached execs running when the init is SIGKILLed (the 500, scaled down).
const KILLED_EXECS: usize = 50;

/// Checks the task events of `id`: every exec that started has one exit, and the init's exit
/// comes after all of them.
fn exits_in_order(m: &mut Measured, w: &EventWatcher, id: &str) {
    let evs = w.events_of(id);
    let started: Vec<String> = evs
        .iter()
        .filter(|e| e.topic == "/tasks/exec-started")
        .filter_map(|e| e.exec_id().map(str::to_string))
        .collect();
    let exit_pos = |pid: &str| {
        evs.iter()
            .enumerate()
            .filter(|(_, e)| e.topic == "/tasks/exit" && e.id() == Some(pid))
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    };
    let init = exit_pos(id);
    m.check(
        init.len() != 1,
        Verdict::Loss,
        format!("{id}: {} exits of the init", init.len()),
    );
    let mut missing = Vec::new();
    let mut late = Vec::new();
    for e in &started {
        let at = exit_pos(e);
        if at.is_empty() {
            missing.push(e.clone());
        } else if init.first().is_some_and(|i| at[0] > *i) {
            late.push(e.clone());
        }
    }
    m.check(
        !missing.is_empty(),
        Verdict::Loss,
        format!(
            "{id}: no exit for {} of {} started execs: {missing:?}",
            missing.len(),
            started.len()
        ),
    );
    m.check(
        !late.is_empty(),
        Verdict::Disorder,
        format!(
            "{id}: exits of {} execs after the init's: {late:?}",
            late.len()
        ),
    );
    m.figure(format!(
        "{id}: {} execs started, {} exits missing, {} after the init's exit",
        started.len(),
        missing.len(),
        late.len()
    ));
}

pub fn exit_order(rt: Runtime) -> Measured {
    let env = env("order", rt);
    let w = EventWatcher::start(&env);
    let mut m = Measured::default();

    // Six concurrent execs, each with its own code.
    sleeper(&env, "c1", &[]);
    let codes: Vec<(usize, Option<i32>)> = thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                let env = &env;
                s.spawn(move || {
                    let script = format!("usleep 200000; exit {}", 10 + i);
                    let out = env.exec("c1", &format!("e{i}"), &["sh", "-c", &script], UP);
                    (i, out.code())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("exec thread"))
            .collect()
    });
    let wrong: Vec<_> = codes
        .iter()
        .filter(|(i, c)| *c != Some(10 + *i as i32))
        .collect();
    m.check(
        !wrong.is_empty(),
        Verdict::Loss,
        format!("six concurrent execs, wrong codes: {wrong:?}"),
    );

    // Short-lived inits with execs racing their exit.
    for r in 0..RACE_ROUNDS {
        let id = format!("r{r}");
        env.run_detached(&id, &[], &["sh", "-c", "usleep 300000"]);
        thread::scope(|s| {
            for x in 0..RACE_EXECS {
                let (env, id) = (&env, &id);
                s.spawn(move || {
                    let args = env.exec_args(id, &format!("x{x}"), true, &["sleep", "10"]);
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    // Some come too late to start: that is the race, not a failure.
                    let _ = env.ctr(&args, UP);
                });
            }
        });
    }
    // Many execs running when the init is SIGKILLed.
    sleeper(&env, "c3", &[]);
    thread::scope(|s| {
        for t in 0..10 {
            let env = &env;
            s.spawn(move || {
                for k in 0..KILLED_EXECS / 10 {
                    let eid = format!("k{t}-{k}");
                    containers::exec_detached(env, "c3", &eid, &["sleep", "600"]);
                }
            });
        }
    });
    env.kill("c3", "SIGKILL").expect_success("kill c3");
    for id in ["c1", "c3"]
        .into_iter()
        .map(String::from)
        .chain((0..RACE_ROUNDS).map(|r| format!("r{r}")))
    {
        if id == "c1" {
            env.kill("c1", "SIGKILL").expect_success("kill c1");
        }
        let stopped = poll(UP, || {
            env.task(&id)
                .is_some_and(|t| t.status == "STOPPED")
                .then_some(())
        });
        m.check(
            stopped.is_none(),
            Verdict::Hang,
            format!("{id} not STOPPED"),
        );
    }
    thread::sleep(Duration::from_secs(2));
    for id in ["c1", "c3"]
        .into_iter()
        .map(String::from)
        .chain((0..RACE_ROUNDS).map(|r| format!("r{r}")))
    {
        exits_in_order(&mut m, &w, &id);
        removed_clean(&mut m, &env, &id);
    }
    m
}

// ---- reaper fan-out ------------------------------------------------------------------------

/// The 1,000 execs 50 at once, scaled down.
const STORM_EXECS: usize = 200;
const STORM_WIDTH: usize = 20;
const SLOW_LINES: usize = 200_000;

pub fn fan_out(rt: Runtime) -> Measured {
    let env = env("fanout", rt);
    let w = EventWatcher::start(&env);
    let mut m = Measured::default();
    sleeper(&env, "c1", &[]);
    let shim = one_shim(&env, rt);
    let fds0 = settled_fds(shim);
    let thr0 = procs::threads(shim);

    // The slow waiter: an exec whose client stops reading.
    let lines = SLOW_LINES.to_string();
    let args = env.exec_args("c1", "slow", false, &["seq", "1", &lines]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let slow = cmd::spawn(env.ctr_cmd(&args), None);
    thread::sleep(Duration::from_millis(500));
    procs::signal(slow.pid() as i32, libc::SIGSTOP);

    let started = Instant::now();
    let wrong: Vec<(usize, Option<i32>)> = thread::scope(|s| {
        let hs: Vec<_> = (0..STORM_WIDTH)
            .map(|t| {
                let env = &env;
                s.spawn(move || {
                    let mut wrong = Vec::new();
                    for i in (t..STORM_EXECS).step_by(STORM_WIDTH) {
                        let code = (i % 100 + 1) as i32;
                        let out = env.exec(
                            "c1",
                            &format!("x{i}"),
                            &["sh", "-c", &format!("exit {code}")],
                            UP,
                        );
                        if out.code() != Some(code) {
                            wrong.push((i, out.code()));
                        }
                    }
                    wrong
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("exec thread"))
            .collect()
    });
    let storm = started.elapsed();
    procs::signal(slow.pid() as i32, libc::SIGCONT);
    let out = slow.wait(UP);
    let got = out.stdout_str();
    let n = got.lines().count();
    m.figure(format!(
        "{STORM_EXECS} execs {STORM_WIDTH} at once in {:.1} s, {} wrong codes; the stopped \
         client's exec: {n} of {SLOW_LINES} lines, code {:?}",
        storm.as_secs_f64(),
        wrong.len(),
        out.code()
    ));
    m.check(
        !wrong.is_empty(),
        Verdict::Loss,
        format!("execs whose exit code was lost or wrong: {wrong:?}"),
    );
    m.check(
        n != SLOW_LINES || !got.ends_with(&format!("\n{SLOW_LINES}\n")),
        Verdict::Loss,
        format!("the slow client got {n} of {SLOW_LINES} lines"),
    );
    thread::sleep(Duration::from_secs(2));
    let evs = w.events_of("c1");
    let mut lost = Vec::new();
    for i in 0..STORM_EXECS {
        let id = format!("x{i}");
        let code = (i % 100 + 1) as u64;
        let ok = evs.iter().any(|e| {
            e.topic == "/tasks/exit" && e.id() == Some(id.as_str()) && e.exit_status() == Some(code)
        });
        if !ok {
            lost.push(id);
        }
    }
    m.check(
        !lost.is_empty(),
        Verdict::Loss,
        format!("{} exit events missing: {lost:?}", lost.len()),
    );
    let fds1 = settled_fds(shim);
    let thr1 = procs::threads(shim);
    m.figure(format!(
        "shim fds {fds0} -> {fds1}, threads {thr0} -> {thr1}"
    ));
    // Per exec, a leak would show by the hundred; one or two are a connection or a timer.
    m.check(
        fds1 > fds0 + 2,
        Verdict::Leak,
        format!("shim fds {fds0} -> {fds1}"),
    );
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- a lock held across a slow runc call ----------------------------------------------------

/// The issue's `runc create` of 10 s, a little shorter.
const SLOW_CREATE: u64 = 8;
/// A sibling's request must be answered within this while the create runs.
const SIBLING_BOUND: Duration = Duration::from_secs(3);

pub fn slow_create(rt: Runtime) -> Measured {
    let env = env("lock", rt);
    let mut m = Measured::default();
    let group = format!("{GROUP_ANNOTATION}=g1");
    sleeper(&env, "c1", &[&group]);
    env.set_fault("create", Action::Slow { secs: SLOW_CREATE }, true);
    let args = env.run_args_with_flags(
        "c2",
        true,
        &RunOpts::default(),
        &["--annotation", &group],
        &["sleep", "100000"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let creating = cmd::spawn(env.ctr_cmd(&args), None);
    poll(UP, || (env.fault_fired("create") > 0).then_some(()))
        .expect("the slow create never started");
    thread::sleep(Duration::from_millis(500));

    let deadline = SIBLING_BOUND + Duration::from_secs(2);
    let mut req = StateRequest::new();
    req.id = "c1".into();
    let (state, t_state) = rpc::<_, StateResponse>(&env, "c1", "State", &req, deadline);
    let mut req = PidsRequest::new();
    req.id = "c1".into();
    let (pids, t_pids) = rpc::<_, PidsResponse>(&env, "c1", "Pids", &req, deadline);
    let ex = env.exec("c1", "e1", &["echo", "hi"], deadline);
    m.figure(format!(
        "during a {SLOW_CREATE} s create of c2: State(c1) {} in {:.1} s, Pids(c1) {} in {:.1} s, \
         exec into c1 {} in {:.1} s",
        state
            .as_ref()
            .map(|_| "OK".into())
            .unwrap_or_else(|e| e.0.clone()),
        t_state.as_secs_f64(),
        pids.as_ref()
            .map(|_| "OK".into())
            .unwrap_or_else(|e| e.0.clone()),
        t_pids.as_secs_f64(),
        if ex.success() { "OK" } else { "failed" },
        ex.elapsed.as_secs_f64()
    ));
    for (what, ok, t) in [
        ("State", state.is_ok(), t_state),
        ("Pids", pids.is_ok(), t_pids),
        (
            "exec",
            ex.success() && ex.stdout_str() == "hi\n",
            ex.elapsed,
        ),
    ] {
        m.check(
            !ok || t > SIBLING_BOUND,
            Verdict::Hang,
            format!(
                "{what} of the sibling: ok={ok} after {:.1} s",
                t.as_secs_f64()
            ),
        );
    }
    let c = creating.wait(UP);
    m.check(
        !c.success(),
        Verdict::Hang,
        format!("the slow create itself: {c}"),
    );
    removed_clean(&mut m, &env, "c2");
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- Delete not idempotent -------------------------------------------------------------------

const SLOW_DELETE: u64 = 4;

pub fn delete_retry(rt: Runtime) -> Measured {
    let env = env("delete", rt);
    let mut m = Measured::default();
    env.run_detached("c1", &[], &["sh", "-c", "exit 3"]);
    env.wait_task_status("c1", "STOPPED", UP);
    let shim = one_shim(&env, rt);
    env.set_fault("delete", Action::Slow { secs: SLOW_DELETE }, true);
    let mut req = DeleteRequest::new();
    req.id = "c1".into();
    let (first, t1) = rpc::<_, DeleteResponse>(&env, "c1", "Delete", &req, Duration::from_secs(1));
    let (retry, t2) = rpc::<_, DeleteResponse>(&env, "c1", "Delete", &req, UP);
    let show = |r: &Result<DeleteResponse, (String, String)>| match r {
        Ok(d) => format!("OK exit_status {}", d.exit_status),
        Err((c, t)) => format!("{c} {t:?}"),
    };
    m.figure(format!(
        "Delete with the client's 1 s deadline over a {SLOW_DELETE} s runc delete: {} after \
         {:.1} s; the retry: {} after {:.1} s",
        show(&first),
        t1.as_secs_f64(),
        show(&retry),
        t2.as_secs_f64()
    ));
    let answered = matches!(&retry, Ok(d) if d.exit_status == 3);
    m.check(
        !answered,
        Verdict::Leak,
        format!(
            "the retried Delete answered {}: containerd keeps the task and never shuts the shim \
             down",
            show(&retry)
        ),
    );
    if answered {
        let (sd, t3) = rpc::<_, Empty>(
            &env,
            "c1",
            "Shutdown",
            &ShutdownRequest {
                id: "c1".into(),
                ..Default::default()
            },
            Duration::from_secs(5),
        );
        let gone = poll(Duration::from_secs(10), || {
            (!procs::alive(shim)).then_some(())
        });
        m.figure(format!(
            "Shutdown: {} after {:.1} s; shim {}",
            if sd.is_ok() {
                "OK".into()
            } else {
                show_err(&sd)
            },
            t3.as_secs_f64(),
            if gone.is_some() {
                "exited"
            } else {
                "still running"
            }
        ));
        m.check(
            gone.is_none(),
            Verdict::Leak,
            "the shim still runs 10 s after Shutdown",
        );
    }
    let left = leftovers(&env, "c1");
    m.check(
        runc_state_left(&left),
        Verdict::Leak,
        format!("after Delete: {left:?}"),
    );
    m
}

fn show_err<T>(r: &Result<T, (String, String)>) -> String {
    match r {
        Ok(_) => "OK".into(),
        Err((c, t)) => format!("{c} {t:?}"),
    }
}

fn runc_state_left(left: &[String]) -> bool {
    left.iter().any(|l| l.starts_with("runc state"))
}

// ---- the container blocks when nobody reads --------------------------------------------------

fn count_of(env: &TestEnv, name: &str) -> u64 {
    for _ in 0..200 {
        if let Some(n) = fs::read_to_string(env.rootfs.join("tmp").join(name))
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            return n;
        }
        thread::sleep(Duration::from_millis(5));
    }
    0
}

pub fn full_log(rt: Runtime) -> Measured {
    let env = env("fulllog", rt);
    let mut m = Measured::default();
    let fsdir = env.dir.join("logfs");
    let small = SmallFs::mount(&fsdir, "256k");
    let log = fsdir.join("c1.log");
    let uri = format!("file://{}", log.display());
    let script = "i=0; while :; do i=$((i+1)); echo $i > /tmp/count-c1; \
                  echo \"line $i ................................................\"; done";
    containers::run_detached_with_flags(&env, "c1", &["--log-uri", &uri], &["sh", "-c", script]);
    env.wait_task_status("c1", "RUNNING", UP);
    // Full: the log stops growing.
    let size = || fs::metadata(&log).map(|md| md.len()).unwrap_or(0);
    let full = poll(UP, || {
        let a = size();
        thread::sleep(Duration::from_millis(500));
        (a > 0 && size() == a).then_some(a)
    });
    m.check(full.is_none(), Verdict::Hang, "the log never filled up");
    // Past any buffer a shim may still fill after the log refused its writes.
    thread::sleep(Duration::from_secs(3));
    let c1 = count_of(&env, "count-c1");
    thread::sleep(Duration::from_secs(3));
    let c2 = count_of(&env, "count-c1");
    let wchans: Vec<String> = container_procs(&env, "c1")
        .iter()
        .map(|(pid, st, _)| {
            let w = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            format!("{pid} {st} {w}")
        })
        .collect();
    m.figure(format!(
        "log full at {} bytes; the container's counter {c1} -> {c2} in 3 s; its processes: \
         {wchans:?}",
        full.unwrap_or(0)
    ));
    m.check(
        c2 == c1,
        Verdict::Blocked,
        format!("the container stopped writing once its log was full ({c1} -> {c2})"),
    );
    let ex = env.exec("c1", "e1", &["echo", "alive"], Duration::from_secs(10));
    m.check(
        !ex.success(),
        Verdict::Hang,
        format!("exec while the log is full: {ex}"),
    );
    removed_clean(&mut m, &env, "c1");
    drop(small);
    m
}

// ---- terminal and FIFO descriptors kept after their process ---------------------------------

const TTY_CONTAINERS: usize = 5;

fn tty_exec(
    env: &TestEnv,
    id: &str,
    exec_id: &str,
    argv: &[&str],
) -> sluice_integration::pty::PtyOutput {
    let mut args = env.exec_args(id, exec_id, false, argv);
    args.insert(2, "--tty".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    PtyRun::spawn(env.ctr_cmd(&args), 24, 80).wait(UP)
}

pub fn tty_fds(rt: Runtime) -> Measured {
    let env = env("ttyfds", rt);
    let mut m = Measured::default();
    let group = format!("{GROUP_ANNOTATION}=g1");
    sleeper(&env, "c0", &[&group]);
    let shim = one_shim(&env, rt);
    let fds0 = settled_fds(shim);
    for i in 0..TTY_CONTAINERS {
        let id = format!("t{i}");
        // ctr wants a console for --tty even when detached.
        let args = env.run_args_with_flags(
            &id,
            true,
            &RunOpts::default(),
            &["--tty", "--annotation", &group],
            &["sh", "-c", "echo hi; sleep 100000"],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = PtyRun::spawn(env.ctr_cmd(&args), 24, 80).wait(UP);
        assert_eq!(run.code(), Some(0), "[{rt}] ctr run -d -t {id}: {run}");
        env.wait_task_status(&id, "RUNNING", UP);
        let out = tty_exec(&env, "c0", &format!("x{i}"), &["echo", "hi"]);
        m.check(
            out.code() != Some(0) || !out.text().contains("hi"),
            Verdict::Loss,
            format!("tty exec {i}: {out}"),
        );
    }
    let mid = procs::fd_count(shim);
    for i in 0..TTY_CONTAINERS {
        removed_clean(&mut m, &env, &format!("t{i}"));
    }
    m.check(
        env.shims(rt).len() != 1,
        Verdict::Leak,
        "the group's shim is gone or doubled",
    );
    let fds1 = settled_fds(shim);
    m.figure(format!(
        "group shim fds: {fds0} before, {mid} with {TTY_CONTAINERS} tty containers and after \
         {TTY_CONTAINERS} tty execs, {fds1} after their removal"
    ));
    m.check(
        fds1 > fds0,
        Verdict::Leak,
        format!(
            "{} descriptors kept after the tty containers and execs",
            fds1 - fds0
        ),
    );
    removed_clean(&mut m, &env, "c0");
    m
}

// ---- terminal output cut short ---------------------------------------------------------------

/// The 100 runs, scaled down.
const TTY_RUNS: usize = 10;

pub fn tty_output(rt: Runtime) -> Measured {
    let env = env("ttyout", rt);
    let mut m = Measured::default();
    sleeper(&env, "c1", &[]);
    let mut short = Vec::new();
    let started = Instant::now();
    for n in 0..TTY_RUNS {
        let out = tty_exec(&env, "c1", &format!("t{n}"), &["seq", "1", "100000"]);
        let text = out.text();
        // Both terminals may turn "\n" into "\r\n": count numbers, whatever the line ends.
        let numbers: Vec<&str> = text
            .split(['\r', '\n'])
            .filter(|l| l.parse::<u32>().is_ok())
            .collect();
        if out.code() != Some(0) || numbers.len() != 100_000 || numbers.last() != Some(&"100000") {
            short.push((n, numbers.len(), out.code()));
            if short.len() == 1 {
                let tail = &out.output[out.output.len().saturating_sub(40)..];
                m.figure(format!(
                    "first short run ends {:?}",
                    String::from_utf8_lossy(tail)
                ));
            }
        }
    }
    m.figure(format!(
        "{TTY_RUNS} runs of `seq 1 100000` on a tty in {:.1} s; short: {short:?}",
        started.elapsed().as_secs_f64()
    ));
    m.check(
        !short.is_empty(),
        Verdict::Loss,
        format!("{} of {TTY_RUNS} runs cut short", short.len()),
    );
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- a logger binary that exits at once ------------------------------------------------------

const LOGGER_BOUND: Duration = Duration::from_secs(10);

pub fn quitting_logger(rt: Runtime) -> Measured {
    let env = env("logger", rt);
    let mut m = Measured::default();
    let logger: PathBuf = env.dir.join("quit-logger");
    fs::write(&logger, "#!/bin/sh\nexit 0\n").expect("write logger");
    fs::set_permissions(&logger, fs::Permissions::from_mode(0o755)).expect("chmod logger");
    let uri = format!("binary://{}", logger.display());
    let args = env.run_args_with_flags(
        "c1",
        true,
        &RunOpts::default(),
        &["--log-uri", &uri],
        &["sh", "-c", "echo hi; sleep 100000"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.ctr(&args, LOGGER_BOUND + Duration::from_secs(5));
    m.figure(format!(
        "ctr run with a logger that exits at once: {} after {:.1} s: {}",
        if out.timed_out() {
            "no answer".to_string()
        } else {
            format!("code {:?}", out.code())
        },
        out.elapsed.as_secs_f64(),
        cmd::ctr_error(&out).trim()
    ));
    m.check(
        out.timed_out() || out.elapsed > LOGGER_BOUND,
        Verdict::Hang,
        format!("ctr run took {:.1} s", out.elapsed.as_secs_f64()),
    );
    if out.success() {
        let ex = env.exec("c1", "e1", &["echo", "alive"], Duration::from_secs(10));
        m.check(!ex.success(), Verdict::Hang, format!("exec: {ex}"));
    }
    env.unwedge();
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- a request cancelled mid-create ----------------------------------------------------------

pub fn cancelled_create(rt: Runtime) -> Measured {
    let env = env("cancel", rt);
    let mut m = Measured::default();
    env.set_fault("create", Action::SlowExit { secs: 5 }, true);
    let mut args = vec!["--timeout".to_string(), "2s".to_string()];
    args.extend(env.run_args_with_flags(
        "c1",
        true,
        &RunOpts::default(),
        &[],
        &["sleep", "100000"],
    ));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.ctr(&args, UP);
    m.figure(format!(
        "ctr --timeout 2s run over a create whose runc returns 5 s after its work: code {:?} \
         after {:.1} s: {}",
        out.code(),
        out.elapsed.as_secs_f64(),
        cmd::ctr_error(&out).trim()
    ));
    // Whatever the answer: once runc has returned and the client has removed what it made,
    // no `runc init`, runc state or cgroup may stay.
    poll(UP, || env.wrapper_procs().is_empty().then_some(()));
    thread::sleep(Duration::from_secs(1));
    let listed = env.task("c1");
    m.figure(format!("after runc returned: task {listed:?}"));
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- zombies of exec'd processes -------------------------------------------------------------

const ZOMBIE_EXECS: usize = 8;

pub fn exec_zombies(rt: Runtime) -> Measured {
    let env = env("zombies", rt);
    let mut m = Measured::default();
    // busybox `sleep` as pid 1 reaps nobody.
    sleeper(&env, "c1", &[]);
    let shim = one_shim(&env, rt);
    for i in 0..ZOMBIE_EXECS {
        let out = env.exec("c1", &format!("e{i}"), &["sh", "-c", "echo x"], UP);
        m.check(!out.success(), Verdict::Loss, format!("exec {i}: {out}"));
        containers::exec_detached(&env, "c1", &format!("d{i}"), &["usleep", "100000"]);
        if i % 4 == 0 {
            let t = tty_exec(&env, "c1", &format!("t{i}"), &["true"]);
            m.check(
                t.code() != Some(0),
                Verdict::Loss,
                format!("tty exec {i}: {t}"),
            );
        }
        thread::sleep(Duration::from_millis(300));
    }
    thread::sleep(Duration::from_secs(2));
    let of_shim = zombie_children(shim);
    let in_container: Vec<_> = container_procs(&env, "c1")
        .into_iter()
        .filter(|(_, st, _)| st == "Z")
        .collect();
    m.figure(format!(
        "after {} execs (plain, detached, tty): zombies of the shim {of_shim:?}, in the \
         container {in_container:?}",
        ZOMBIE_EXECS * 2 + ZOMBIE_EXECS.div_ceil(4)
    ));
    m.check(
        !of_shim.is_empty() || !in_container.is_empty(),
        Verdict::Leak,
        format!("{} zombies", of_shim.len() + in_container.len()),
    );
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- runc/kernel: a frozen cgroup swallows SIGKILL -------------------------------------------

const KILL_BOUND: Duration = Duration::from_secs(10);

pub fn paused_kill(rt: Runtime) -> Measured {
    let env = env("paused", rt);
    let mut m = Measured::default();
    sleeper(&env, "c1", &[]);
    env.ctr(&["task", "pause", "c1"], UP)
        .expect_success("ctr task pause");
    env.wait_task_status("c1", "PAUSED", UP);
    let k = env.ctr(&["task", "kill", "--signal", "SIGKILL", "c1"], KILL_BOUND);
    let t0 = Instant::now();
    let stopped = poll(KILL_BOUND, || {
        env.task("c1")
            .is_some_and(|t| t.status == "STOPPED")
            .then_some(())
    });
    m.figure(format!(
        "kill -9 of a paused container: {} in {:.1} s; {} {:.1} s later",
        if k.success() {
            "OK".into()
        } else {
            cmd::ctr_error(&k)
        },
        k.elapsed.as_secs_f64(),
        if stopped.is_some() {
            "STOPPED"
        } else {
            "not STOPPED"
        },
        t0.elapsed().as_secs_f64()
    ));
    m.check(
        k.timed_out(),
        Verdict::Hang,
        "Kill of a paused container did not answer",
    );
    m.check(
        stopped.is_none(),
        Verdict::Hang,
        format!("not STOPPED {KILL_BOUND:?} after SIGKILL of the paused container"),
    );
    if stopped.is_some() {
        let d = env.ctr(&["task", "delete", "c1"], KILL_BOUND);
        m.check(!d.success(), Verdict::Hang, format!("delete: {d}"));
    } else {
        // Undo the stock outcome so the removal below can work.
        let _ = env.ctr(&["task", "resume", "c1"], KILL_BOUND);
    }
    removed_clean(&mut m, &env, "c1");
    m
}

// ---- runc/kernel: an unkillable holder of the stdio pipe -------------------------------------

pub fn frozen_holder(rt: Runtime) -> Measured {
    let env = env("holder", rt);
    let mut m = Measured::default();
    sleeper(&env, "c1", &[]);
    let args = env.exec_args("c1", "e1", false, &["sh", "-c", "sleep 601 & echo ok"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exec = cmd::spawn(env.ctr_cmd(&args), None);
    let holder = poll(UP, || {
        container_procs(&env, "c1")
            .into_iter()
            .find(|(_, _, c)| c == "sleep 601")
            .map(|(p, _, _)| p)
    })
    .expect("the holder never started");
    let freezer = PathBuf::from("/sys/fs/cgroup/freezer")
        .join(&env.ns)
        .join("holder");
    fs::create_dir_all(&freezer).expect("freezer cgroup (a cgroup v1 host)");
    fs::write(freezer.join("cgroup.procs"), holder.to_string()).expect("move the holder");
    fs::write(freezer.join("freezer.state"), "FROZEN").expect("freeze");
    let out = exec.wait(HELD_LIMIT);
    m.figure(format!(
        "exec whose frozen child holds its stdout: code {:?} after {:.1} s, {:?}",
        out.code(),
        out.elapsed.as_secs_f64(),
        out.stdout_str()
    ));
    m.check(
        out.timed_out() || out.elapsed > HELD_BOUND,
        Verdict::Hang,
        format!("the exec returned after {:.1} s", out.elapsed.as_secs_f64()),
    );
    m.check(
        out.stdout_str() != "ok\n",
        Verdict::Loss,
        format!("the exec printed {:?}", out.stdout_str()),
    );
    // The init's death waits for the frozen holder (the kernel reaps a pid namespace whole):
    // Kill and State must still answer.
    let k = env.ctr(&["task", "kill", "--signal", "SIGKILL", "c1"], KILL_BOUND);
    let ls = env.ctr(&["task", "ls"], KILL_BOUND);
    m.figure(format!(
        "while the holder is frozen: Kill {} in {:.1} s, task ls {} in {:.1} s",
        if k.success() { "OK" } else { "failed" },
        k.elapsed.as_secs_f64(),
        if ls.success() { "OK" } else { "failed" },
        ls.elapsed.as_secs_f64()
    ));
    m.check(
        !k.success() || k.elapsed > SIBLING_BOUND,
        Verdict::Hang,
        format!("Kill: {k}"),
    );
    m.check(
        !ls.success() || ls.elapsed > SIBLING_BOUND,
        Verdict::Hang,
        format!("task ls: {ls}"),
    );
    thread::sleep(Duration::from_secs(1));
    let _ = fs::write(freezer.join("freezer.state"), "THAWED");
    let t0 = Instant::now();
    let stopped = poll(KILL_BOUND, || {
        env.task("c1")
            .is_some_and(|t| t.status == "STOPPED")
            .then_some(())
    });
    m.figure(format!(
        "after the thaw: {} in {:.1} s",
        if stopped.is_some() {
            "STOPPED"
        } else {
            "not STOPPED"
        },
        t0.elapsed().as_secs_f64()
    ));
    m.check(
        stopped.is_none(),
        Verdict::Hang,
        "not STOPPED after the holder was thawed",
    );
    removed_clean(&mut m, &env, "c1");
    let _ = poll(SETTLE, || fs::remove_dir(&freezer).ok());
    m
}
