//! Run: `SLUICE_CONTAINERD=1.7 cargo test -p sluice-integration --test restarts -- --ignored
//! --nocapture --test-threads=1` (as root; see scripts/test.sh).
//!
//! containerd and shim restarts (issue 5, item 3), for sluice and for the stock shim.
//!
//! containerd is SIGKILLed with three tasks running and restarted: a sleeper (still RUNNING
//! with the same pid, exec works), a task that exits 7 while containerd is down (its exit must
//! be reported the way that containerd version reports it for the stock shim), and a counter
//! whose stdout goes to a `file://` log (the numbers keep coming, none missing). Then the shims
//! are SIGKILLed and the tasks removed through `ctr`: no process, runc state, mount or cgroup
//! may be left.
//!
//! What containerd does with a task that stopped while it was down depends on the version:
//! 1.6 keeps it (`ctr task ls` shows STOPPED, `ctr task rm` reports the exit code); 1.7 and 2.x
//! find no pids in it when they reconnect to its shim, log "cleaning leaked shim process" and
//! delete it while still loading, before serving any client: the task is gone, the container
//! record stays, and no exit or delete event reaches a subscriber (the stock shim's publish of
//! its TaskDelete is refused, containerd's ttrpc socket is not up yet). The stock run shows
//! which, and sluice must show the same.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use sluice_integration::cmd::poll;
use sluice_integration::containers;
use sluice_integration::events::Event;
use sluice_integration::harness::{TestEnv, CTR_TIMEOUT};
use sluice_integration::procs;
use sluice_integration::traces::{cgroups_of, mounts_under, runc_list};
use sluice_integration::versions::{self, Line};
use sluice_integration::Runtime;

/// How long containerd stays down: longer than the stock shim's first event retries (1 s, then
/// 2 s more), so the restart is not hidden by a lucky retry.
const DOWNTIME: Duration = Duration::from_secs(4);
/// The counter's period, as its shell loop sleeps it.
const TICK_US: u32 = 100_000;

/// What became of the task that exited while containerd was down, as a user sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoppedWhileDown {
    /// Listed as STOPPED; `ctr task rm` reported this exit code.
    Stopped { exit_code: u32 },
    /// Gone from `ctr task ls` (the container record stays); the `/tasks/exit` and
    /// `/tasks/delete` events of it a subscriber saw after the restart, with their status.
    Deleted { reported: Vec<(String, u64)> },
}

/// Checks `got` against what containerd `line` does for the stock shim with a task that
/// exited `exit` while containerd was down (found by running the stock shim, see the module
/// doc): 1.6 keeps it STOPPED with its exit code; 1.7 and 2.x delete it while loading and no
/// client sees an event of it. An event that does arrive must carry the real status.
fn check_outcome(line: Line, exit: u32, got: &StoppedWhileDown) -> Result<(), String> {
    match (line, got) {
        (Line::V1_6, StoppedWhileDown::Stopped { exit_code }) if *exit_code == exit => Ok(()),
        (l, StoppedWhileDown::Deleted { reported })
            if l >= Line::V1_7 && reported.iter().all(|(_, s)| *s == exit as u64) =>
        {
            Ok(())
        }
        _ => Err(format!(
            "containerd {}: expected {}, got {got:?}",
            line.label(),
            match line {
                Line::V1_6 => format!("STOPPED with exit code {exit}"),
                _ => format!("deleted, any exit/delete event with status {exit}"),
            }
        )),
    }
}

/// `ctr events` kept running across a containerd restart: a thread starts it again whenever it
/// exits (containerd not up yet, or gone), so it subscribes as soon as containerd serves.
struct Events {
    lines: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    child: Arc<Mutex<Option<Child>>>,
    thread: Option<JoinHandle<()>>,
    ns: String,
}

