//! `containerd-shim-sluice-v2 doctor` against the real conditions of the case study, created on
//! this machine: pipes shrunk below 16 pages, a runc asleep in a pipe write under the stock shim
//! (which is also a shim with an exec that does not return), the seed case itself (one-page pipes
//! and a crash dump), a container at its `pids.max`; and a sluice node where the same fault leaves
//! nothing to report.
//!
//! Other tests run in parallel on the same host, so every doctor call is narrowed to the test's
//! own objects (`--pid <its process or shim>`, `--cgroup-prefix /<its namespace>`, `--check`) and
//! the assertions are about those objects only, never about the whole node.
//!
//! Run: `cargo test -p sluice-integration --test doctor -- --ignored --nocapture` (as root, after
//! `cargo build --workspace --bins`; the output shows a sample report for each condition).

use std::thread;
use std::time::Duration;

use sluice_integration::cmd::{self, poll};
use sluice_integration::doctor_support::{
    doctor, doctor_json, old_runcs, pids_cgroup_of, pids_current, pids_near_max,
    shim_runc_children, show, small_pipes, Access, BlockedPipe, JsonReport, PidsMax, PipeHolder,
};
use sluice_integration::fault::{Action, FLOOD_BYTES};
use sluice_integration::harness::CTR_TIMEOUT;
use sluice_integration::procs::ProcInfo;
use sluice_integration::{system, CmdOutput, Runtime, TestEnv};

/// Every test here uses `--threshold 1` and waits a bit longer than that before asking.
const AGE: Duration = Duration::from_millis(1500);

/// (a) A process holding pipes shrunk to one page (what an exhausted `pipe-user-pages-soft`
/// hands out) is listed with its descriptors; one holding default pipes is not.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn small_pipes_are_listed() {
    system::tools(); // root and the rest, loudly
    system::sluice_shim_bin();
    let small = PipeHolder::spawn(Some(4096));
    assert_eq!(small.capacity, 4096);
    let pid = small.pid.to_string();

    let out = doctor(&["--pid", &pid]);
    show("small pipes (text)", &out);
    assert_eq!(out.code(), Some(1), "findings must exit 1\n{out}");
    let text = out.stdout_str();
    for inode in small.inodes {
        assert!(
            text.contains(&format!("pipe:[{inode}] 4096 bytes (1 page)")),
            "pipe:[{inode}] of pid {pid} is not listed as small:\n{text}"
        );
    }
    assert!(
        text.contains(&format!(
            "pid {pid} sleep fd 0 (read), pid {pid} sleep fd 1 (write)"
        )),
        "{text}"
    );

    let (out, json) = doctor_json(&["--pid", &pid, "--check", "pipes"]);
    show("small pipes (JSON, --check pipes)", &out);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(!json.healthy, "{out}");
    let listed = small_pipes(&json);
    // Exactly ours: the scope is the sleep, which holds nothing else.
    assert_eq!(listed.len(), 2, "{out}");
    for (f, inode) in listed.iter().zip(small.inodes) {
        assert_eq!(f.inode, inode, "{out}");
        assert_eq!(f.capacity_bytes, 4096, "{out}");
        assert_eq!(f.pages, 1, "{out}");
        assert_eq!(f.uid, Some(0), "{out}");
        assert!(f.holders.iter().all(|h| h.pid == small.pid), "{out}");
    }
    let budget = &json.pipe_budget;
    assert!(budget.pipes >= 2, "{out}");
    assert!(
        budget.users.iter().any(|u| u.uid == 0),
        "uid 0's pipes are not counted\n{out}"
    );

    // Default pipes: nothing to report for that process.
    let normal = PipeHolder::spawn(None);
    assert_eq!(normal.capacity, 65536);
    let out = doctor(&["--pid", &normal.pid.to_string(), "--check", "pipes"]);
    show("default pipes (healthy scope)", &out);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout_str().ends_with("summary: no problems found\n"),
        "{out}"
    );
}

