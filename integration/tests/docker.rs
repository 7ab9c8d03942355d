//! Docker Engine as the client (issue 26): what a Docker user types, run against the stock shim
//! and sluice in the same run. A client is a column, a scenario is a row: each row of [`ROWS`]
//! is a user action written once as data (docker commands and what the user must see), run in
//! each column, a Docker version × shim configuration, each column its own private dockerd and
//! containerd ([`Docker`]).
//!
//! The Docker version follows the containerd line (`SLUICE_CONTAINERD`): 20.10 on 1.6, 26 on
//! 1.7, 28 on 2.x (`SLUICE_DOCKER` overrides), so scripts/test.sh's per-line runs cover all
//! three. sluice runs the whole table in the configuration of [`ShimConfig::primary_sluice`]
//! (20.10: installed as `containerd-shim-runc-v2`; 26: `docker run --runtime
//! io.containerd.sluice.v2`; 28: daemon.json `runtimeType` as the default runtime); the other
//! configurations each run a short table (`configurations`).
//!
//! Run: `SLUICE_CONTAINERD=1.7 cargo test -p sluice-integration --test docker -- --ignored
//! --nocapture --test-threads=2` (as root, after scripts/setup.sh, which runs
//! scripts/fetch-docker.sh).

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

use sluice_integration::cmd::poll;
use sluice_integration::docker::{
    Docker, DockerOpts, DockerVersion, ShimConfig, DOCKER_TIMEOUT, IMAGE,
};
use sluice_integration::fault::{Action, CGO_CRASH_LINE};
use sluice_integration::pty::PtyRun;
use sluice_integration::system;
use sluice_integration::CmdOutput;

// ---- the step language -------------------------------------------------------------------

/// What a command's stream must hold.
#[derive(Clone, Copy, Debug)]
enum Text {
    Any,
    Exact(&'static str),
    Contains(&'static str),
}

impl Text {
    fn check(self, got: &str) -> bool {
        match self {
            Text::Any => true,
            Text::Exact(s) => got == s,
            Text::Contains(s) => got.contains(s),
        }
    }
}

/// What the user sees of one docker command.
#[derive(Clone, Copy, Debug)]
struct Expect {
    /// `Some(n)`: exit code n; `None`: any non-zero code (never a timeout).
    code: Option<i32>,
    stdout: Text,
    stderr: Text,
    /// Either stream holds this (where Docker versions differ in which they print an error to:
    /// 20.10's `docker exec` prints the runtime's error on stdout).
    says: Option<&'static str>,
    /// The command returns within this (a hang is a failure, not a slow pass).
    within: Duration,
    /// ... and not before this (a stop that must wait for its grace period).
    not_before: Duration,
}

const fn code(c: i32) -> Expect {
    Expect {
        code: Some(c),
        stdout: Text::Any,
        stderr: Text::Any,
        says: None,
        within: DOCKER_TIMEOUT,
        not_before: Duration::ZERO,
    }
}

const fn fails() -> Expect {
    Expect {
        code: None,
        ..code(0)
    }
}

impl Expect {
    const fn out(self, s: &'static str) -> Expect {
        Expect {
            stdout: Text::Exact(s),
            ..self
        }
    }
    const fn out_has(self, s: &'static str) -> Expect {
        Expect {
            stdout: Text::Contains(s),
            ..self
        }
    }
    const fn err_has(self, s: &'static str) -> Expect {
        Expect {
            stderr: Text::Contains(s),
            ..self
        }
    }
    const fn says(self, s: &'static str) -> Expect {
        Expect {
            says: Some(s),
            ..self
        }
    }
    const fn within(self, secs: u64) -> Expect {
        Expect {
            within: Duration::from_secs(secs),
            ..self
        }
    }
    const fn not_before(self, secs: u64) -> Expect {
        Expect {
            not_before: Duration::from_secs(secs),
            ..self
        }
    }
}

/// One step of a row. In arguments, `{c}` is the row's container name and `{i}` the image.
enum Step {
    /// `docker ARGS`, checked against the expectation.
    Do(&'static [&'static str], Expect),
    /// `docker ARGS` with these bytes on stdin, then EOF.
    Feed(&'static [&'static str], &'static [u8], Expect),
    /// `docker ARGS` again every 200 ms until its trimmed stdout is the text (or the seconds
    /// pass): for states the daemon reaches in its own time.
    Until(&'static [&'static str], &'static str, u64),
    /// `docker ARGS` where the shims differ: sluice's expectation, the stock shim's, and why.
    Differs(&'static [&'static str], Expect, Expect, &'static str),
    /// What data cannot say (a terminal, a process that must be gone, a shim's identity).
    Check(fn(&Docker, &str) -> Result<(), String>),
}

/// A user action and the steps that show it.
struct Row {
    name: &'static str,
    steps: &'static [Step],
}

fn expand(args: &[&str], c: &str) -> Vec<String> {
    args.iter()
        .map(|a| a.replace("{c}", c).replace("{i}", IMAGE))
        .collect()
}

fn verdict(out: &CmdOutput, e: &Expect) -> Result<(), String> {
    let mut bad = Vec::new();
    if out.timed_out() {
        bad.push(format!("did not return within {:?}", e.within));
    } else {
        match e.code {
            Some(c) if out.code() != Some(c) => {
                bad.push(format!("exit {:?}, want {c}", out.code()))
            }
            None if out.code() == Some(0) || out.code().is_none() => {
                bad.push(format!("exit {:?}, want a failure", out.code()))
            }
            _ => {}
        }
    }
    if !e.stdout.check(&out.stdout_str()) {
        bad.push(format!("stdout is not {:?}", e.stdout));
    }
    if !e.stderr.check(&out.stderr_str()) {
        bad.push(format!("stderr is not {:?}", e.stderr));
    }
    if let Some(s) = e.says {
        if !format!("{}{}", out.stdout_str(), out.stderr_str()).contains(s) {
            bad.push(format!("neither stream says {s:?}"));
        }
    }
    if out.elapsed < e.not_before {
        bad.push(format!(
            "returned after {:?}, before {:?}",
            out.elapsed, e.not_before
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{out}", bad.join("; ")))
    }
}

fn run_step(d: &Docker, c: &str, step: &Step) -> Result<(), String> {
    match step {
        Step::Do(args, e) | Step::Feed(args, _, e) => {
            let stdin = match step {
                Step::Feed(_, bytes, _) => Some(bytes.to_vec()),
                _ => None,
            };
            let a = expand(args, c);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = d.docker_in(&a, stdin, e.within);
            verdict(&out, e).map_err(|m| format!("docker {}: {m}", args.join(" ")))
        }
        Step::Differs(args, sluice, stock, _why) => {
            let e = if d.config.is_sluice() { sluice } else { stock };
            let a = expand(args, c);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let out = d.docker(&a, e.within);
            verdict(&out, e).map_err(|m| format!("docker {}: {m}", args.join(" ")))
        }
        Step::Until(args, want, secs) => {
            let a = expand(args, c);
            let a: Vec<&str> = a.iter().map(String::as_str).collect();
            let mut last = String::new();
            poll(Duration::from_secs(*secs), || {
                let out = d.docker(&a, DOCKER_TIMEOUT);
                last = format!("{}{}", out.stdout_str().trim(), out.stderr_str().trim());
                (out.stdout_str().trim() == *want).then_some(())
            })
            .ok_or_else(|| {
                format!(
                    "docker {}: not {want:?} within {secs} s (last: {last:?})",
                    args.join(" ")
                )
            })
        }
        Step::Check(f) => f(d, c),
    }
}

/// Runs one row in one column; the row's containers are removed whatever happened. A panic in a
/// check is the row's failure, not the column's.
fn run_row(d: &Docker, row: &Row) -> Result<Duration, String> {
    let started = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        row.steps.iter().enumerate().try_for_each(|(i, s)| {
            run_step(d, row.name, s).map_err(|m| format!("step {}: {m}", i + 1))
        })
    }))
    .unwrap_or_else(|p| {
        Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into()))
    });
    let names: Vec<String> = d
        .docker(
            &["ps", "-aq", "--filter", &format!("name={}", row.name)],
            DOCKER_TIMEOUT,
        )
        .stdout_str()
        .lines()
        .map(str::to_string)
        .collect();
    if !names.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(names.iter().map(String::as_str));
        let out = d.docker(&args, DOCKER_TIMEOUT);
        if !out.success() && result.is_ok() {
            return Err(format!("cleanup: docker rm -f:\n{out}"));
        }
    }
    result.map(|()| started.elapsed())
}