impl Events {
    pub fn start(env: &TestEnv) -> Events {
        let template = env.ctr_cmd(&["events"]);
        let program = template.get_program().to_owned();
        let args: Vec<_> = template.get_args().map(|a| a.to_owned()).collect();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let child: Arc<Mutex<Option<Child>>> = Arc::new(Mutex::new(None));
        let (l, s, c) = (lines.clone(), stop.clone(), child.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                let mut cmd = Command::new(&program);
                cmd.args(&args)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null());
                let Ok(mut ch) = cmd.spawn() else {
                    thread::sleep(Duration::from_millis(50));
                    continue;
                };
                let out = ch.stdout.take().expect("piped stdout");
                *c.lock().expect("events child") = Some(ch);
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    l.lock().expect("events lines").push(line);
                }
                if let Some(mut ch) = c.lock().expect("events child").take() {
                    let _ = ch.kill();
                    let _ = ch.wait();
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        Events {
            lines,
            stop,
            child,
            thread: Some(thread),
            ns: env.ns.clone(),
        }
    }

    pub fn task_events(&self) -> Vec<Event> {
        self.lines
            .lock()
            .expect("events lines")
            .iter()
            .filter_map(|l| Event::parse(l))
            .filter(|e| e.namespace == self.ns && e.topic.starts_with("/tasks/"))
            .collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(mut ch) = self.child.lock().expect("events child").take() {
            let _ = ch.kill();
            let _ = ch.wait();
        }
        // The reader ends once its child is killed; the loop sees `stop` before a new spawn.
        // A child spawned between the two is killed by the next pass through here.
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !t.is_finished() && Instant::now() < deadline {
                if let Some(mut ch) = self.child.lock().expect("events child").take() {
                    let _ = ch.kill();
                    let _ = ch.wait();
                }
                thread::sleep(Duration::from_millis(20));
            }
            let _ = t.join();
        }
    }
}

/// The numbers in the counter's log so far; panics on a line that is not the next number
/// (a gap, a repeat or garbage), except a last line still being written.
fn sequence(log: &Path) -> u64 {
    let text = fs::read_to_string(log).unwrap_or_default();
    let mut last = 0u64;
    let complete = text.rfind('\n').map(|i| &text[..i]).unwrap_or("");
    for (i, line) in complete.lines().enumerate() {
        let n: u64 = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "line {} of {} is not a number: {line:?}",
                i + 1,
                log.display()
            )
        });
        assert_eq!(
            n,
            last + 1,
            "gap in the counter's log {} at line {}: {last} then {n}",
            log.display(),
            i + 1
        );
        last = n;
    }
    last
}

/// Nothing of `ids` is left: no process, runc state, mount under the state dir or cgroup.
fn assert_nothing_left(env: &TestEnv, ids: &[&str], pids: &[u32]) {
    let state = env.dir.join("state");
    let leftovers = || {
        let mut left = Vec::new();
        for &p in pids {
            if procs::alive(p as i32) {
                left.push(format!("process {p}"));
            }
        }
        let listed = runc_list(env);
        for id in ids {
            if listed.iter().any(|l| l == id) {
                left.push(format!("runc state of {id}"));
            }
            for cg in cgroups_of(env, id) {
                left.push(format!("cgroup {}", cg.display()));
            }
        }
        left.extend(
            mounts_under(&state)
                .into_iter()
                .map(|m| format!("mount {m}")),
        );
        left.extend(
            env.runc_procs()
                .iter()
                .map(|p| format!("runc {}", p.cmdline())),
        );
        left
    };
    let clean = poll(Duration::from_secs(30), || {
        leftovers().is_empty().then_some(())
    });
    assert!(
        clean.is_some(),
        "[{}] left behind after the shim was SIGKILLed and the tasks removed: {:?}",
        env.runtime,
        leftovers()
    );
}