/// A stock-shim exec wedged by `action` on `runc exec`: the wrapper asleep in a pipe write.
struct Wedged {
    env: TestEnv,
    /// The fault-runc wrapper standing in for `runc exec`.
    runc: ProcInfo,
    shim: ProcInfo,
    /// The `ctr task exec` that does not return.
    exec: cmd::Running,
}

fn wedge_stock_exec(label: &str, action: Action) -> Wedged {
    system::sluice_shim_bin();
    let rt = Runtime::RuncV2;
    let env = TestEnv::start(label, rt);
    env.run_detached("c1", &[], &["sleep", "1000"]);
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    env.set_fault("exec", action, true);
    let fifo = env.fifo_dir().display().to_string();
    let exec = cmd::spawn(
        env.ctr_cmd(&[
            "task",
            "exec",
            "--fifo-dir",
            &fifo,
            "--exec-id",
            "e1",
            "c1",
            "echo",
            "never",
        ]),
        None,
    );
    let runc = poll(Duration::from_secs(30), || {
        env.wrapper_procs()
            .into_iter()
            .find(|p| p.wchan.contains("pipe"))
    })
    .unwrap_or_else(|| {
        panic!(
            "the fault-runc wrapper never went to sleep in a pipe write: {:?}\nfault log:\n{}",
            env.wrapper_procs(),
            env.fault_log()
        )
    });
    let shim = env
        .shims(rt)
        .into_iter()
        .find(|s| s.pid == runc.ppid)
        .unwrap_or_else(|| {
            panic!(
                "the stuck runc (pid {}, ppid {}) is not a child of this test's shim: {:?}",
                runc.pid,
                runc.ppid,
                env.shims(rt)
            )
        });
    thread::sleep(AGE);
    Wedged {
        env,
        runc,
        shim,
        exec,
    }
}

/// Checks the old_runc and shim_runc_child findings for a wedged exec; returns the pipe the runc
/// is blocked on.
fn assert_wedged_reported(w: &Wedged, out: &CmdOutput, json: &JsonReport) -> BlockedPipe {
    let (runc, shim, ns) = (&w.runc, &w.shim, w.env.ns.as_str());
    let old = old_runcs(json)
        .into_iter()
        .find(|f| f.pid == runc.pid)
        .unwrap_or_else(|| panic!("no old_runc finding for pid {}\n{out}", runc.pid));
    assert_eq!(old.verb.as_deref(), Some("exec"), "{out}");
    assert_eq!(old.container_id.as_deref(), Some("c1"), "{out}");
    assert_eq!(old.namespace.as_deref(), Some(ns), "{out}");
    let wchan = old.wchan.as_deref().unwrap_or("");
    assert!(wchan.contains("pipe"), "wchan {wchan:?}\n{out}");
    assert!(old.age_seconds >= 1, "{out}");
    let blocked = &old.blocked_on;
    assert_eq!(blocked.len(), 1, "only the full stderr pipe\n{out}");
    assert_eq!(blocked[0].fd, 2, "{out}");
    assert_eq!(
        blocked[0].unread_bytes, blocked[0].capacity_bytes,
        "the pipe must be full\n{out}"
    );
    assert!(
        blocked[0]
            .readers
            .iter()
            .any(|r| r.pid == shim.pid && r.access == Access::Read),
        "the shim must hold the read end\n{out}"
    );
    assert!(
        old.hint
            .as_deref()
            .unwrap_or("")
            .contains("containerd#4434"),
        "{out}"
    );
    let trouble = shim_runc_children(json)
        .into_iter()
        .find(|f| f.shim.pid == shim.pid)
        .unwrap_or_else(|| panic!("no shim_runc_child finding for shim {}\n{out}", shim.pid));
    assert_eq!(trouble.shim.id.as_deref(), Some("c1"), "{out}");
    assert_eq!(trouble.shim.namespace.as_deref(), Some(ns), "{out}");
    assert_eq!(trouble.child.pid, runc.pid, "{out}");
    assert_eq!(trouble.child.verb.as_deref(), Some("exec"), "{out}");
    assert_eq!(trouble.child.container_id.as_deref(), Some("c1"), "{out}");
    blocked[0].clone()
}