/// Runs `rows` in one column and fails naming every row that failed.
fn run_column(label: &str, version: DockerVersion, config: ShimConfig, rows: &[&Row]) {
    let started = Instant::now();
    let d = Docker::start(label, version, config, DockerOpts::default());
    let mut failed = Vec::new();
    for row in rows {
        match run_row(&d, row) {
            Ok(t) => eprintln!(
                "[{}] {:<22} ok   {:>6.1} s",
                d.column(),
                row.name,
                t.as_secs_f64()
            ),
            Err(m) => {
                eprintln!("[{}] {:<22} FAIL {m}", d.column(), row.name);
                failed.push(format!("{}: {m}", row.name));
            }
        }
    }
    eprintln!(
        "[{}] {} rows in {:.1} s",
        d.column(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failed.is_empty(),
        "[{}] {} of {} rows failed:\n{}",
        d.column(),
        failed.len(),
        rows.len(),
        failed.join("\n\n")
    );
}

// ---- checks that data cannot say ----------------------------------------------------------

fn check_shim(d: &Docker, c: &str) -> Result<(), String> {
    d.check_shim(c)
}

/// `docker exec -it` on a terminal: `stty size` sees the terminal's size, then the new size
/// after a resize; the exit code comes back through the terminal session.
fn exec_tty_resize(d: &Docker, c: &str) -> Result<(), String> {
    let args = d.args_for(&["exec", "-it", c, "sh"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut pty = PtyRun::spawn(d.docker_cmd(&args), 24, 80);
    let t = Duration::from_secs(30);
    if !pty.wait_for_text("# ", t) {
        return Err(format!("no shell prompt: {:?}", pty.text()));
    }
    // The size reaches the exec's terminal asynchronously (the client's resize -> dockerd ->
    // ResizePty, sent once the exec has started; SIGWINCH likewise): ask until it shows.
    let shows = |pty: &PtyRun, size: &str| {
        poll(t, || {
            pty_write(pty, "stty size\n").ok()?;
            std::thread::sleep(Duration::from_millis(300));
            pty.text().contains(size).then_some(())
        })
        .ok_or_else(|| format!("stty size never said {size}: {:?}", pty.text()))
    };
    shows(&pty, "\n24 80")?;
    pty.resize(40, 100);
    shows(&pty, "\n40 100")?;
    pty_write(&pty, "exit 3\n")?;
    let out = pty.wait(t);
    (out.code() == Some(3))
        .then_some(())
        .ok_or_else(|| format!("docker exec -it: want exit 3\n{out}"))
}

fn pty_write(pty: &PtyRun, s: &str) -> Result<(), String> {
    pty.write(s.as_bytes())
        .map_err(|e| format!("write to the pty: {e}"))
}

/// The healthcheck that hangs past its timeout is killed: no probe (`sleep 600`) is left in the
/// container once it is unhealthy.
fn no_probe_left(d: &Docker, c: &str) -> Result<(), String> {
    let mut last = String::new();
    poll(Duration::from_secs(15), || {
        last = d.docker(&["top", c], DOCKER_TIMEOUT).stdout_str();
        (!last.contains("sleep 600")).then_some(())
    })
    .ok_or_else(|| format!("a hung probe is still running 15 s after the timeout:\n{last}"))
}

/// `docker stats --no-stream`: the memory figure comes from the shim's Metrics.
fn stats_memory(d: &Docker, c: &str) -> Result<(), String> {
    let out = d.docker(
        &["stats", "--no-stream", "--format", "{{.MemUsage}}", c],
        DOCKER_TIMEOUT,
    );
    let text = out.stdout_str();
    let used = text.split('/').next().unwrap_or("").trim();
    (out.success() && !used.is_empty() && !used.starts_with("0B"))
        .then_some(())
        .ok_or_else(|| format!("stats shows no memory in use\n{out}"))
}

/// `docker events` of a run -d then stop, in order: create, start, kill (the stop signal),
/// die, and a stop.
fn events_order(d: &Docker, c: &str) -> Result<(), String> {
    let t0 = unix_now();
    d.ok(&["run", "-d", "--name", c, IMAGE, "sleep", "1000"]);
    d.ok(&["stop", "-t", "1", c]);
    let t1 = unix_now() + 1;
    let out = d.docker(
        &[
            "events",
            "--since",
            &t0.to_string(),
            "--until",
            &t1.to_string(),
            "--filter",
            &format!("container={c}"),
            "--format",
            "{{.Action}}",
        ],
        DOCKER_TIMEOUT,
    );
    let actions: Vec<String> = out
        .stdout_str()
        .lines()
        .map(|l| l.split(':').next().unwrap_or("").to_string())
        .collect();
    // The order of `stop` and `die` is Docker's own: 20.10 sends die then stop, 26 and 28
    // stop then die (both shims alike); a second `kill` is the SIGKILL after the grace.
    let want = ["create", "start", "kill", "die"];
    let mut it = actions.iter();
    let in_order = want.iter().all(|w| it.any(|a| a == w));
    (in_order && actions.iter().any(|a| a == "stop"))
        .then_some(())
        .ok_or_else(|| {
            format!("events {actions:?} do not hold {want:?} in order and a stop\n{out}")
        })
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

// ---- the table ----------------------------------------------------------------------------

const SLEEPER: &[&str] = &["run", "-d", "--name", "{c}", "{i}", "sleep", "1000"];

static ROWS: &[Row] = &[
    Row {
        name: "run-attached",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "--rm",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "echo out; echo err >&2; exit 3",
                ],
                code(3).out("out\n").err_has("err\n"),
            ),
            // --rm: gone once the client has returned.
            Step::Until(&["ps", "-aq", "--filter", "name={c}"], "", 10),
        ],
    },
    Row {
        name: "oom",
        steps: &[
            // tail of an endless line buffers it all: the cgroup's OOM killer ends it.
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--memory",
                    "16m",
                    "--memory-swap",
                    "16m",
                    "--name",
                    "{c}",
                    "{i}",
                    "tail",
                    "/dev/zero",
                ],
                code(0),
            ),
            Step::Do(&["wait", "{c}"], code(0).out("137\n")),
            Step::Differs(
                &[
                    "inspect",
                    "-f",
                    "{{.State.ExitCode}} {{.State.OOMKilled}}",
                    "{c}",
                ],
                code(0).out("137 true\n"),
                code(0).out_has("137 "),
                "the stock 1.6 shim may tell the OOM after the exit: dockerd then records \
                 OOMKilled false (2 runs in 12 on containerd 1.6.20, 0 in 4 each on 1.7 and 2.x); \
                 sluice tells the OOM first",
            ),
        ],
    },
    Row {
        name: "run-exit-codes",
        steps: &[
            Step::Do(&["run", "--rm", "{i}", "sh", "-c", "exit 42"], code(42)),
            // PID 1 ignores a SIGKILL from inside its namespace: sh runs under docker-init.
            Step::Do(
                &["run", "--rm", "--init", "{i}", "sh", "-c", "kill -9 $$"],
                code(137),
            ),
            Step::Do(
                &["run", "--rm", "{i}", "/nonexistent"],
                code(127).err_has("no such file or directory"),
            ),
        ],
    },
    Row {
        name: "run-d-wait-logs",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "echo hello; sleep 1; exit 7",
                ],
                code(0),
            ),
            Step::Do(&["wait", "{c}"], code(0).out("7\n")),
            Step::Do(&["logs", "{c}"], code(0).out("hello\n")),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{.State.ExitCode}} {{.State.OOMKilled}}",
                    "{c}",
                ],
                code(0).out("7 false\n"),
            ),
        ],
    },
    Row {
        name: "run-i",
        steps: &[Step::Feed(
            &["run", "--rm", "-i", "{i}", "cat"],
            b"piped\n",
            code(0).out("piped\n"),
        )],
    },
    Row {
        name: "run-t",
        steps: &[Step::Do(
            &["run", "--rm", "-t", "{i}", "tty"],
            code(0).out("/dev/pts/0\r\n"),
        )],
    },
    Row {
        name: "run-e-u-w",
        steps: &[Step::Do(
            &[
                "run",
                "--rm",
                "-e",
                "FOO=bar",
                "-u",
                "1000:1000",
                "-w",
                "/tmp",
                "{i}",
                "sh",
                "-c",
                "echo $FOO; id -u; id -g; pwd",
            ],
            code(0).out("bar\n1000\n1000\n/tmp\n"),
        )],
    },
    Row {
        name: "run-init",
        steps: &[Step::Do(
            &[
                "run",
                "--rm",
                "--init",
                "{i}",
                "sh",
                "-c",
                "tr '\\0' ' ' < /proc/1/cmdline",
            ],
            code(0).out_has("docker-init"),
        )],
    },
    Row {
        name: "run-limits",
        steps: &[Step::Do(
            &[
                "run",
                "--rm",
                "--memory",
                "64m",
                "--pids-limit",
                "50",
                "--cpus",
                "0.5",
                "{i}",
                "cat",
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "/sys/fs/cgroup/pids/pids.max",
                "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
            ],
            code(0).out("67108864\n50\n50000\n"),
        )],
    },
    Row {
        name: "inspect-shim",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.Running}}",
                    "{c}",
                ],
                code(0).out("running true\n"),
            ),
            Step::Check(check_shim),
        ],
    },
    Row {
        name: "exec",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(
                &["exec", "{c}", "sh", "-c", "echo hi; exit 5"],
                code(5).out("hi\n"),
            ),
            Step::Do(
                &[
                    "exec",
                    "-u",
                    "1000",
                    "-e",
                    "A=b",
                    "-w",
                    "/tmp",
                    "{c}",
                    "sh",
                    "-c",
                    "echo $A; id -u; pwd",
                ],
                code(0).out("b\n1000\n/tmp\n"),
            ),
            Step::Feed(&["exec", "-i", "{c}", "cat"], b"in\n", code(0).out("in\n")),
            Step::Do(
                &["exec", "-d", "{c}", "sh", "-c", "echo detached > /tmp/d"],
                code(0),
            ),
            Step::Until(&["exec", "{c}", "cat", "/tmp/d"], "detached", 10),
            Step::Do(
                &["exec", "{c}", "/nonexistent"],
                fails().says("no such file or directory"),
            ),
            Step::Do(&["exec", "{c}", "sh", "-c", "kill -9 $$"], code(137)),
        ],
    },
    Row {
        name: "exec-tty-resize",
        steps: &[Step::Do(SLEEPER, code(0)), Step::Check(exec_tty_resize)],
    },
    Row {
        name: "logs-follow",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "for i in 1 2 3; do echo line$i; sleep 0.5; done",
                ],
                code(0),
            ),
            Step::Do(&["logs", "-f", "{c}"], code(0).out("line1\nline2\nline3\n")),
        ],
    },
    Row {
        name: "logs-local-driver",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--log-driver",
                    "local",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "echo a; echo b >&2",
                ],
                code(0),
            ),
            Step::Do(&["wait", "{c}"], code(0).out("0\n")),
            Step::Do(&["logs", "{c}"], code(0).out("a\n").err_has("b\n")),
        ],
    },
    Row {
        name: "attach",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "sleep 3; echo attached; exit 4",
                ],
                code(0),
            ),
            Step::Do(&["attach", "{c}"], code(4).out("attached\n")),
        ],
    },
    Row {
        name: "stop-grace",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done",
                ],
                code(0),
            ),
            Step::Until(&["logs", "{c}"], "ready", 10),
            Step::Do(&["stop", "{c}"], code(0).within(9)),
            Step::Do(
                &["inspect", "-f", "{{.State.ExitCode}}", "{c}"],
                code(0).out("0\n"),
            ),
            Step::Do(&["logs", "{c}"], code(0).out("ready\ngot-term\n")),
        ],
    },
    Row {
        name: "stop-timeout-137",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            // sleep as PID 1 has no TERM handler: the kernel ignores TERM, stop escalates.
            Step::Do(
                &["stop", "-t", "2", "{c}"],
                code(0).not_before(2).within(20),
            ),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    "{c}",
                ],
                code(0).out("exited 137\n"),
            ),
        ],
    },
    Row {
        name: "kill-signals",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "trap 'exit 12' USR1; echo ready; while :; do sleep 0.1; done",
                ],
                code(0),
            ),
            Step::Until(&["logs", "{c}"], "ready", 10),
            Step::Do(&["kill", "-s", "USR1", "{c}"], code(0)),
            Step::Do(&["wait", "{c}"], code(0).out("12\n")),
            Step::Do(&["start", "{c}"], code(0)),
            Step::Do(&["kill", "{c}"], code(0)),
            Step::Do(&["wait", "{c}"], code(0).out("137\n")),
        ],
    },
    Row {
        name: "pause-unpause",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(&["pause", "{c}"], code(0)),
            Step::Do(
                &["inspect", "-f", "{{.State.Status}}", "{c}"],
                code(0).out("paused\n"),
            ),
            Step::Do(&["exec", "{c}", "true"], fails().err_has("paused")),
            Step::Do(&["unpause", "{c}"], code(0)),
            Step::Do(&["exec", "{c}", "echo", "ok"], code(0).out("ok\n")),
        ],
    },
    Row {
        name: "kill-paused",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(&["pause", "{c}"], code(0)),
            Step::Do(&["kill", "{c}"], code(0).within(20)),
            Step::Do(&["wait", "{c}"], code(0).out("137\n").within(20)),
        ],
    },
    Row {
        name: "stop-paused",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(&["pause", "{c}"], code(0)),
            Step::Do(&["stop", "-t", "1", "{c}"], code(0).within(20)),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.State.ExitCode}}",
                    "{c}",
                ],
                code(0).out("exited 137\n"),
            ),
        ],
    },
    Row {
        name: "update",
        steps: &[
            Step::Do(
                &[
                    "run", "-d", "--memory", "64m", "--name", "{c}", "{i}", "sleep", "1000",
                ],
                code(0),
            ),
            Step::Do(
                &[
                    "update",
                    "--memory",
                    "128m",
                    "--memory-swap",
                    "256m",
                    "--cpus",
                    "0.5",
                    "--pids-limit",
                    "30",
                    "{c}",
                ],
                code(0),
            ),
            Step::Do(
                &[
                    "exec",
                    "{c}",
                    "cat",
                    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                    "/sys/fs/cgroup/pids/pids.max",
                    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                ],
                code(0).out("134217728\n30\n50000\n"),
            ),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
                    "{c}",
                ],
                code(0).out("134217728 30\n"),
            ),
        ],
    },
    Row {
        name: "stats-top",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(
                &[
                    "stats",
                    "--no-stream",
                    "--format",
                    "{{.Name}} {{.PIDs}}",
                    "{c}",
                ],
                code(0).out("stats-top 1\n"),
            ),
            Step::Check(stats_memory),
            Step::Do(&["top", "{c}"], code(0).out_has("sleep 1000")),
        ],
    },
    Row {
        name: "rm-f",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(&["rm", "-f", "{c}"], code(0).within(15)),
            Step::Do(&["ps", "-aq", "--filter", "name=rm-f"], code(0).out("")),
        ],
    },
    Row {
        name: "restart",
        steps: &[
            Step::Do(SLEEPER, code(0)),
            Step::Do(&["restart", "-t", "1", "{c}"], code(0).within(30)),
            Step::Do(
                &["inspect", "-f", "{{.State.Status}}", "{c}"],
                code(0).out("running\n"),
            ),
            Step::Do(&["exec", "{c}", "echo", "back"], code(0).out("back\n")),
        ],
    },
    Row {
        name: "restart-on-failure",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--restart",
                    "on-failure:2",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "echo x; exit 1",
                ],
                code(0),
            ),
            Step::Until(
                &[
                    "inspect",
                    "-f",
                    "{{.State.Status}} {{.RestartCount}}",
                    "{c}",
                ],
                "exited 2",
                30,
            ),
            Step::Do(&["logs", "{c}"], code(0).out("x\nx\nx\n")),
        ],
    },
    Row {
        name: "restart-always",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--restart",
                    "always",
                    "--name",
                    "{c}",
                    "{i}",
                    "sh",
                    "-c",
                    "sleep 0.5; exit 3",
                ],
                code(0),
            ),
            Step::Until(
                &["inspect", "-f", "{{ge .RestartCount 2}}", "{c}"],
                "true",
                30,
            ),
            Step::Do(&["stop", "-t", "1", "{c}"], code(0).within(20)),
            Step::Do(
                &["inspect", "-f", "{{.State.Status}}", "{c}"],
                code(0).out("exited\n"),
            ),
        ],
    },
    Row {
        name: "health-pass-fail",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "--health-cmd",
                    "test -e /tmp/ok",
                    "--health-interval",
                    "1s",
                    "--health-retries",
                    "1",
                    "{i}",
                    "sh",
                    "-c",
                    "touch /tmp/ok; sleep 1000",
                ],
                code(0),
            ),
            Step::Until(
                &["inspect", "-f", "{{.State.Health.Status}}", "{c}"],
                "healthy",
                30,
            ),
            Step::Do(&["exec", "{c}", "rm", "/tmp/ok"], code(0)),
            Step::Until(
                &["inspect", "-f", "{{.State.Health.Status}}", "{c}"],
                "unhealthy",
                30,
            ),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{range .State.Health.Log}}{{.ExitCode}} {{end}}",
                    "{c}",
                ],
                code(0).out_has("1 "),
            ),
        ],
    },
    Row {
        name: "health-hang",
        steps: &[
            Step::Do(
                &[
                    "run",
                    "-d",
                    "--name",
                    "{c}",
                    "--health-cmd",
                    "sleep 600",
                    "--health-interval",
                    "1s",
                    "--health-timeout",
                    "1s",
                    "--health-retries",
                    "1",
                    "{i}",
                    "sleep",
                    "1000",
                ],
                code(0),
            ),
            Step::Until(
                &["inspect", "-f", "{{.State.Health.Status}}", "{c}"],
                "unhealthy",
                30,
            ),
            Step::Do(
                &[
                    "inspect",
                    "-f",
                    "{{range .State.Health.Log}}{{.ExitCode}} {{end}}",
                    "{c}",
                ],
                code(0).out_has("-1"),
            ),
            Step::Check(no_probe_left),
            Step::Do(&["stop", "-t", "1", "{c}"], code(0).within(20)),
        ],
    },
    Row {
        name: "events-order",
        steps: &[Step::Check(events_order)],
    },
];