/// The whole scenario for `rt`; returns what became of the task that exited while containerd
/// was down (the caller compares it with the stock shim's).
fn scenario(rt: Runtime) -> StoppedWhileDown {
    let line = versions::selected().line;
    let started = Instant::now();
    let mut env = TestEnv::start(&format!("restarts-{}", short(rt)), rt);
    let tag = format!("[restarts {rt} containerd {}]", line.label());

    // c1 sleeps; c2 exits 7 once told to (a file in the shared rootfs), so the exit falls
    // inside containerd's downtime whatever the machine's load; c3 counts into a file log.
    env.run_detached("c1", &[], &["sleep", "100000"]);
    let c1 = env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    let go = env.rootfs.join("tmp/c2-go");
    let _ = fs::remove_file(&go);
    env.run_detached(
        "c2",
        &[],
        &[
            "sh",
            "-c",
            "while [ ! -e /tmp/c2-go ]; do usleep 50000; done; exit 7",
        ],
    );
    let c2 = env.wait_task_status("c2", "RUNNING", Duration::from_secs(30));
    let log = env.dir.join("c3.log");
    let uri = format!("file://{}", log.display());
    let counter = format!("i=0; while :; do i=$((i+1)); echo $i; usleep {TICK_US}; done");
    containers::run_detached_with_flags(&env, "c3", &["--log-uri", &uri], &["sh", "-c", &counter]);
    let c3 = env.wait_task_status("c3", "RUNNING", Duration::from_secs(30));
    poll(Duration::from_secs(30), || {
        (sequence(&log) >= 5).then_some(())
    })
    .unwrap_or_else(|| panic!("{tag} the counter never wrote to {}", log.display()));

    // containerd down; c2 exits meanwhile.
    env.kill_containerd();
    let down = Instant::now();
    let at_kill = sequence(&log);
    fs::write(&go, b"").expect("write the c2 trigger");
    poll(Duration::from_secs(10), || {
        (!procs::alive(c2.pid as i32)).then_some(())
    })
    .unwrap_or_else(|| panic!("{tag} c2 (pid {}) did not exit", c2.pid));
    let left = DOWNTIME.saturating_sub(down.elapsed());
    thread::sleep(left);
    let events = Events::start(&env);
    env.restart_containerd();
    let back = down.elapsed();
    let at_restart = sequence(&log);
    eprintln!("{tag} containerd down for {back:?}; counter {at_kill} -> {at_restart} meanwhile");
    assert!(
        at_restart > at_kill,
        "{tag} the counter's output stopped while containerd was down ({at_kill} -> {at_restart})"
    );

    // c1: same task, same pid; exec works.
    let t1 = env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    assert_eq!(t1.pid, c1.pid, "{tag} c1's pid changed across the restart");
    let ex = env.exec("c1", "e1", &["echo", "after-restart"], CTR_TIMEOUT);
    assert!(
        ex.success() && ex.stdout_str() == "after-restart\n",
        "{tag} exec into c1 after the restart:\n{ex}"
    );

    // c3: still running, same pid, and the numbers keep coming with none missing.
    let t3 = env.wait_task_status("c3", "RUNNING", Duration::from_secs(30));
    assert_eq!(t3.pid, c3.pid, "{tag} c3's pid changed across the restart");
    let target = sequence(&log) + 15;
    poll(Duration::from_secs(20), || {
        (sequence(&log) >= target).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{tag} the counter's log stopped after the restart at {}",
            sequence(&log)
        )
    });

    // c2: as this containerd version reports a task that stopped while it was down.
    let outcome = match env.task("c2") {
        Some(t) => {
            let t = if t.status == "STOPPED" {
                t
            } else {
                env.wait_task_status("c2", "STOPPED", Duration::from_secs(30))
            };
            eprintln!("{tag} c2 after the restart: {t:?}");
            let del = env.task_delete("c2");
            eprintln!("{tag} ctr task rm c2:\n{del}");
            assert!(del.success(), "{tag} ctr task rm c2:\n{del}");
            // ctr only warns for a non-zero code: "task c2 exit with non-zero exit code 7".
            let code = del
                .stderr_str()
                .split("exit code ")
                .nth(1)
                .map(|r| {
                    let digits: String = r.chars().take_while(char::is_ascii_digit).collect();
                    digits
                        .parse()
                        .unwrap_or_else(|_| panic!("{tag} exit code in:\n{del}"))
                })
                .unwrap_or(0);
            StoppedWhileDown::Stopped { exit_code: code }
        }
        None => {
            // Gone: containerd found no pids in it when it reconnected, called it a leaked
            // shim and deleted it while loading, before it served anyone. Whatever exit or
            // delete event of c2 still arrives (none does for the stock shim: its publishes
            // fail while containerd is not serving yet) must carry the real status.
            thread::sleep(Duration::from_secs(3));
            let reported: Vec<(String, u64)> = events
                .task_events()
                .iter()
                .filter(|e| e.container_id() == Some("c2"))
                .filter(|e| e.topic == "/tasks/exit" || e.topic == "/tasks/delete")
                .map(|e| (e.topic.clone(), e.exit_status().unwrap_or(0)))
                .collect();
            eprintln!("{tag} c2 gone after the restart; its exit/delete events: {reported:?}");
            let log = fs::read_to_string(&env.log_path).unwrap_or_default();
            let cleaned = log
                .lines()
                .any(|l| l.contains("cleaning leaked shim process") && l.contains("id=c2 "));
            assert!(
                cleaned,
                "{tag} c2 is gone but containerd did not log cleaning it up as a leaked shim:\n{}",
                env.log_tail(80)
            );
            assert!(
                env.containers().iter().any(|c| c == "c2"),
                "{tag} c2's container record went with its task"
            );
            StoppedWhileDown::Deleted { reported }
        }
    };
    eprintln!("{tag} c2 outcome: {outcome:?}");
    let del = env.container_delete("c2");
    assert!(del.success(), "{tag} ctr container rm c2:\n{del}");

    // The shims die. containerd notices and cleans up through `<shim> delete`; `ctr task rm
    // -f` does the rest (or finds nothing left to do).
    let shims: Vec<i32> = env.shims(rt).iter().map(|p| p.pid).collect();
    assert!(!shims.is_empty(), "{tag} no {rt} shim found");
    let sockets: Vec<_> = shims
        .iter()
        .flat_map(|&p| procs::listening_sockets(p))
        .collect();
    assert!(!sockets.is_empty(), "{tag} the shims listen on no socket");
    let left = procs::kill_all(&shims, Duration::from_secs(10));
    assert!(left.is_empty(), "{tag} shims survived SIGKILL: {left:?}");
    // A SIGKILLed shim cannot remove its socket file (nor can either shim's `delete`): this
    // test made them, so it removes them.
    for s in &sockets {
        let _ = std::fs::remove_file(s);
    }
    for id in ["c1", "c3"] {
        let rm = env.ctr(&["task", "rm", "-f", id], CTR_TIMEOUT);
        eprintln!("{tag} ctr task rm -f {id} after the shim was SIGKILLed:\n{rm}");
        assert!(
            rm.success() || rm.stderr_str().contains("not found"),
            "{tag} ctr task rm -f {id} after the shim died:\n{rm}"
        );
        env.container_delete(id)
            .expect_success(&format!("{tag} ctr container rm {id}"));
    }
    assert_nothing_left(&env, &["c1", "c2", "c3"], &[c1.pid, c2.pid, c3.pid]);
    assert!(
        env.tasks().is_empty() && env.containers().is_empty(),
        "{tag} tasks {:?}, containers {:?}",
        env.tasks(),
        env.containers()
    );
    eprintln!("{tag} done in {:?}", started.elapsed());
    drop(events);
    outcome
}

fn short(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Sluice => "sluice",
        Runtime::RuncV2 => "stock",
    }
}

/// The scenario under `rt`, its outcome checked against what the selected containerd does for
/// the stock shim.
fn restarts(rt: Runtime) {
    let line = versions::selected().line;
    let got = scenario(rt);
    if let Err(e) = check_outcome(line, 7, &got) {
        panic!("[{rt}] the task that exited 7 while containerd was down: {e}");
    }
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn restarts_stock() {
    restarts(Runtime::RuncV2);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn restarts_sluice() {
    restarts(Runtime::Sluice);
}