/// Kills the stuck runc; the exec then fails, the shim answers again, and its scope is clean.
fn unwedge_and_recheck(w: Wedged, what: &str) {
    let killed = w.env.unwedge();
    assert!(!killed.is_empty());
    let exec = w.exec.wait(CTR_TIMEOUT);
    assert!(
        !exec.timed_out(),
        "ctr exec still stuck after un-wedging\n{exec}"
    );
    let shim = w.shim.pid.to_string();
    let out = doctor(&["--threshold", "1", "--pid", &shim, "--check", "runc,shims"]);
    show(what, &out);
    assert_eq!(out.code(), Some(0), "{out}");
}

/// (b) and (d): the case study under containerd's stock shim. `runc exec` writes 256 KiB to its
/// stderr, which the shim will read only after runc exits: runc sleeps in a pipe write for ever.
/// The doctor names it (old runc, its wchan, the container, the full pipe and the shim holding
/// the read end) and names the shim (an exec in flight past the threshold). Once the runc is
/// killed, the same scope is clean again.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stuck_exec_under_the_stock_shim() {
    let w = wedge_stock_exec("doctor-stuck", Action::StderrFlood { bytes: FLOOD_BYTES });
    let (runc, shim, ns) = (&w.runc, &w.shim, &w.env.ns);
    let shim_pid = shim.pid.to_string();

    let out = doctor(&["--threshold", "1", "--pid", &shim_pid]);
    show("stuck runc exec under the stock shim (text)", &out);
    assert_eq!(out.code(), Some(1), "{out}");
    let text = out.stdout_str();
    for want in [
        format!("pid {} runc exec c1 (namespace {ns})", runc.pid),
        format!("read end held by pid {} containerd-shim-runc-v2", shim.pid),
        format!(
            "pid {} containerd-shim-runc-v2 (namespace {ns}, id c1): runc child pid {} (runc \
             exec c1)",
            shim.pid, runc.pid
        ),
    ] {
        assert!(text.contains(&want), "missing {want:?} in\n{text}");
    }

    let (out, json) = doctor_json(&["--threshold", "1", "--pid", &shim_pid]);
    show("stuck runc exec under the stock shim (JSON)", &out);
    let pipe = assert_wedged_reported(&w, &out, &json);
    assert_eq!(pipe.capacity_bytes, Some(65536), "{out}");

    unwedge_and_recheck(w, "stock shim after the stuck runc was killed");
}

/// The seed case itself under the stock shim: runc's stdout and stderr pipes shrunk to one page
/// (what a spent `pipe-user-pages-soft` hands out), then a 7 KiB Go crash dump into stderr. The
/// doctor shows all of it at once: two small pipes, the runc blocked on the full one-page stderr
/// with the shim holding its read end, and the shim waiting on that runc.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn seed_case_under_the_stock_shim() {
    let w = wedge_stock_exec("doctor-seed", Action::CrashDump);
    let shim_pid = w.shim.pid.to_string();
    let (out, json) = doctor_json(&["--threshold", "1", "--pid", &shim_pid]);
    show("seed case under the stock shim (JSON)", &out);
    assert_eq!(out.code(), Some(1), "{out}");
    let pipe = assert_wedged_reported(&w, &out, &json);
    assert_eq!(pipe.capacity_bytes, Some(4096), "{out}");
    let small: Vec<u64> = small_pipes(&json)
        .iter()
        .filter(|f| f.holders.iter().any(|h| h.pid == w.runc.pid))
        .map(|f| f.inode)
        .collect();
    assert_eq!(
        small.len(),
        2,
        "the runc's one-page stdout and stderr must be listed as small pipes\n{out}"
    );
    assert!(small.contains(&pipe.inode), "{out}");

    let out = doctor(&["--threshold", "1", "--pid", &shim_pid]);
    show("seed case under the stock shim (text)", &out);
    assert_eq!(out.code(), Some(1), "{out}");
    unwedge_and_recheck(w, "stock shim after the seed case was un-wedged");
}