/// Every row, or those `SLUICE_DOCKER_ROWS` names (comma-separated), to rerun a few.
fn all_rows() -> Vec<&'static Row> {
    match std::env::var("SLUICE_DOCKER_ROWS") {
        Ok(list) if !list.trim().is_empty() => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            for n in &names {
                assert!(
                    ROWS.iter().any(|r| r.name == *n),
                    "SLUICE_DOCKER_ROWS: no row {n:?}"
                );
            }
            ROWS.iter().filter(|r| names.contains(&r.name)).collect()
        }
        _ => ROWS.iter().collect(),
    }
}

// ---- the columns --------------------------------------------------------------------------

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn table_stock() {
    let v = DockerVersion::selected();
    run_column("dk-stock", v, ShimConfig::Stock, &all_rows());
}

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn table_sluice() {
    system::sluice_shim_bin();
    let v = DockerVersion::selected();
    run_column("dk-sluice", v, ShimConfig::primary_sluice(v), &all_rows());
}

// ---- the other configurations -------------------------------------------------------------

/// Rows that show a configuration reaches sluice and serves the common verbs.
fn short_rows() -> Vec<&'static Row> {
    ["inspect-shim", "run-attached", "exec", "stop-timeout-137"]
        .iter()
        .map(|n| {
            ROWS.iter()
                .find(|r| r.name == *n)
                .unwrap_or_else(|| panic!("no row {n}"))
        })
        .collect()
}

