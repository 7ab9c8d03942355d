//! Run: `SLUICE_CONTAINERD=1.7 cargo test -p sluice-integration --test classes -- --ignored
//! --nocapture --test-threads=2` (as root; see scripts/test.sh).
//!
//! The failure classes of issue 24: each a way the stock shim has failed its users (read in
//! the containerd issues each row names), written as one row of [`CLASSES`]: the trigger, what
//! the stock shim of each containerd line does with it, and what sluice must do. A row's test
//! runs the trigger against both shims on the selected line (`SLUICE_CONTAINERD`) and asserts
//! both answers: the stock one proves the trigger is real (or that the line fixed it), sluice's
//! is the good outcome (answered within its bound, every byte a reader could take delivered,
//! nothing left behind).
//!
//! Rows whose trigger an existing suite already runs name that test as their evidence instead
//! of running it twice; rows that need cgroup v2 or systemd belong to the guest lane
//! (docs/vm-lane.md). `docs/failure-classes.md` is generated from the table
//! (`SLUICE_CLASSES_WRITE_DOC=1 cargo test -p sluice-integration --test classes doc`), and the
//! unit test `doc_is_the_table` fails when the two differ.

#[path = "classes/rows.rs"]
mod rows;
#[path = "classes/shim.rs"]
mod shim;
#[path = "classes/verdict.rs"]
mod verdict;

use std::path::PathBuf;
use std::time::Instant;

use sluice_integration::versions::{self, Line};
use sluice_integration::Runtime;

use verdict::{Measured, Verdict};
use Verdict::{Blocked, Fine, Hang, Leak, Loss};

