//! The doctor on fixture trees (no root): each finding kind, the healthy node, the filters, the
//! JSON shape, the text layout and the exit codes.

use serde_json::Value;

use super::cli::{self, Command, Format, Options};
use super::fixture::{FakeProbe, FakeProc, Fixture, RD, WR};
use super::pipes::BudgetStatus;
use super::procfs::{parse_stat, pick_cgroup, Access};
use super::report::Finding;
use super::runc::{parse_runc_argv, RuncCall};
use super::*;

const SHIM_RUNC: &str = "/usr/bin/containerd-shim-runc-v2";
const SHIM_SLUICE: &str = "/usr/local/bin/containerd-shim-sluice-v2";

fn argv(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn shim(pid: i32, exe: &str, ns: &str, id: &str) -> FakeProc {
    FakeProc::new(
        pid,
        1,
        &[
            exe,
            "-namespace",
            ns,
            "-id",
            id,
            "-address",
            "/run/containerd/containerd.sock",
        ],
    )
    .comm("containerd-shim")
    .wchan("ep_poll")
}

/// The argv go-runc gives `runc exec` (containerd 1.6 stock shim).
fn runc_exec_argv(ns: &str, id: &str) -> Vec<String> {
    argv(&[
        "runc",
        "--root",
        &format!("/run/containerd/runc/{ns}"),
        "--log",
        &format!("/run/containerd/io.containerd.runtime.v2.task/{ns}/{id}/log.json"),
        "--log-format",
        "json",
        "exec",
        "--process",
        "/tmp/runc-process123",
        "--detach",
        "--pid-file",
        "/run/containerd/x/e1.pid",
        id,
    ])
}

fn examine_fixture(f: &Fixture, probe: &FakeProbe, opts: &Options) -> Report {
    examine(opts, &f.host(probe)).expect("examine")
}

fn run_fixture(f: &Fixture, probe: &FakeProbe, opts: &Options) -> (i32, String) {
    let mut out = Vec::new();
    let code = run(opts, &f.host(probe), &mut out);
    (code, String::from_utf8(out).expect("utf-8 report"))
}

fn kinds(r: &Report) -> Vec<String> {
    r.findings
        .iter()
        .map(|f| {
            serde_json::to_value(f).expect("finding to json")["kind"]
                .as_str()
                .expect("kind")
                .to_string()
        })
        .collect()
}

/// A healthy node: a sluice shim with its container, a stock shim idle, full-size pipes, a
/// cgroup far from its limit, an old process that is not runc, a fresh zombie (being reaped).
fn healthy_node() -> (Fixture, FakeProbe) {
    let f = Fixture::new();
    f.add(
        shim(100, SHIM_SLUICE, "default", "c1")
            .fd(10, 501, RD)
            .fd(11, 502, RD),
    )
    .add(
        FakeProc::new(101, 100, &["sleep", "1000"])
            .cgroup("12:pids:/default/c1\n0::/default/c1\n")
            .fd(1, 501, WR)
            .fd(2, 502, WR),
    )
    .add(FakeProc::new(102, 100, &["sh"]).state('Z').age(5))
    .add(shim(200, SHIM_RUNC, "k8s.io", "pod1"))
    .add(FakeProc::new(300, 1, &["/usr/bin/containerd"]).age(9000))
    .pids_cgroup("pids", "/default/c1", 1, "100")
    .pids_cgroup("pids", "/default", 5, "max");
    let probe = FakeProbe::default()
        .pipe(501, 65536, 0)
        .pipe(502, 65536, 12);
    (f, probe)
}

#[test]
fn healthy_node_reports_nothing() {
    let (f, probe) = healthy_node();
    let r = examine_fixture(&f, &probe, &f.options());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert!(r.healthy());
    assert_eq!(r.pipe_budget.soft_limit_pages, Some(16384));
    assert_eq!(r.pipe_budget.hard_limit_pages, Some(0));
    assert_eq!(r.pipe_budget.pipes, 2);
    assert_eq!(r.pipe_budget.users.len(), 1);
    assert_eq!(r.pipe_budget.users[0].uid, 0);
    assert_eq!(r.pipe_budget.users[0].pages, 32);
    assert_eq!(r.pipe_budget.users[0].status, BudgetStatus::Ok);

    let (code, text) = run_fixture(&f, &probe, &f.options());
    assert_eq!(code, EXIT_HEALTHY, "{text}");
    assert!(text.ends_with("\nsummary: no problems found\n"), "{text}");
    for section in [
        "pipe budget: fs.pipe-user-pages-soft 16384, fs.pipe-user-pages-hard 0 (unlimited)",
        "small pipes (below the default 16 pages): 0",
        "runc processes older than 30s: 0",
        "cgroups near pids.max (current >= 90% of max): 0",
        "shims with trouble: 0",
        "  uid 0: 32 pages in 2 pipes, 0.2% of the soft limit",
    ] {
        assert!(text.contains(section), "missing {section:?} in\n{text}");
    }
}

#[test]
fn pipe_budget_per_user_against_the_soft_limit() {
    let f = Fixture::new();
    f.sysctl(40, 0);
    // uid 1000 writes three default pipes (48 pages): past 40. A pipe is charged to its writer
    // even though root reads it.
    f.add(
        FakeProc::new(10, 1, &["reader"])
            .fd(3, 601, RD)
            .fd(4, 602, RD),
    )
    .add(
        FakeProc::new(20, 1, &["app"])
            .uid(1000)
            .fd(1, 601, WR)
            .fd(2, 602, WR)
            .fd(5, 603, WR)
            .fd(6, 603, RD),
    )
    // uid 0: 2 pipes, 32 pages = 80 %: a warning, not a finding.
    .add(
        FakeProc::new(30, 1, &["daemon"])
            .fd(3, 701, RD)
            .fd(4, 701, WR)
            .fd(5, 702, WR),
    )
    .add(FakeProc::new(31, 30, &["daemon-child"]).fd(0, 702, RD));
    let probe = FakeProbe::default()
        .pipe(601, 65536, 0)
        .pipe(602, 65536, 0)
        .pipe(603, 65536, 0)
        .pipe(701, 65536, 0)
        .pipe(702, 65536, 0);
    let r = examine_fixture(&f, &probe, &f.options());
    let users: Vec<(u32, u64, usize, BudgetStatus)> = r
        .pipe_budget
        .users
        .iter()
        .map(|u| (u.uid, u.pages, u.pipes, u.status))
        .collect();
    assert_eq!(
        users,
        vec![
            (1000, 48, 3, BudgetStatus::Exhausted),
            (0, 32, 2, BudgetStatus::Warning)
        ]
    );
    assert_eq!(r.pipe_budget.users[0].percent_of_soft, Some(120.0));
    assert_eq!(
        r.findings,
        vec![Finding::PipeBudgetExhausted {
            uid: 1000,
            pages: 48,
            pipes: 3,
            soft_limit_pages: 40
        }]
    );
    let (code, text) = run_fixture(&f, &probe, &f.options());
    assert_eq!(code, EXIT_FINDINGS);
    assert!(
        text.contains("  uid 1000: 48 pages in 3 pipes, 120% of the soft limit  EXHAUSTED"),
        "{text}"
    );
    assert!(
        text.contains("  uid 0: 32 pages in 2 pipes, 80% of the soft limit  WARNING"),
        "{text}"
    );
    assert!(
        text.contains("summary: 1 finding: 1 user past the pipe budget"),
        "{text}"
    );

    // Outside the --pid scope the exhausted user is still counted, but not a finding.
    let opts = Options {
        pids: vec![30],
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.pipe_budget.users[0].status, BudgetStatus::Exhausted);
}

#[test]
fn unlimited_budget_is_only_reported() {
    let f = Fixture::new();
    f.sysctl(0, 0);
    f.add(FakeProc::new(20, 1, &["app"]).uid(1000).fd(1, 601, WR));
    let probe = FakeProbe::default().pipe(601, 1 << 20, 0);
    let r = examine_fixture(&f, &probe, &f.options());
    assert!(r.findings.is_empty());
    let u = &r.pipe_budget.users[0];
    assert_eq!(
        (u.pages, u.status, u.percent_of_soft),
        (256, BudgetStatus::Unlimited, None)
    );
    assert!(r
        .to_text()
        .contains("  uid 1000: 256 pages in 1 pipe, no soft limit\n"));
}

#[test]
fn small_pipes_are_listed_with_their_holders() {
    let f = Fixture::new();
    f.add(
        FakeProc::new(40, 1, &["/usr/bin/shrinker"])
            .fd(3, 801, RD)
            .fd(4, 801, WR)
            .fd(5, 802, WR)
            .fd(6, 803, WR)
            .fd(7, 804, WR),
    )
    .add(FakeProc::new(41, 40, &["cat"]).uid(1000).fd(0, 802, RD));
    let probe = FakeProbe::default()
        .pipe(801, 4096, 0)
        .pipe(802, 8192, 100)
        .pipe(803, 65536, 0);
    // 804 cannot be measured: a note, not a guess.
    let r = examine_fixture(&f, &probe, &f.options());
    assert_eq!(kinds(&r), vec!["small_pipe", "small_pipe"]);
    let Finding::SmallPipe(p) = &r.findings[0] else {
        panic!("{:?}", r.findings[0])
    };
    assert_eq!(
        (p.inode, p.capacity_bytes, p.pages, p.unread_bytes, p.uid),
        (801, 4096, 1, Some(0), Some(0))
    );
    let holders: Vec<(i32, i32, &str)> = p
        .holders
        .iter()
        .map(|h| (h.pid, h.fd, h.access.as_str()))
        .collect();
    assert_eq!(holders, vec![(40, 3, "read"), (40, 4, "write")]);
    assert_eq!(p.holders[0].program, "shrinker");
    let Finding::SmallPipe(p) = &r.findings[1] else {
        panic!()
    };
    // Attributed to the writer (uid 0), although the reader is uid 1000.
    assert_eq!((p.inode, p.pages, p.uid), (802, 2, Some(0)));
    assert_eq!(r.pipe_budget.pipes, 4);
    assert_eq!(r.pipe_budget.pipes_unmeasured, 1);
    assert!(r
        .notes
        .iter()
        .any(|n| n.contains("1 pipe(s) could not be measured")));

    let text = r.to_text();
    assert!(
        text.contains(
            "small pipes (below the default 16 pages): 2\n  pipe:[801] 4096 bytes (1 page), 0 \
             unread, uid 0: pid 40 shrinker fd 3 (read), pid 40 shrinker fd 4 (write)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("summary: 2 findings: 2 small pipes"),
        "{text}"
    );

    // Scoped to a subtree that holds none of them: nothing.
    f.add(FakeProc::new(50, 1, &["other"]));
    let opts = Options {
        pids: vec![50],
        ..f.options()
    };
    assert!(examine_fixture(&f, &probe, &opts).findings.is_empty());
    // Scoped to the child: it holds 802 only.
    let opts = Options {
        pids: vec![41],
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(r.findings.len(), 1);
    assert!(matches!(&r.findings[0], Finding::SmallPipe(p) if p.inode == 802));
}

/// The case study under the stock shim: `runc exec` asleep in a pipe write on its stderr, which
/// the shim holds and does not read; its `runc init` child asleep in a pipe write on a thread.
fn stuck_exec_node() -> (Fixture, FakeProbe) {
    let f = Fixture::new();
    f.add(
        shim(100, SHIM_RUNC, "default", "c1")
            .cgroup("12:pids:/\n0::/\n")
            .fd(11, 501, RD)
            .fd(12, 502, RD),
    )
    .add(
        FakeProc {
            argv: runc_exec_argv("default", "c1"),
            ..FakeProc::new(200, 100, &["runc"])
        }
        .age(95)
        .wchan("anon_pipe_write")
        .fd(1, 501, WR)
        .fd(2, 502, WR),
    )
    .add(
        FakeProc::new(201, 200, &["runc", "init"])
            .comm("runc:[2:INIT]")
            .age(94)
            .cgroup("12:pids:/default/c1\n0::/default/c1\n")
            .wchan("futex_wait_queue")
            .thread(202, "pipe_write")
            .fd(2, 503, WR),
    )
    // Long-lived by design: not stuck, whatever their age.
    .add(FakeProc::new(220, 1, &["runc", "events", "c3"]).age(5000))
    .add(FakeProc::new(221, 1, &["runc", "run", "--bundle", "/b", "c4"]).age(5000))
    // A runc call that just started: not old.
    .add(
        FakeProc {
            argv: runc_exec_argv("default", "c2"),
            ..FakeProc::new(210, 100, &["runc"])
        }
        .age(2),
    );
    let probe = FakeProbe::default()
        .pipe(501, 65536, 0)
        .pipe(502, 65536, 65536)
        .pipe(503, 4096, 4096);
    (f, probe)
}

#[test]
fn old_runc_with_what_it_is_blocked_on() {
    let (f, probe) = stuck_exec_node();
    let r = examine_fixture(&f, &probe, &f.options());
    let runcs: Vec<&report::OldRunc> = r
        .findings
        .iter()
        .filter_map(|x| match x {
            Finding::OldRunc(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(runcs.len(), 2, "{:#?}", r.findings);
    let exec = runcs[0];
    assert_eq!(exec.pid, 200);
    assert_eq!(exec.age_seconds, 95);
    assert_eq!(exec.verb.as_deref(), Some("exec"));
    assert_eq!(exec.container_id.as_deref(), Some("c1"));
    assert_eq!(exec.namespace.as_deref(), Some("default"));
    assert_eq!(exec.root.as_deref(), Some("/run/containerd/runc/default"));
    assert_eq!(exec.wchan.as_deref(), Some("anon_pipe_write"));
    assert_eq!(exec.wchan_tid, None);
    assert_eq!(exec.parent.as_ref().map(|p| p.pid), Some(100));
    // Only the full pipe (stderr), not the empty stdout.
    assert_eq!(exec.blocked_on.len(), 1);
    let b = &exec.blocked_on[0];
    assert_eq!(
        (b.fd, b.inode, b.capacity_bytes, b.unread_bytes),
        (2, 502, Some(65536), Some(65536))
    );
    let readers: Vec<(i32, &str, i32)> = b
        .readers
        .iter()
        .map(|h| (h.pid, h.program.as_str(), h.fd))
        .collect();
    assert_eq!(readers, vec![(100, "containerd-shim-runc-v2", 12)]);
    assert!(exec
        .hint
        .as_deref()
        .unwrap_or("")
        .contains("containerd#4434"));

    // runc init: no id of its own, inherits the parent's; the blocked thread is named.
    let init = runcs[1];
    assert_eq!(init.pid, 201);
    assert_eq!(init.verb.as_deref(), Some("init"));
    assert_eq!(init.container_id.as_deref(), Some("c1"));
    assert_eq!(init.wchan.as_deref(), Some("pipe_write"));
    assert_eq!(init.wchan_tid, Some(202));
    assert_eq!(init.cgroup.as_deref(), Some("/default/c1"));
    assert_eq!(init.blocked_on.len(), 1);
    assert!(init.blocked_on[0].readers.is_empty());
    assert!(init.hint.as_deref().unwrap_or("").contains("nobody reads"));

    let text = r.to_text();
    assert!(
        text.contains(
            "runc processes older than 30s: 2\n  pid 200 runc exec c1 (namespace default): \
             running for 95s, state S, in anon_pipe_write, parent pid 100 \
             containerd-shim-runc-v2\n    writing fd 2 pipe:[502]: 65536 of 65536 bytes \
             unread; read end held by pid 100 containerd-shim-runc-v2 fd 12 (read)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("in pipe_write (thread 202), parent pid 200 runc"),
        "{text}"
    );

    // A lower threshold catches the young one too; a higher one none.
    let opts = Options {
        threshold_secs: 1.0,
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(
        r.findings
            .iter()
            .filter(|x| matches!(x, Finding::OldRunc(_)))
            .count(),
        3
    );
    let opts = Options {
        threshold_secs: 100.0,
        ..f.options()
    };
    // Only the small pipe of runc init is left.
    assert_eq!(
        kinds(&examine_fixture(&f, &probe, &opts)),
        vec!["small_pipe"]
    );
}

#[test]
fn shim_with_an_old_runc_child() {
    let (f, probe) = stuck_exec_node();
    let r = examine_fixture(&f, &probe, &f.options());
    let shims: Vec<&report::ShimTrouble> = r
        .findings
        .iter()
        .filter_map(|x| match x {
            Finding::ShimRuncChild(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(shims.len(), 1, "{:#?}", r.findings);
    let t = shims[0];
    assert_eq!(t.shim.pid, 100);
    assert_eq!(t.shim.program, "containerd-shim-runc-v2");
    assert_eq!(t.shim.namespace.as_deref(), Some("default"));
    assert_eq!(t.shim.id.as_deref(), Some("c1"));
    assert_eq!(t.child.pid, 200);
    assert_eq!(t.child.age_seconds, 95);
    assert_eq!(t.child.wchan.as_deref(), Some("anon_pipe_write"));
    assert_eq!(t.child.verb.as_deref(), Some("exec"));
    assert_eq!(t.child.container_id.as_deref(), Some("c1"));
    let text = r.to_text();
    assert!(
        text.contains(
            "shims with trouble: 1\n  pid 100 containerd-shim-runc-v2 (namespace default, id \
             c1): runc child pid 200 (runc exec c1) has run for 95s, in anon_pipe_write\n"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "summary: 4 findings: 1 small pipe, 2 old runc processes, 1 shim waiting on an old \
             runc"
        ),
        "{text}"
    );
}

#[test]
fn shim_with_an_unreaped_zombie() {
    let f = Fixture::new();
    f.add(shim(100, SHIM_SLUICE, "default", "c1"))
        .add(FakeProc::new(300, 100, &[]).comm("sh").state('Z').age(120))
        // Young zombie: about to be reaped, not reported.
        .add(FakeProc::new(301, 100, &[]).comm("true").state('Z').age(3))
        // An old zombie of something that is not a shim: not our business.
        .add(FakeProc::new(400, 1, &["bash"]))
        .add(FakeProc::new(401, 400, &[]).comm("x").state('Z').age(500));
    let probe = FakeProbe::default();
    let r = examine_fixture(&f, &probe, &f.options());
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let Finding::ShimZombieChild(t) = &r.findings[0] else {
        panic!("{:?}", r.findings[0])
    };
    assert_eq!(
        (t.shim.pid, t.child.pid, t.child.age_seconds),
        (100, 300, 120)
    );
    assert_eq!(t.child.state, "Z");
    assert_eq!(t.child.wchan, None);
    let text = r.to_text();
    assert!(
        text.contains(
            "  pid 100 containerd-shim-sluice-v2 (namespace default, id c1): zombie child pid \
             300 (sh), started 2m00s ago, not reaped\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("summary: 1 finding: 1 unreaped shim child"),
        "{text}"
    );
}

#[test]
fn the_doctor_is_not_a_shim() {
    let f = Fixture::new();
    f.add(FakeProc::new(100, 1, &[SHIM_SLUICE, "doctor", "--json"]))
        .add(FakeProc::new(101, 100, &[]).comm("sh").state('Z').age(120));
    let r = examine_fixture(&f, &FakeProbe::default(), &f.options());
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
}

#[test]
fn cgroups_near_pids_max_v1() {
    let f = Fixture::new();
    f.pids_cgroup("pids", "/default/c1", 3, "3")
        .pids_cgroup("pids", "/default/c2", 1, "10")
        .pids_cgroup("pids", "/default", 4, "max")
        .pids_cgroup("pids", "/default2/c3", 9, "10")
        .pids_cgroup("pids", "/kubepods/pod1", 0, "0");
    // The memory hierarchy has no pids files; a v1 host without `unified` is fine.
    let probe = FakeProbe::default();
    let r = examine_fixture(&f, &probe, &f.options());
    let mut got: Vec<(String, u64, u64, &str, f64)> = r
        .findings
        .iter()
        .map(|x| match x {
            Finding::PidsNearMax(c) => (
                c.cgroup.clone(),
                c.current,
                c.max,
                c.hierarchy.as_str(),
                c.percent,
            ),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            ("/default/c1".to_string(), 3, 3, "v1", 100.0),
            ("/default2/c3".to_string(), 9, 10, "v1", 90.0),
            ("/kubepods/pod1".to_string(), 0, 0, "v1", 100.0),
        ]
    );
    let Some(Finding::PidsNearMax(c)) = r
        .findings
        .iter()
        .find(|x| matches!(x, Finding::PidsNearMax(c) if c.cgroup == "/default/c1"))
    else {
        panic!()
    };
    assert_eq!(
        c.path,
        f.cgroup.join("pids/default/c1").display().to_string()
    );
    assert!(r.to_text().contains(&format!(
        "  /default/c1: 3 of 3 pids (100%) [v1 {}]\n",
        c.path
    )));

    // --cgroup-prefix is by path component: /default matches /default/c1, not /default2.
    let opts = Options {
        cgroup_prefixes: vec!["/default".into()],
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(r.findings.len(), 1);
    assert!(matches!(&r.findings[0], Finding::PidsNearMax(c) if c.cgroup == "/default/c1"));

    // A lower ratio catches c2 (1 of 10).
    let opts = Options {
        pids_ratio: 0.1,
        cgroup_prefixes: vec!["/default".into()],
        ..f.options()
    };
    assert_eq!(examine_fixture(&f, &probe, &opts).findings.len(), 2);
}

#[test]
fn cgroups_near_pids_max_v2_and_hybrid() {
    let f = Fixture::new_v2();
    f.pids_cgroup("", "/k8s.io/pod1/c1", 10, "10")
        .pids_cgroup("", "/k8s.io/pod1", 10, "max")
        .pids_cgroup("", "/system.slice/x.service", 2, "4915");
    let r = examine_fixture(&f, &FakeProbe::default(), &f.options());
    assert_eq!(r.findings.len(), 1, "{:#?}", r.findings);
    let Finding::PidsNearMax(c) = &r.findings[0] else {
        panic!()
    };
    assert_eq!(
        (c.cgroup.as_str(), c.hierarchy.as_str(), c.current, c.max),
        ("/k8s.io/pod1/c1", "v2", 10, 10)
    );

    // Hybrid: v1 pids plus cgroup2 at `unified` (here, unusually, with a pids limit too).
    let f = Fixture::new();
    fixture::put(&f.cgroup.join("unified/cgroup.controllers"), "\n");
    f.pids_cgroup("unified", "/ns/a", 5, "5")
        .pids_cgroup("pids", "/ns/b", 5, "5");
    let r = examine_fixture(&f, &FakeProbe::default(), &f.options());
    let mut got: Vec<(&str, String)> = r
        .findings
        .iter()
        .map(|x| match x {
            Finding::PidsNearMax(c) => (c.hierarchy.as_str(), c.cgroup.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![("v1", "/ns/b".into()), ("v2", "/ns/a".into())]);

    // No pids controller at all: a note, not a failure.
    let f = Fixture::new();
    std::fs::remove_dir_all(f.cgroup.join("pids")).expect("rm pids");
    let r = examine_fixture(&f, &FakeProbe::default(), &f.options());
    assert!(r.findings.is_empty());
    assert!(r.notes.iter().any(|n| n.contains("no pids controller")));
}

#[test]
fn pid_scope_is_a_subtree() {
    let (f, probe) = stuck_exec_node();
    f.add(shim(500, SHIM_RUNC, "other", "c9")).add(
        FakeProc {
            argv: runc_exec_argv("other", "c9"),
            ..FakeProc::new(501, 500, &["runc"])
        }
        .age(300),
    );
    let all = examine_fixture(&f, &probe, &f.options());
    assert_eq!(kinds(&all).iter().filter(|k| *k == "old_runc").count(), 3);

    let opts = Options {
        pids: vec![500],
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(kinds(&r), vec!["old_runc", "shim_runc_child"]);
    assert!(matches!(&r.findings[0], Finding::OldRunc(o) if o.pid == 501));

    // The subtree of the runc exec holds its runc init; the shim is outside it.
    let opts = Options {
        pids: vec![200],
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(kinds(&r), vec!["small_pipe", "old_runc", "old_runc"]);

    // --check keeps only the named kinds; the budget is still counted.
    let opts = Options {
        pids: vec![200],
        checks: cli::Checks {
            pipes: true,
            ..cli::Checks::NONE
        },
        ..f.options()
    };
    let r = examine_fixture(&f, &probe, &opts);
    assert_eq!(kinds(&r), vec!["small_pipe"]);
    assert_eq!(r.pipe_budget.pipes, 3);
    let text = r.to_text();
    assert!(
        text.contains("runc processes older than 30s: not checked (--check)"),
        "{text}"
    );
    assert!(
        text.contains("small pipes (below the default 16 pages): 1"),
        "{text}"
    );
    // Without the pids check, a missing cgroup root is no failure.
    let opts = Options {
        cgroup_root: "/nonexistent/cgroup".into(),
        checks: cli::Checks {
            pids: false,
            ..cli::Checks::ALL
        },
        ..f.options()
    };
    assert!(examine(&opts, &f.host(&probe)).is_ok());

    let opts = Options {
        pids: vec![4242],
        ..f.options()
    };
    assert!(matches!(
        examine(&opts, &f.host(&probe)),
        Err(DoctorError::NoSuchPid(4242))
    ));
    let mut out = Vec::new();
    assert_eq!(run(&opts, &f.host(&probe), &mut out), EXIT_FAILED);
    assert!(out.is_empty());
}

#[test]
fn json_shape() {
    let (f, probe) = stuck_exec_node();
    f.pids_cgroup("pids", "/default/c1", 3, "3");
    let opts = Options {
        format: Format::Json,
        ..f.options()
    };
    let (code, text) = run_fixture(&f, &probe, &opts);
    assert_eq!(code, EXIT_FINDINGS);
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    let obj = v.as_object().expect("an object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "checks",
            "findings",
            "healthy",
            "notes",
            "pids_ratio",
            "pipe_budget",
            "threshold_seconds"
        ]
    );
    assert_eq!(
        v["checks"],
        serde_json::json!(["pipes", "runc", "pids", "shims"])
    );
    assert_eq!(v["healthy"], Value::Bool(false));
    assert_eq!(v["threshold_seconds"], 30.0);
    assert_eq!(v["pids_ratio"], 0.9);
    let b = &v["pipe_budget"];
    assert_eq!(b["soft_limit_pages"], 16384);
    assert_eq!(b["hard_limit_pages"], 0);
    assert_eq!(b["page_size"], 4096);
    assert_eq!(b["pipes"], 3);
    assert_eq!(b["pipes_unmeasured"], 0);
    assert_eq!(b["users"][0]["uid"], 0);
    assert_eq!(b["users"][0]["pages"], 33);
    assert_eq!(b["users"][0]["status"], "ok");

    let findings = v["findings"].as_array().expect("findings array");
    let kinds: Vec<&str> = findings
        .iter()
        .map(|x| x["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        vec![
            "small_pipe",
            "old_runc",
            "old_runc",
            "pids_near_max",
            "shim_runc_child"
        ]
    );
    let small = &findings[0];
    assert_eq!(small["inode"], 503);
    assert_eq!(small["capacity_bytes"], 4096);
    assert_eq!(small["holders"][0]["access"], "write");
    let exec = &findings[1];
    for (key, want) in [
        ("pid", Value::from(200)),
        ("verb", Value::from("exec")),
        ("container_id", Value::from("c1")),
        ("namespace", Value::from("default")),
        ("wchan", Value::from("anon_pipe_write")),
        ("wchan_tid", Value::Null),
        ("bundle", Value::Null),
        ("age_seconds", Value::from(95)),
        ("state", Value::from("S")),
    ] {
        assert_eq!(exec[key], want, "old_runc.{key}");
    }
    assert_eq!(exec["argv"][0], "runc");
    assert_eq!(exec["parent"]["pid"], 100);
    assert_eq!(exec["blocked_on"][0]["fd"], 2);
    assert_eq!(exec["blocked_on"][0]["unread_bytes"], 65536);
    assert_eq!(exec["blocked_on"][0]["readers"][0]["pid"], 100);
    assert_eq!(exec["blocked_on"][0]["readers"][0]["access"], "read");
    let cg = &findings[3];
    assert_eq!(cg["cgroup"], "/default/c1");
    assert_eq!(cg["hierarchy"], "v1");
    assert_eq!(cg["current"], 3);
    assert_eq!(cg["max"], 3);
    let sh = &findings[4];
    assert_eq!(sh["shim"]["pid"], 100);
    assert_eq!(sh["shim"]["id"], "c1");
    assert_eq!(sh["shim"]["namespace"], "default");
    assert_eq!(sh["child"]["pid"], 200);
    assert_eq!(sh["child"]["verb"], "exec");
    assert_eq!(sh["child"]["container_id"], "c1");

    // Healthy: the same keys, no findings.
    let (f, probe) = healthy_node();
    let (code, text) = run_fixture(
        &f,
        &probe,
        &Options {
            format: Format::Json,
            ..f.options()
        },
    );
    assert_eq!(code, EXIT_HEALTHY);
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["healthy"], Value::Bool(true));
    assert_eq!(v["findings"], Value::Array(Vec::new()));
    assert_eq!(v["notes"], Value::Array(Vec::new()));
}

/// A reader with the exported types gets back exactly what was written: the integration tests
/// read `--json` this way.
#[test]
fn json_reads_back_into_the_report_types() {
    let (f, probe) = stuck_exec_node();
    f.pids_cgroup("pids", "/default/c1", 3, "3");
    let r = examine_fixture(&f, &probe, &f.options());
    let text = r.to_json();
    let back: report::JsonReport = serde_json::from_str(&text).expect("reads back");
    assert_eq!(back.findings, r.findings);
    assert_eq!(back.pipe_budget, r.pipe_budget);
    assert_eq!(back.notes, r.notes);
    assert!(!back.healthy);
    assert_eq!(back.checks, vec!["pipes", "runc", "pids", "shims"]);
    assert_eq!(
        (back.threshold_seconds, back.pids_ratio),
        (r.threshold_seconds, r.pids_ratio)
    );

    // A report without one of its keys is refused, not read as a default.
    let mut v: Value = serde_json::from_str(&text).expect("valid JSON");
    v.as_object_mut().expect("an object").remove("healthy");
    assert!(serde_json::from_value::<report::JsonReport>(v).is_err());

    // JSON spells an access mode as the text does.
    for a in [
        Access::Read,
        Access::Write,
        Access::ReadWrite,
        Access::Unknown,
    ] {
        assert_eq!(serde_json::to_value(a).expect("access"), a.as_str());
        assert_eq!(
            serde_json::from_value::<Access>(Value::from(a.as_str())).expect("access"),
            a
        );
    }
}

#[test]
fn exit_codes_through_main() {
    // Through the real entry point (real pipe probe: fixture pipes cannot be measured, which
    // is a note). Pids above the kernel's pid_max limit (2^22) cannot collide with ours.
    let f = Fixture::new();
    // main() reads the real clock: boot the fixture 10 000 s before it.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    std::fs::write(
        f.proc.join("stat"),
        format!("cpu 1 2 3\nbtime {}\n", now - 10_000),
    )
    .expect("write stat");
    let base = 5_000_000;
    f.add(shim(base, SHIM_RUNC, "default", "c1").fd(3, 1, RD));
    let root = |f: &Fixture| {
        vec![
            "--proc-root".to_string(),
            f.proc.display().to_string(),
            "--cgroup-root".to_string(),
            f.cgroup.display().to_string(),
        ]
    };
    assert_eq!(main(&root(&f)), EXIT_HEALTHY);

    f.add(
        FakeProc {
            argv: runc_exec_argv("default", "c1"),
            ..FakeProc::new(base + 1, base, &["runc"])
        }
        .age(60),
    );
    assert_eq!(main(&root(&f)), EXIT_FINDINGS);
    let mut args = root(&f);
    args.extend(argv(&["--threshold", "61", "--json"]));
    assert_eq!(main(&args), EXIT_HEALTHY);

    // The doctor itself failing.
    assert_eq!(main(&argv(&["--bogus"])), EXIT_FAILED);
    assert_eq!(main(&argv(&["--threshold"])), EXIT_FAILED);
    assert_eq!(main(&argv(&["--pids-ratio", "1.5"])), EXIT_FAILED);
    assert_eq!(main(&argv(&["--pid", "zero"])), EXIT_FAILED);
    assert_eq!(
        main(&argv(&["--proc-root", "/nonexistent/proc"])),
        EXIT_FAILED
    );
    let mut args = root(&f);
    args.extend(argv(&["--cgroup-root", "/nonexistent/cgroup"]));
    assert_eq!(main(&args), EXIT_FAILED);
    // A proc root without btime is not a proc root.
    std::fs::write(f.proc.join("stat"), "cpu 1 2 3\n").expect("write");
    assert_eq!(main(&root(&f)), EXIT_FAILED);
    assert_eq!(main(&argv(&["--help"])), EXIT_HEALTHY);
}

#[test]
fn command_line() {
    let parse = |a: &[&str]| cli::parse(&argv(a));
    assert_eq!(parse(&[]), Ok(Command::Run(Options::default())));
    assert_eq!(parse(&["-h"]), Ok(Command::Help));
    let Ok(Command::Run(o)) = parse(&[
        "--json",
        "--threshold=1.5",
        "-pids-ratio",
        "0.5",
        "--pid",
        "7",
        "--pid=8",
        "--cgroup-prefix",
        "k8s.io//pod/",
        "--proc-root",
        "/host/proc",
        "--cgroup-root=/host/cg",
    ]) else {
        panic!("parse failed")
    };
    assert_eq!(o.format, Format::Json);
    assert_eq!(o.threshold_secs, 1.5);
    assert_eq!(o.pids_ratio, 0.5);
    assert_eq!(o.pids, vec![7, 8]);
    assert_eq!(o.cgroup_prefixes, vec!["/k8s.io/pod".to_string()]);
    assert_eq!(o.checks, cli::Checks::ALL);
    assert_eq!(o.proc_root, std::path::PathBuf::from("/host/proc"));
    assert_eq!(o.cgroup_root, std::path::PathBuf::from("/host/cg"));
    for bad in [
        &["--threshold", "-1"][..],
        &["--threshold", "soon"],
        &["--pids-ratio", "-0.1"],
        &["--pid", "0"],
        &["--pid"],
        &["--cgroup-prefix", "/a/../b"],
        &["--json=yes"],
        &["--check", "everything"],
        &["--check", ","],
        &["extra"],
        &["--"],
    ] {
        assert!(parse(bad).is_err(), "{bad:?} should be refused");
    }
    let Ok(Command::Run(o)) = parse(&["--check", "pids,shims", "--check=runc"]) else {
        panic!("parse failed")
    };
    assert_eq!(
        o.checks,
        cli::Checks {
            pipes: false,
            runc: true,
            pids: true,
            shims: true
        }
    );
    assert!(cli::cgroup_in_prefix("/default/c1", "/default"));
    assert!(cli::cgroup_in_prefix("/default", "/default"));
    assert!(cli::cgroup_in_prefix("/anything", "/"));
    assert!(!cli::cgroup_in_prefix("/default2/c1", "/default"));
}

#[test]
fn runc_command_lines() {
    assert_eq!(
        parse_runc_argv(&runc_exec_argv("k8s.io", "abc")),
        RuncCall {
            verb: Some("exec".into()),
            container_id: Some("abc".into()),
            root: Some("/run/containerd/runc/k8s.io".into()),
            bundle: None,
        }
    );
    assert_eq!(
        parse_runc_argv(&argv(&[
            "/usr/sbin/runc",
            "--root=/r",
            "--systemd-cgroup",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/b/init.pid",
            "--no-pivot",
            "id1"
        ])),
        RuncCall {
            verb: Some("create".into()),
            container_id: Some("id1".into()),
            root: Some("/r".into()),
            bundle: Some("/b".into()),
        }
    );
    // kill names the id before the signal; exec with a command names it before the command.
    let kill = parse_runc_argv(&argv(&["runc", "kill", "--all", "id2", "9"]));
    assert_eq!(kill.container_id.as_deref(), Some("id2"));
    let exec = parse_runc_argv(&argv(&["runc", "exec", "-t", "--env", "A=1", "id3", "sh"]));
    assert_eq!(exec.container_id.as_deref(), Some("id3"));
    let init = parse_runc_argv(&argv(&["runc", "init"]));
    assert_eq!(
        (init.verb.as_deref(), init.container_id),
        (Some("init"), None)
    );
    assert_eq!(parse_runc_argv(&argv(&["runc"])), RuncCall::default());
}

#[test]
fn proc_file_formats() {
    let s = parse_stat("42 (a) b (c)) Z 7 42 42 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0\n")
        .expect("parse");
    assert_eq!(
        (s.comm.as_str(), s.state, s.ppid, s.start_ticks),
        ("a) b (c)", 'Z', 7, 12345)
    );
    assert!(parse_stat("42 (x) S 1").is_none());
    assert_eq!(
        pick_cgroup("12:pids:/ns/c1\n11:memory:/ns/c1\n0::/ns/c1u\n").as_deref(),
        Some("/ns/c1")
    );
    assert_eq!(pick_cgroup("11:memory:/m\n0::/u\n").as_deref(), Some("/u"));
    assert_eq!(
        pick_cgroup("5:cpu,cpuacct,pids:/p\n").as_deref(),
        Some("/p")
    );
    assert_eq!(Access::from_flags(0o100000), Access::Read);
    assert_eq!(Access::from_flags(0o4001), Access::Write);
    assert_eq!(Access::from_flags(0o2), Access::ReadWrite);
    assert_eq!(procfs::pipe_inode("pipe:[184851]"), Some(184851));
    assert_eq!(procfs::pipe_inode("socket:[1]"), None);
    assert_eq!(report::fmt_age(59), "59s");
    assert_eq!(report::fmt_age(307), "5m07s");
    assert_eq!(report::fmt_age(3 * 3600 + 12 * 60), "3h12m");
    assert_eq!(report::fmt_age(2 * 86400 + 4 * 3600), "2d04h");
}