/// Every configuration of sluice the Docker version takes, other than the table's, runs the
/// short table; on 20.10, which takes none but the drop-in, the named runtime is refused.
#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn configurations() {
    system::sluice_shim_bin();
    let v = DockerVersion::selected();
    let others: Vec<ShimConfig> = [
        ShimConfig::DropIn,
        ShimConfig::Named,
        ShimConfig::RuntimeType,
    ]
    .into_iter()
    .filter(|c| c.supported_on(v) && *c != ShimConfig::primary_sluice(v))
    .collect();
    if others.is_empty() {
        let d = Docker::start(
            "dk-named-refused",
            v,
            ShimConfig::Stock,
            DockerOpts::default(),
        );
        let out = d.docker(
            &[
                "run",
                "--rm",
                "--runtime",
                "io.containerd.sluice.v2",
                IMAGE,
                "true",
            ],
            DOCKER_TIMEOUT,
        );
        verdict(&out, &fails().says("runtime"))
            .unwrap_or_else(|m| panic!("[{}] --runtime io.containerd.sluice.v2: {m}", d.column()));
        eprintln!(
            "[{}] --runtime io.containerd.sluice.v2 refused: {}",
            d.column(),
            out.stderr_str().trim()
        );
    }
    for c in others {
        run_column(&format!("dk-{}", c.label()), v, c, &short_rows());
    }
}