/// How a row is shown to be true.
#[derive(Clone, Copy)]
enum Check {
    /// Run here, against both shims (the row's `#[test]` is `classes::<name>`).
    Run(fn(Runtime) -> Measured),
    /// An existing test runs this trigger on the lines it names; its assertions are the row's.
    Test(&'static str),
    /// Needs cgroup v2 or systemd: the guest lane's test, or what is still to be written.
    Guest(&'static str),
}

/// One failure class.
struct Class {
    /// The row's test name (`classes::<name>`).
    name: &'static str,
    class: &'static str,
    /// Issues read (containerd's unless named).
    issues: &'static str,
    /// The trigger as run here (scaled down where the issue's numbers take too long).
    trigger: &'static str,
    check: Check,
    /// What the stock shim does on 1.6, 1.7, 2.x: any of these (a race the trigger wins only
    /// sometimes lists both outcomes); empty: not run on that line.
    stock: [&'static [Verdict]; 3],
    /// What sluice must do on 1.6, 1.7, 2.x.
    sluice: [&'static [Verdict]; 3],
    /// The figures measured on each line (from the runs' `CLASS|` lines), for the doc.
    measured: &'static str,
}

const FINE: &[Verdict] = &[Fine];
const NOT_RUN: &[Verdict] = &[];
const ALL_FINE: [&[Verdict]; 3] = [FINE, FINE, FINE];
const NONE_RUN: [&[Verdict]; 3] = [NOT_RUN, NOT_RUN, NOT_RUN];

const CLASSES: &[Class] = &[
    Class {
        name: "held_stdout",
        class: "a child keeps an exec's stdout open",
        issues: "#2624 #9568 #13377",
        trigger: "`sh -c 'sleep 600 & echo ok'` as an exec (attached `ctr task exec`) and as the \
                  init (`ctr run --rm`); bound 5 s",
        check: Check::Run(rows::held_stdout),
        stock: [FINE, FINE, &[Hang]],
        sluice: ALL_FINE,
        measured: "1.6: stock exec 2.1-2.2 s (its copy gets 2 s after the exit), init 0.3 s; sluice exec killed at 12 s (the FIFO held open until the pipe's EOF: the regression on main), 5.6 s on 1.7 and 2.x. 1.7: stock 2.1 s. 2.x: stock exec 10.1 s (past the 5 s bound), init 0.2 s",
    },
    Class {
        name: "exit_order",
        class: "exit events out of order or never sent",
        issues: "#9719 #9999 #10589 #10603 #10634",
        trigger: "six concurrent execs with their own codes; 4 inits living 0.3 s with 3 \
                  detached execs racing each; 50 detached execs (not 500) and a SIGKILL of \
                  their init: every started exec has one `/tasks/exit`, before its init's",
        check: Check::Run(rows::exit_order),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "every line, both shims: 6 + 50 + 4x3 execs started, no exit missing, none after its init's exit",
    },
    Class {
        name: "fan_out",
        class: "reaper fan-out: exits lost, goroutines/tasks grow",
        issues: "#9217 #12678 #13544 #13849",
        trigger: "200 short execs 20 at once (not 1,000/50), each with its own exit code, while \
                  the client of a `seq 1 200000` exec is SIGSTOPped (the slow waiter): every \
                  code and exit event arrives, the slow exec's output is whole, the shim's fds \
                  come back",
        check: Check::Run(rows::fan_out),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "1.6: stock 25.0 s for the 200 execs, fds 32 -> 32, threads 11 -> 25; sluice 9.2 s, fds 22 -> 22, threads 1 -> 1. 1.7: stock 9.5 s, fds 32 -> 33; sluice 9.0 s. 2.x: stock 6.9 s, fds 33 -> 32, threads 13 -> 18; sluice 6.4 s. No code or exit event lost, the stopped client got all 200000 lines, on every line",
    },
    Class {
        name: "memory_per_exec",
        class: "memory per exec that never comes back",
        issues: "ttrpc #236, #13561",
        trigger: "10,000 execs (the benchmark); 100 + 300 execs in the robustness suite",
        check: Check::Test(
            "robustness::execs_leave_nothing_behind (sluice, 1.6); bench `execs` workload (both \
             shims, bench/README.md)",
        ),
        stock: NONE_RUN,
        sluice: [FINE, NOT_RUN, NOT_RUN],
        measured: "robustness: 300 execs, sluice RSS 13 908 -> 13 964 KiB (1.6), 13 752 -> 13 692 \
                   KiB (2.x); 1,000 execs 13 960 -> 13 952 KiB",
    },
    Class {
        name: "slow_create",
        class: "a lock held across a slow runc call",
        issues: "#13483 #8557",
        trigger: "a `runc create` that sleeps 8 s first (fault-runc `slow`), with State, Pids \
                  and an exec of a sibling in the same group shim meanwhile; bound 3 s each",
        check: Check::Run(rows::slow_create),
        stock: [&[Hang], &[Hang], &[Hang]],
        sluice: ALL_FINE,
        measured: "every line: stock State(c1) no answer within 5 s, Pids(c1) 2.5-2.6 s (when the create ended), exec 0.1-0.2 s; sluice State and Pids 0.0 s, exec 0.1-0.3 s",
    },
    Class {
        name: "delete_retry",
        class: "Delete not idempotent: shims leak",
        issues: "#7496 #8931 #8981",
        trigger: "Delete sent with a 1 s client deadline over a `runc delete` that sleeps 4 s \
                  first (fault-runc `slow`), retried at once: the retry answers the first one's \
                  result (exit status 3), then Shutdown ends the shim",
        check: Check::Run(rows::delete_retry),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "stock (every line): the first Delete's runc is killed at the client's deadline (go-runc's context), the retry runs `runc delete` itself: OK exit 3 in 0.0-0.1 s, Shutdown ends the shim. sluice before this branch: the retry was refused `FAILED_PRECONDITION: cannot delete a process that is being deleted`, for ever (the ttrpc crate dropped the first Delete's handler at the deadline, mid-transaction); now the retry answers the first one's result (OK exit 3 after 3.0 s) and Shutdown ends the shim, every line",
    },
    Class {
        name: "events_while_down",
        class: "events dropped while containerd is down",
        issues: "#6771",
        trigger: "containerd SIGKILLed for 4 s (not 60) while an init exits 7",
        check: Check::Test("restarts::restarts_stock, restarts::restarts_sluice (every line)"),
        stock: [FINE, &[Loss], &[Loss]],
        sluice: [FINE, &[Loss], &[Loss]],
        measured: "1.6 keeps the task STOPPED with exit code 7 (both shims); 1.7 and 2.x delete \
                   it while loading (\"cleaning leaked shim process\") and no client sees an \
                   exit event, whatever the shim sends: containerd's doing, so sluice matches \
                   the stock shim",
    },
    Class {
        name: "full_log",
        class: "the container blocks when nobody reads",
        issues: "#9342 #11511 #12462",
        trigger: "a container printing as fast as it can into a `file://` log on a 256 KiB \
                  tmpfs that fills up: its counter must keep rising, an exec must work (the \
                  reader-killed case: robustness::client_killed_while_flooding{,_stock}, 1.6)",
        check: Check::Run(rows::full_log),
        stock: [&[Blocked], &[Blocked], &[Blocked]],
        sluice: ALL_FINE,
        measured: "every line: stock's container stops at counter 5567 (`anon_pipe_write`) once 256 KiB are written; sluice's keeps going (1.6: 5711 -> 7432 in 3 s; 2.x: 18123 -> 22523) and an exec works",
    },
    Class {
        name: "tty_fds",
        class: "terminal and FIFO descriptors kept after their process",
        issues: "#11160 #11205 #8856",
        trigger: "5 tty containers created, started, killed and deleted in one group shim, and \
                  5 `exec -t` into its long-lived member: the shim's fds come back (the \
                  containerd restart after `exec -it` is not run)",
        check: Check::Run(rows::tty_fds),
        stock: [&[Leak], &[Leak], &[Leak]],
        sluice: ALL_FINE,
        measured: "group shim fds before / with 5 tty containers and 5 tty execs / after their removal: stock 1.6 32/94/59, 1.7 32/94/60, 2.x 33/94/47; sluice 22/61/22, 22/62/22, 22/58/22",
    },
    Class {
        name: "tty_output",
        class: "terminal output cut short",
        issues: "#3738 #12289 #14120",
        trigger: "10 runs (not 100) of `ctr task exec -t ... seq 1 100000` on a pty: every run \
                  ends with 100000",
        check: Check::Run(rows::tty_output),
        stock: [&[Fine, Loss], &[Fine, Loss], &[Fine, Loss]],
        sluice: ALL_FINE,
        measured: "stock 1.7 cut one run of ten short (98515 of 100000 lines, exit 0), the other lines 0 of 10 in our runs: a race, so the stock cell allows both; sluice 0 of 10 on every line (3.2-6.4 s for the ten)",
    },
    Class {
        name: "oom_plain_exit",
        class: "OOM told as a plain exit",
        issues: "#6323 #8893 #12714",
        trigger: "guest: a container over its memory limit (the pod and container with the \
                  same limit is not written yet)",
        check: Check::Guest(
            "node::{sluice,stock}::{cgroupfs,systemd}::oom (guest); \
             behaviours::oom_is_published_before_the_exit (sluice, every line, host)",
        ),
        stock: NONE_RUN,
        sluice: ALL_FINE,
        measured: "",
    },
    Class {
        name: "inotify_per_shim",
        class: "one inotify instance per shim",
        issues: "#5670 #10308 #11652",
        trigger: "guest: 130 containers on cgroup v2 with the default `max_user_instances`",
        check: Check::Guest("not written yet"),
        stock: NONE_RUN,
        sluice: NONE_RUN,
        measured: "",
    },
    Class {
        name: "quitting_logger",
        class: "a logger binary that exits at once",
        issues: "#12490 #12595",
        trigger: "`ctr run --log-uri binary://<script that exits 0>`: answered within 10 s, \
                  nothing left after removal",
        check: Check::Run(rows::quitting_logger),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "every line, both shims: `ctr run -d` succeeds in 0.1-0.5 s and the container runs",
    },
    Class {
        name: "cancelled_create",
        class: "a request cancelled mid-create leaves `runc init` behind",
        issues: "#11674, runc #4481",
        trigger: "`ctr --timeout 2s run` over a `runc create` that returns 5 s after its work \
                  (fault-runc `slow-exit`: `runc init` waits in the container meanwhile): \
                  after removal, no `runc init`, runc state or cgroup",
        check: Check::Run(rows::cancelled_create),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "every line, both shims: ctr fails at 2.0 s (context deadline exceeded), containerd cleans up, no task, `runc init`, runc state or cgroup left (stock 3.7-4.0 s for the row, sluice 6.7-7.1 s: it lets runc create end before Delete)",
    },
    Class {
        name: "shim_killed",
        class: "the shim killed: the container orphaned",
        issues: "#6402 #10727",
        trigger: "`kill -9` of the shims with three containers running, then `ctr task rm -f`",
        check: Check::Test("restarts::restarts_stock, restarts::restarts_sluice (every line)"),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "no process, runc state, mount or cgroup left on any line, both shims",
    },
    Class {
        name: "exec_zombies",
        class: "zombies of exec'd processes",
        issues: "#7717 #9979 #10002",
        trigger: "8 rounds 0.3 s apart (not every second for long) of an attached exec, a \
                  detached exec and every 4th round a tty exec into a container whose pid 1 \
                  (`sleep`) never reaps: no zombie of the shim or in the container",
        check: Check::Run(rows::exec_zombies),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "every line, both shims: no zombie of the shim or in the container after 18 execs",
    },
    Class {
        name: "delete_never_answers",
        class: "a shim that never answers Delete stalls containerd's start",
        issues: "#13848 #13954",
        trigger: "sluice's side: a `runc delete` (and every other verb) that never returns",
        check: Check::Test("matrix::{create,start,exec,kill,delete,...} `hang` cells (every line)"),
        stock: [&[Hang], &[Hang], &[Hang]],
        sluice: ALL_FINE,
        measured: "stock hangs on every `hang` cell (4 s limit); sluice answers within its 5 s \
                   deadline with verb, container, time and runc's words",
    },
    Class {
        name: "paused_kill",
        class: "runc/kernel: a frozen cgroup swallows SIGKILL",
        issues: "runc #3134 #2105",
        trigger: "kill -9 and delete of a paused container (cgroup v1 host; v2 in the guest is \
                  not written yet): STOPPED within 10 s",
        check: Check::Run(rows::paused_kill),
        stock: ALL_FINE,
        sluice: ALL_FINE,
        measured: "every line, both shims: Kill 0.0-0.1 s, STOPPED 0.0-0.3 s later (runc thaws a frozen cgroup before SIGKILL here, cgroup v1)",
    },
    Class {
        name: "frozen_holder",
        class: "runc/kernel: a D-state process holds the stdio pipe",
        issues: "#13377 #13814",
        trigger: "an exec's background child holding its stdout is frozen (a freezer cgroup of \
                  its own: it cannot die at once): the exec returns within 5 s, Kill and State \
                  answer within 3 s while the init cannot be reaped, and after the thaw the \
                  task stops and goes",
        check: Check::Run(rows::frozen_holder),
        stock: [FINE, FINE, &[Hang]],
        sluice: ALL_FINE,
        measured: "stock exec 2.1-2.2 s on 1.6 and 1.7, 10.1 s on 2.x; sluice 12 s (killed) on 1.6 and 5.6-5.7 s on 1.7 and 2.x (the FIFO regression); Kill and task ls 0.0-0.1 s for both while the init cannot be reaped; STOPPED at once after the thaw",
    },
    Class {
        name: "create_blocks",
        class: "runc/kernel: systemd never answers `runc init`",
        issues: "runc #3904",
        trigger: "a `runc create` that never returns",
        check: Check::Test("matrix::create `hang` cell (every line)"),
        stock: [&[Hang], &[Hang], &[Hang]],
        sluice: ALL_FINE,
        measured: "stock: ctr blocked past 4 s; sluice: fails at its deadline, no runc state, \
                   mount, cgroup or runc process left",
    },
];

fn line_index(line: Line) -> usize {
    match line {
        Line::V1_6 => 0,
        Line::V1_7 => 1,
        // Upstream 2.N releases are held to the 2.x column until they have their own.
        Line::V2 | Line::V2_2 | Line::V2_3 | Line::V2_4 => 2,
    }
}

fn class(name: &str) -> &'static Class {
    CLASSES
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no class {name} in CLASSES"))
}

/// Runs row `name` against both shims on the selected line and asserts the table's answers.
fn run_row(name: &str) {
    let c = class(name);
    let Check::Run(trigger) = c.check else {
        panic!("{name} has no trigger of its own");
    };
    // Fail loudly, before the stock run, if sluice is not built.
    sluice_integration::system::sluice_shim_bin();
    let line = versions::selected().line;
    let i = line_index(line);
    let mut failures = Vec::new();
    for (rt, expected) in [
        (Runtime::RuncV2, c.stock[i]),
        (Runtime::Sluice, c.sluice[i]),
    ] {
        let started = Instant::now();
        eprintln!("[{name} {rt} {}] {}", line.label(), c.trigger);
        let m = trigger(rt);
        let got = m.verdict();
        eprintln!(
            "CLASS|{name}|{}|{rt}|{got}|{:.1}s|{}",
            line.label(),
            started.elapsed().as_secs_f64(),
            m.figures.join("; ")
        );
        if !expected.contains(&got) {
            failures.push(format!(
                "[{rt}, containerd {}] expected {}, got {m}",
                line.label(),
                cell(expected)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} ({}):\n{}",
        c.class,
        c.trigger,
        failures.join("\n")
    );
}

macro_rules! rows {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            #[ignore = "needs root, containerd and runc; run with --ignored"]
            fn $name() {
                run_row(stringify!($name));
            }
        )*
        /// Every runnable row has its test, and every test its row.
        const TESTED: &[&str] = &[$(stringify!($name)),*];
    };
}

rows!(
    held_stdout,
    exit_order,
    fan_out,
    slow_create,
    delete_retry,
    full_log,
    tty_fds,
    tty_output,
    quitting_logger,
    cancelled_create,
    exec_zombies,
    paused_kill,
    frozen_holder,
);

// ---- the document ----------------------------------------------------------------------------

const DOC: &str = "docs/failure-classes.md";
const BEGIN: &str = "<!-- generated from integration/tests/classes.rs: begin -->";
const END: &str = "<!-- generated from integration/tests/classes.rs: end -->";

fn cell(v: &[Verdict]) -> String {
    if v.is_empty() {
        return "—".into();
    }
    v.iter().map(|v| v.word()).collect::<Vec<_>>().join(" or ")
}

fn evidence(c: &Class) -> String {
    match c.check {
        Check::Run(_) => format!("`classes::{}`", c.name),
        Check::Test(t) => t.to_string(),
        Check::Guest(t) => format!("guest: {t}"),
    }
}

/// The table and the figures, as the doc carries them between its markers.
fn generated() -> String {
    let mut s = String::new();
    s.push_str(
        "| class | issues read | trigger (as run) | stock 1.6 | stock 1.7 | stock 2.x | sluice \
         1.6 / 1.7 / 2.x | evidence |\n|---|---|---|---|---|---|---|---|\n",
    );
    for c in CLASSES {
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} | {} |\n",
            c.class,
            c.issues,
            c.trigger,
            cell(c.stock[0]),
            cell(c.stock[1]),
            cell(c.stock[2]),
            cell(c.sluice[0]),
            cell(c.sluice[1]),
            cell(c.sluice[2]),
            evidence(c)
        ));
    }
    s.push_str("\n### As measured\n\n");
    for c in CLASSES.iter().filter(|c| !c.measured.is_empty()) {
        s.push_str(&format!("- **{}** ({}): {}\n", c.class, c.name, c.measured));
    }
    s
}

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(DOC)
}

