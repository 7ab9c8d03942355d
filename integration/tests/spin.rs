//! No busy loop on any FIFO or pipe (issue 14 item 2): the shim's CPU time (utime + stime of
//! /proc/<shim>/stat, all threads) over a quiet window while a process sits idle with its stdio
//! in each state a client can leave it in: a stdin that is open but never written, a stdin at
//! EOF, a client killed (every FIFO end gone), a container whose client detached, a terminal.
//!
//! A spin costs a core (about 200 ticks in the 2 s window); an idle shim costs next to none.
//! Every case runs under the stock shim too, with the same bound, so the bound is fair.
//!
//! Run: `cargo test -p sluice-integration --test spin -- --ignored --test-threads=2`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use std::{
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use sluice_integration::{containers::kill_and_delete, harness::TestEnv, pty::PtyRun, Runtime};

/// The quiet window measured.
const WINDOW: Duration = Duration::from_secs(2);
/// Ticks (1/100 s) the shim may use in the window: 5% of one core, far below a spin, far above
/// an idle shim's timers.
const MAX_TICKS: u64 = 10;
/// How long the idle process inside lives: longer than settling plus the window.
const IDLE: &str = "6";

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("the shim (pid {pid}) is gone: {e}"));
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// `strace -c` of `pid` for a second, to name the spinning syscall in a failure.
fn syscall_summary(pid: i32) -> String {
    match Command::new("timeout")
        .args([
            "-s",
            "INT",
            "1",
            "strace",
            "-f",
            "-c",
            "-p",
            &pid.to_string(),
        ])
        .output()
    {
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("(no strace: {e})"),
    }
}

fn shim_pid(env: &TestEnv) -> i32 {
    let shims = env.shims(env.runtime);
    assert_eq!(
        shims.len(),
        1,
        "[{}] expected one shim: {shims:?}",
        env.runtime
    );
    shims[0].pid
}

/// Lets the state settle, then asserts the shim stays (nearly) idle over [`WINDOW`].
fn assert_idle(env: &TestEnv, what: &str) {
    thread::sleep(Duration::from_millis(800));
    let pid = shim_pid(env);
    let before = cpu_ticks(pid);
    thread::sleep(WINDOW);
    let used = cpu_ticks(pid) - before;
    let per_s = ticks_per_second();
    println!(
        "SPIN|{}|{what}|{used} ticks in {WINDOW:?} ({per_s}/s)",
        env.runtime
    );
    assert!(
        used <= MAX_TICKS,
        "[{}] {what}: the shim used {used} clock ticks ({} ms of CPU) in {WINDOW:?} while the \
         process was idle: a busy loop\nits syscalls over 1 s:\n{}\n{}",
        env.runtime,
        used * 1000 / per_s,
        syscall_summary(pid),
        env.log_tail(40)
    );
}

fn idle_container(label: &str, rt: Runtime) -> TestEnv {
    let env = TestEnv::start(label, rt);
    env.run_detached("c1", &[], &["sleep", "60"]);
    env
}

/// `ctr task exec` of an idle process with `stdin` as ctr's stdin, started in the background.
fn spawn_exec(env: &TestEnv, exec_id: &str, stdin: Stdio) -> Client {
    let args = env.exec_args("c1", exec_id, false, &["sleep", IDLE]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd: Command = env.ctr_cmd(&args);
    cmd.stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    Client(cmd.spawn().expect("start ctr task exec"))
}

/// A ctr client killed and reaped when dropped, also when the test panics.
struct Client(std::process::Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reap(child: Client) {
    drop(child);
}

fn exec_stdin_open_never_written(rt: Runtime) {
    let env = idle_container("spin-stdin", rt);
    let mut ctr = spawn_exec(&env, "e1", Stdio::piped());
    // Held open, never written: the FIFO has a writer that sends nothing.
    let held = ctr.0.stdin.take();
    assert_idle(&env, "exec whose stdin is open and never written");
    drop(held);
    reap(ctr);
    kill_and_delete(&env, "c1");
}

fn exec_stdin_at_eof(rt: Runtime) {
    let env = idle_container("spin-eof", rt);
    // /dev/null: ctr copies nothing and closes its end (the FIFO's writer is gone), as a probe.
    let ctr = spawn_exec(&env, "e1", Stdio::null());
    assert_idle(&env, "exec whose stdin is at EOF (writer gone)");
    reap(ctr);
    kill_and_delete(&env, "c1");
}

fn exec_client_killed(rt: Runtime) {
    let env = idle_container("spin-execgone", rt);
    let mut ctr = spawn_exec(&env, "e1", Stdio::piped());
    let held = ctr.0.stdin.take();
    thread::sleep(Duration::from_millis(800));
    // Every client end of the exec's FIFOs goes at once: stdin's writer, stdout's reader.
    reap(ctr);
    drop(held);
    assert_idle(
        &env,
        "exec whose client was killed (reader and writer gone)",
    );
    kill_and_delete(&env, "c1");
}

fn container_client_detached(rt: Runtime) {
    let env = TestEnv::start("spin-detach", rt);
    let args = env.run_args_with_flags("c1", false, &Default::default(), &[], &["sleep", "60"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.ctr_cmd(&args);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let mut ctr = Client(cmd.spawn().expect("start ctr run"));
    let held = ctr.0.stdin.take();
    env.wait_task_status("c1", "RUNNING", Duration::from_secs(30));
    assert_idle(&env, "container with its client attached and silent");
    reap(ctr);
    drop(held);
    assert_idle(&env, "container whose client was killed");
    kill_and_delete(&env, "c1");
}

fn container_never_attached(rt: Runtime) {
    let env = idle_container("spin-noclient", rt);
    assert_idle(
        &env,
        "container started --detach (no client ever reads or writes)",
    );
    kill_and_delete(&env, "c1");
}

fn exec_on_a_terminal(rt: Runtime) {
    let env = idle_container("spin-tty", rt);
    let mut args = env.exec_args("c1", "e1", false, &["sleep", IDLE]);
    // `--tty` is a flag of `task exec`: before the container ID.
    args.insert(2, "--tty".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = PtyRun::spawn(env.ctr_cmd(&args), 24, 80);
    assert_idle(&env, "exec on a terminal, client attached and silent");
    drop(run);
    assert_idle(&env, "exec on a terminal whose client was killed");
    kill_and_delete(&env, "c1");
}

macro_rules! spin_tests {
    ($($name:ident),* $(,)?) => {
        mod sluice {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    super::$name(super::Runtime::Sluice);
                }
            )*
        }
        mod stock_runc_v2 {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    super::$name(super::Runtime::RuncV2);
                }
            )*
        }
    };
}

spin_tests!(
    exec_stdin_open_never_written,
    exec_stdin_at_eof,
    exec_client_killed,
    container_client_detached,
    container_never_attached,
    exec_on_a_terminal,
);