// ---- the case study through docker exec ---------------------------------------------------

/// How long the stock shim's `docker exec` gets before we call it hung; the same exec without
/// the fault takes well under a second.
const STOCK_HANG: Duration = Duration::from_secs(15);
/// sluice must fail the exec within this.
const FAST_FAILURE: Duration = Duration::from_secs(20);

/// A container at its pids.max, runc's pipes at one page and runc's Go crash dump (fault-runc's
/// crash-dump on `runc exec`, once): `docker exec` under the stock shim hangs until the wedged
/// runc is killed; under sluice it fails within seconds with runc's words. Either way the
/// container then stops and is removed.
fn case_study(config: ShimConfig) {
    let v = DockerVersion::selected();
    let d = Docker::start(
        &format!("dk-case-{}", config.label()),
        v,
        config,
        DockerOpts::default(),
    );
    let c = "case";
    d.ok(&[
        "run",
        "-d",
        "--pids-limit",
        "16",
        "--name",
        c,
        IMAGE,
        "sh",
        "-c",
        // A subshell forks until the kernel refuses (ash exits at a failed fork), the sleepers
        // stay; one more takes the subshell's slot and pid 1 becomes a sleep without forking.
        "(while :; do sleep 1000 & done) 2>/dev/null; sleep 1000 & exec sleep 1000",
    ]);
    let full = poll(Duration::from_secs(30), || {
        let (cur, max) = d.pids_of(c)?;
        (cur >= max).then_some((cur, max))
    });
    let (cur, max) = full.unwrap_or_else(|| {
        panic!(
            "[{}] {c} never reached its pids.max: {:?}",
            d.column(),
            d.pids_of(c)
        )
    });
    eprintln!(
        "[{}] {c} at pids.current {cur} = pids.max {max}",
        d.column()
    );
    d.env.set_fault("exec", Action::CrashDump, true);
    let limit = if config.is_sluice() {
        FAST_FAILURE
    } else {
        STOCK_HANG
    };
    let out = d.docker(&["exec", c, "echo", "should-not-run"], limit);
    assert_eq!(
        d.env.fault_fired("exec"),
        1,
        "[{}] the fault did not fire once:\n{}",
        d.column(),
        d.env.fault_log()
    );
    if config.is_sluice() {
        let what = format!("[{}] docker exec with runc's crash dump", d.column());
        assert!(!out.timed_out(), "{what}: hung\n{out}");
        assert_ne!(out.code(), Some(0), "{what}: succeeded?\n{out}");
        let said = format!("{}{}", out.stdout_str(), out.stderr_str());
        assert!(
            !said.contains("should-not-run"),
            "{what}: the process ran\n{out}"
        );
        assert!(
            said.contains(CGO_CRASH_LINE),
            "{what}: docker exec's error lacks runc's words {CGO_CRASH_LINE:?}\n{out}"
        );
        eprintln!(
            "[{}] docker exec failed in {:?}: {}",
            d.column(),
            out.elapsed,
            said.lines().next().unwrap_or("")
        );
    } else {
        assert!(
            out.timed_out(),
            "[{}] expected docker exec to hang on the stock shim, it returned:\n{out}",
            d.column()
        );
        let wedged = d.env.wrapper_procs();
        assert!(
            !wedged.is_empty(),
            "[{}] docker exec hung but no fault-runc is alive: not the pipe deadlock",
            d.column()
        );
        eprintln!(
            "[{}] docker exec still blocked after {:?}; fault-runc pid {} sleeps in {:?}",
            d.column(),
            out.elapsed,
            wedged[0].pid,
            wedged[0].wchan
        );
        let killed = d.env.unwedge();
        eprintln!(
            "[{}] killed {} wedged runc process(es)",
            d.column(),
            killed.len()
        );
    }
    let stop = d.docker(&["stop", "-t", "1", c], Duration::from_secs(30));
    verdict(&stop, &code(0))
        .unwrap_or_else(|m| panic!("[{}] docker stop after the fault: {m}", d.column()));
    let rm = d.docker(&["rm", c], Duration::from_secs(30));
    verdict(&rm, &code(0))
        .unwrap_or_else(|m| panic!("[{}] docker rm after the fault: {m}", d.column()));
    assert!(
        d.all_containers(DOCKER_TIMEOUT).is_empty(),
        "[{}] containers left",
        d.column()
    );
    eprintln!(
        "[{}] stopped in {:?}, removed in {:?}",
        d.column(),
        stop.elapsed,
        rm.elapsed
    );
}

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn case_study_stock() {
    case_study(ShimConfig::Stock);
}

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn case_study_sluice() {
    system::sluice_shim_bin();
    case_study(ShimConfig::primary_sluice(DockerVersion::selected()));
}