/// The doc's generated part is the table's: regenerate with `SLUICE_CLASSES_WRITE_DOC=1`.
#[test]
fn doc_is_the_table() {
    let path = doc_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (head, rest) = text
        .split_once(BEGIN)
        .unwrap_or_else(|| panic!("{DOC} has no {BEGIN:?}"));
    let (body, tail) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{DOC} has no {END:?}"));
    let want = format!("\n{}", generated());
    if body != want {
        if std::env::var_os("SLUICE_CLASSES_WRITE_DOC").is_some() {
            std::fs::write(&path, format!("{head}{BEGIN}{want}{END}{tail}"))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else {
            panic!(
                "{DOC} differs from the table in integration/tests/classes.rs; rewrite it with \
                 SLUICE_CLASSES_WRITE_DOC=1 cargo test -p sluice-integration --test classes doc"
            );
        }
    }
}

/// Each runnable row has a `#[test]`, each test a row; names are unique.
#[test]
fn every_row_has_its_check() {
    for c in CLASSES {
        match c.check {
            Check::Run(_) => assert!(TESTED.contains(&c.name), "{} has no #[test]", c.name),
            Check::Test(t) | Check::Guest(t) => {
                assert!(!t.is_empty(), "{} names no test", c.name)
            }
        }
        assert_eq!(
            CLASSES.iter().filter(|o| o.name == c.name).count(),
            1,
            "{} twice",
            c.name
        );
    }
    for t in TESTED {
        assert!(
            matches!(class(t).check, Check::Run(_)),
            "{t} is tested but its row names another test"
        );
    }
}