/// (c) A container at its `pids.max` (three processes, limit three): the doctor reports its
/// cgroup; with the limit raised, it does not.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn container_at_pids_max() {
    system::sluice_shim_bin();
    let env = TestEnv::start("doctor-pids", Runtime::Sluice);
    env.run_detached("c1", &[], &["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let task = env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    let (dir, cgroup) = pids_cgroup_of(task.pid as i32);
    let prefix = format!("/{}", env.ns);
    assert!(
        cgroup.starts_with(&format!("{prefix}/")),
        "container c1 is in cgroup {cgroup}, not below {prefix}"
    );
    poll(Duration::from_secs(30), || {
        (pids_current(&dir) == Some(3)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: pids.current never reached 3 (is {:?})",
            dir.display(),
            pids_current(&dir)
        )
    });
    let limit = PidsMax::set(&dir, 3);

    let out = doctor(&["--cgroup-prefix", &prefix]);
    show("container at pids.max (text)", &out);
    assert_eq!(out.code(), Some(1), "{out}");
    assert!(
        out.stdout_str()
            .contains(&format!("  {cgroup}: 3 of 3 pids (100%)")),
        "{out}"
    );
    let (out, json) = doctor_json(&["--cgroup-prefix", &prefix, "--check", "pids"]);
    show("container at pids.max (JSON, --check pids)", &out);
    let near = pids_near_max(&json);
    assert_eq!(near.len(), 1, "only c1's cgroup is at its limit\n{out}");
    assert_eq!(near[0].cgroup, cgroup, "{out}");
    assert_eq!(near[0].current, 3, "{out}");
    assert_eq!(near[0].max, 3, "{out}");
    assert_eq!(near[0].path, dir.display().to_string(), "{out}");

    // 3 of 10 is far from the limit.
    drop(limit);
    let _limit = PidsMax::set(&dir, 10);
    let out = doctor(&["--cgroup-prefix", &prefix, "--check", "pids"]);
    show("container well below pids.max", &out);
    assert_eq!(out.code(), Some(0), "{out}");
}

/// A sluice shim given the same fault that wedges the stock shim (256 KiB on `runc exec`'s
/// stderr): the exec returns, and for the shim's subtree and the test's cgroups the doctor finds
/// nothing: no old runc, no shim waiting, no unreaped child, no small pipe, no cgroup near its
/// limit.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn healthy_sluice_scope() {
    system::sluice_shim_bin();
    let rt = Runtime::Sluice;
    let env = TestEnv::start("doctor-healthy", rt);
    env.run_detached("c1", &[], &["sleep", "1000"]);
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    env.set_fault("exec", Action::StderrFlood { bytes: FLOOD_BYTES }, true);
    let out = env.exec("c1", "e1", &["echo", "exec-ran"], CTR_TIMEOUT);
    assert_eq!(out.code(), Some(0), "exec under sluice\n{out}");
    assert_eq!(env.fault_fired("exec"), 1, "{}", env.fault_log());
    let shims = env.shims(rt);
    assert_eq!(shims.len(), 1, "{shims:?}");
    thread::sleep(AGE);

    let shim = shims[0].pid.to_string();
    let prefix = format!("/{}", env.ns);
    let args = [
        "--threshold",
        "1",
        "--pid",
        shim.as_str(),
        "--cgroup-prefix",
        prefix.as_str(),
    ];
    let out = doctor(&args);
    show("healthy sluice shim after the same fault (text)", &out);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(
        out.stdout_str().ends_with("summary: no problems found\n"),
        "{out}"
    );
    // Read into the report types: a report without pipe_budget, findings, healthy or notes (or
    // any other key) does not get this far.
    let (out, json) = doctor_json(&args);
    show("healthy sluice shim after the same fault (JSON)", &out);
    assert_eq!(out.code(), Some(0), "{out}");
    assert!(json.healthy, "{out}");
    assert!(json.findings.is_empty(), "{out}");
}
