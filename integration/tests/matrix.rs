//! Run: `cargo test -p sluice-integration --test matrix -- --ignored --nocapture --test-threads=2`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).
//!
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
//!
//! The cells themselves (verbs, faults, the stock shim's expected outcome) are the harness's
//! (`cells`); this module is the sluice side of each cell and the row per verb.

use std::time::Duration;

use sluice_integration::cells::{
    call, cell_line, prepare, remove, sluice_succeeds, start_container, stock_cell, verb_is_called,
    Fault, DEADLINE_SECS, FAULTS, PROMPT,
};
use sluice_integration::cmd::{poll, CmdOutput};
use sluice_integration::fault::CGO_CRASH_LINE;
use sluice_integration::harness::TestEnv;
use sluice_integration::procs::fd_count;
use sluice_integration::traces::assert_no_leftovers;
use sluice_integration::Runtime;

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

/// One verb's row: every fault under the stock shim, then under sluice.
fn verb_row(verb: &str) {
    sluice_integration::system::sluice_shim_bin();
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

macro_rules! rows {
    ($($name:ident => $verb:literal),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs root, containerd and runc; run with --ignored"]
            fn $name() {
                verb_row($verb);
            }
        )*
    };
}

rows! {
    create => "create",
    start => "start",
    exec => "exec",
    kill => "kill",
    delete => "delete",
    pause => "pause",
    resume => "resume",
    update => "update",
    ps => "ps",
    state => "state",
    checkpoint => "checkpoint",
}