// ---- daemons going away under running containers ------------------------------------------

/// The counter container's log: how many lines, and how many numbers are missing between
/// them (lines lost); a repeat or a number going back is an error.
fn log_gaps(d: &Docker, c: &str) -> Result<(u64, u64), String> {
    let out = d.docker(&["logs", c], DOCKER_TIMEOUT);
    let (mut lines, mut missing, mut next) = (0u64, 0u64, 0u64);
    for line in out.stdout_str().lines() {
        let n: u64 = line
            .trim()
            .parse()
            .map_err(|_| format!("log line {lines} is {line:?}"))?;
        if n < next {
            return Err(format!(
                "log line {lines} is {n} after {}: a repeat",
                next - 1
            ));
        }
        missing += n - next;
        next = n + 1;
        lines += 1;
    }
    Ok((lines, missing))
}

/// live-restore: dockerd stopped, then SIGKILLed, then containerd SIGKILLed, each restarted
/// under a running container: it keeps running with the same pid, its log has no gap, and
/// exec and stop work after.
fn daemons_restart(config: ShimConfig) {
    let v = DockerVersion::selected();
    let opts = DockerOpts {
        live_restore: true,
        ..Default::default()
    };
    let mut d = Docker::start(&format!("dk-lr-{}", config.label()), v, config, opts);
    let c = "counter";
    d.ok(&[
        "run",
        "-d",
        "--name",
        c,
        IMAGE,
        "sh",
        "-c",
        "i=0; while :; do echo $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let pid = d.inspect(c, "{{.State.Pid}}").expect("inspect pid");
    let col = d.column();
    let check = |d: &Docker, after: &str, before: (u64, u64), dockerd_was_down: bool| {
        let shown = poll(Duration::from_secs(30), || {
            (d.inspect(c, "{{.State.Status}} {{.State.Pid}}")? == format!("running {pid}"))
                .then_some(())
        });
        assert!(
            shown.is_some(),
            "[{col}] after {after}: {c} is not running as pid {pid}: {:?}",
            d.inspect(c, "{{.State.Status}} {{.State.Pid}}")
        );
        // dockerd dials containerd again lazily: an exec right after containerd's restart may
        // meet the old connection's "connection refused"; the user retries.
        let mut exec = None;
        poll(Duration::from_secs(30), || {
            let out = d.docker(&["exec", c, "echo", "still-here"], DOCKER_TIMEOUT);
            let ok = out.success();
            exec = Some(out);
            ok.then_some(())
        });
        let exec = exec.expect("polled at least once");
        verdict(&exec, &code(0).out("still-here\n"))
            .unwrap_or_else(|m| panic!("[{col}] exec after {after}: {m}"));
        std::thread::sleep(Duration::from_millis(500));
        let (lines, missing) =
            log_gaps(d, c).unwrap_or_else(|m| panic!("[{col}] logs after {after}: {m}"));
        assert!(
            lines > before.0,
            "[{col}] after {after}: the log did not grow ({lines} lines)"
        );
        // The stock shim holds a read end of each FIFO itself, so the container's writes wait
        // in the FIFO while no dockerd reads it; sluice discards while the FIFO has no reader
        // (docs/failure-classes.md, rule 3), so lines written while dockerd is down are lost.
        // Only then: with dockerd up (start, containerd's restart) nothing may be lost.
        let may_lose = config.is_sluice() && dockerd_was_down;
        if may_lose {
            eprintln!(
                "[{col}] after {after}: {missing} line(s) lost in all (sluice discards while \
                 the FIFO has no reader)"
            );
        } else {
            assert_eq!(
                missing,
                before.1,
                "[{col}] after {after}: {} log line(s) lost",
                missing - before.1
            );
        }
        eprintln!("[{col}] after {after}: running as pid {pid}, {lines} log lines, exec ok");
        (lines, missing)
    };
    std::thread::sleep(Duration::from_secs(1));
    let n = check(&d, "start", (0, 0), false);
    d.stop_dockerd();
    std::thread::sleep(Duration::from_secs(2));
    d.restart_dockerd();
    let n = check(&d, "dockerd stopped and restarted", n, true);
    d.kill_dockerd();
    std::thread::sleep(Duration::from_secs(2));
    d.restart_dockerd();
    let n = check(&d, "dockerd SIGKILLed and restarted", n, true);
    d.env.kill_containerd();
    std::thread::sleep(Duration::from_secs(2));
    d.env.restart_containerd();
    check(&d, "containerd SIGKILLed and restarted", n, false);
    let stop = d.docker(&["stop", "-t", "1", c], Duration::from_secs(30));
    verdict(&stop, &code(0)).unwrap_or_else(|m| panic!("[{col}] stop after the restarts: {m}"));
    assert_eq!(
        d.inspect(c, "{{.State.Status}} {{.State.ExitCode}}")
            .as_deref(),
        Some("exited 137"),
        "[{col}] after stop"
    );
}

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn restarts_stock() {
    daemons_restart(ShimConfig::Stock);
}

#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn restarts_sluice() {
    system::sluice_shim_bin();
    daemons_restart(ShimConfig::primary_sluice(DockerVersion::selected()));
}

// ---- healthchecks as load -----------------------------------------------------------------

/// What the shims of one column cost over the window.
struct Load {
    shims: usize,
    /// The shims' own CPU time (utime + stime), in ms.
    own_ms: u64,
    /// What their reaped children (runc, runc init) cost over the window, in ms.
    children_ms: u64,
    /// The shims' resident memory at the end, in KiB.
    rss_kib: u64,
}

/// utime, stime, cutime, cstime of `pid` in ms (USER_HZ is 100 on Linux).
fn cpu_ms(pid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<u64> = stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    // After the command: state ppid ... utime is field 14 of the line, index 11 here.
    Some(((f[11] + f[12]) * 10, (f[13] + f[14]) * 10))
}

/// `n` containers, each with a 1 s exec healthcheck, for `window`: every container stays
/// healthy, no probe is left running, and the shims' CPU and memory are measured.
fn health_load(config: ShimConfig, n: usize, window: Duration) -> Load {
    let v = DockerVersion::selected();
    let d = Docker::start(
        &format!("dk-hl-{}", config.label()),
        v,
        config,
        DockerOpts::default(),
    );
    let names: Vec<String> = (0..n).map(|i| format!("hl{i}")).collect();
    for c in &names {
        d.ok(&[
            "run",
            "-d",
            "--name",
            c,
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            IMAGE,
            "sleep",
            "1000",
        ]);
    }
    let healthy = |d: &Docker| {
        names
            .iter()
            .all(|c| d.inspect(c, "{{.State.Health.Status}}").as_deref() == Some("healthy"))
    };
    assert!(
        poll(Duration::from_secs(60), || healthy(&d).then_some(())).is_some(),
        "[{}] not every container became healthy",
        d.column()
    );
    let mut shims: Vec<i32> = names
        .iter()
        .filter_map(|c| d.inspect(c, "{{.State.Pid}}"))
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            s[s.rfind(')')? + 2..]
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .collect();
    shims.sort_unstable();
    shims.dedup();
    let sum = |shims: &[i32]| {
        shims
            .iter()
            .filter_map(|&p| cpu_ms(p))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    };
    let before = sum(&shims);
    std::thread::sleep(window);
    let after = sum(&shims);
    assert!(
        healthy(&d),
        "[{}] a container fell unhealthy under load",
        d.column()
    );
    for c in &names {
        let top = d.docker(&["top", c], DOCKER_TIMEOUT).stdout_str();
        let probes = top
            .lines()
            .filter(|l| l.trim_end().ends_with(" true"))
            .count();
        assert!(
            probes <= 1,
            "[{}] {c}: {probes} probes running at once:\n{top}",
            d.column()
        );
    }
    Load {
        shims: shims.len(),
        own_ms: after.0 - before.0,
        children_ms: after.1 - before.1,
        rss_kib: shims
            .iter()
            .map(|&p| sluice_integration::procs::rss_kib(p))
            .sum(),
    }
}

/// `SLUICE_DOCKER_HEALTH_LOAD=N,SECONDS` (default 4 containers for 20 s): both shims under the
/// same healthcheck load, one after the other; sluice must stay within the stock shim's memory.
#[test]
#[ignore = "needs root, containerd, runc and the Docker builds; run with --ignored"]
fn healthcheck_load() {
    system::sluice_shim_bin();
    let spec = std::env::var("SLUICE_DOCKER_HEALTH_LOAD").unwrap_or_else(|_| "4,20".into());
    let (n, secs) = spec
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
        .unwrap_or_else(|| panic!("SLUICE_DOCKER_HEALTH_LOAD={spec:?} is not N,SECONDS"));
    let window = Duration::from_secs(secs);
    let v = DockerVersion::selected();
    let stock = health_load(ShimConfig::Stock, n, window);
    let sluice = health_load(ShimConfig::primary_sluice(v), n, window);
    for (name, l) in [("stock", &stock), ("sluice", &sluice)] {
        eprintln!(
            "[docker {} health load] {name:<6} {n} containers, 1 s probes, {secs} s: {} shim(s), \
             CPU {} ms own + {} ms runc, RSS {} KiB",
            v.label(),
            l.shims,
            l.own_ms,
            l.children_ms,
            l.rss_kib
        );
    }
    assert!(
        sluice.rss_kib <= stock.rss_kib,
        "sluice's shims hold {} KiB, the stock shims {} KiB",
        sluice.rss_kib,
        stock.rss_kib
    );
}
