//! The workloads. Each runs on both shims in the same rounds, alternating which goes first, and
//! returns its metrics with the raw samples of both.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use sluice_integration::containers::kill_and_delete;
use sluice_integration::procs::rss_kib;
use sluice_integration::{RunOpts, Runtime, TestEnv};

use crate::report::{Agg, Metric, Target};
use crate::sample::{clk_tck, cpu_ticks, shim_of, ShimWatch};

const MB: f64 = 1e6;

/// One private containerd per runtime, both alive for the whole run.
pub struct Pair {
    pub stock: TestEnv,
    pub sluice: TestEnv,
}

impl Pair {
    pub fn env(&self, rt: Runtime) -> &TestEnv {
        match rt {
            Runtime::Sluice => &self.sluice,
            Runtime::RuncV2 => &self.stock,
        }
    }
}

/// Round `i`'s order: alternating, so neither shim always runs on a warmer (or busier) machine.
pub fn order(i: usize) -> [Runtime; 2] {
    if i.is_multiple_of(2) {
        [Runtime::RuncV2, Runtime::Sluice]
    } else {
        [Runtime::Sluice, Runtime::RuncV2]
    }
}

fn progress(workload: &str, msg: &str) {
    eprintln!("[bench] {workload}: {msg}");
}

/// Per-runtime samples.
#[derive(Default)]
struct Samples {
    stock: Vec<f64>,
    sluice: Vec<f64>,
}

impl Samples {
    fn push(&mut self, rt: Runtime, v: f64) {
        match rt {
            Runtime::Sluice => self.sluice.push(v),
            Runtime::RuncV2 => self.stock.push(v),
        }
    }

    fn metric(
        self,
        workload: &'static str,
        name: &str,
        unit: &'static str,
        agg: Agg,
        target: Target,
    ) -> Metric {
        Metric {
            workload,
            name: name.into(),
            unit,
            agg,
            target,
            stock: self.stock,
            sluice: self.sluice,
        }
    }
}

/// A child killed (with its process group: ctr) if the benchmark unwinds before waiting.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Kills `pid` after `timeout` unless told to stand down first: a hung shim must not hang the
/// benchmark (its blocking reads end when ctr dies).
fn watchdog(pid: u32, timeout: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            eprintln!("[bench] ctr (pid {pid}) still running after {timeout:?}: killing it");
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    tx
}

/// One attached `ctr run --rm` whose stdout is read and counted.
struct Stream {
    wall: f64,
    /// First byte to EOF at the reader: the copy, without container start and teardown.
    transfer: f64,
    bytes: u64,
    shim_cpu: f64,
}

fn stream(env: &TestEnv, rt: Runtime, id: &str, script: &str, timeout: Duration) -> Stream {
    let args = env.run_args_with_flags(
        id,
        false,
        &RunOpts::default(),
        &[],
        &["/bin/sh", "-c", script],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = env.ctr_cmd(&args);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let watch = ShimWatch::start(env, rt, id);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("[{rt}] cannot start ctr run {id}: {e}"));
    let dog = watchdog(child.id(), timeout);
    let mut out = child.stdout.take().expect("stdout piped");
    let mut err = child.stderr.take().expect("stderr piped");
    let mut guard = Guard(Some(child));
    let errs = thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut bytes = 0u64;
    let mut first = None;
    loop {
        match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(Instant::now);
                bytes += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("[{rt}] reading ctr run {id}'s stdout: {e}"),
        }
    }
    let eof = Instant::now();
    let status = guard
        .0
        .take()
        .expect("child")
        .wait()
        .unwrap_or_else(|e| panic!("[{rt}] waiting for ctr run {id}: {e}"));
    let wall = t0.elapsed().as_secs_f64();
    let _ = dog.send(());
    let shim_cpu = watch.finish();
    let stderr = errs.join().unwrap_or_default();
    assert!(
        status.success(),
        "[{rt}] ctr run {id} ({script}) exited {status}: {stderr}"
    );
    let shim_cpu = shim_cpu.unwrap_or_else(|| panic!("[{rt}] no shim seen for {id}"));
    Stream {
        wall,
        transfer: first.map_or(0.0, |f| (eof - f).as_secs_f64()),
        bytes,
        shim_cpu,
    }
}

fn streams(
    pair: &Pair,
    workload: &'static str,
    script: &str,
    expect: u64,
    rounds: usize,
) -> Vec<(Runtime, Stream)> {
    let mut out = Vec::new();
    for round in 0..rounds {
        progress(workload, &format!("round {}/{rounds}", round + 1));
        for rt in order(round) {
            let id = format!("{workload}-{round}");
            let s = stream(pair.env(rt), rt, &id, script, Duration::from_secs(900));
            assert_eq!(
                s.bytes, expect,
                "[{rt}] {workload}: {} bytes arrived, {expect} expected",
                s.bytes
            );
            out.push((rt, s));
        }
    }
    out
}

/// 1: many small writes, one write(2) per 100-byte line. busybox dd with iflag=fullblock
/// writes each 100-byte block with one write(2) (checked with strace -f -c: N+1 writes, the
/// one more is dd's own summary, sent to /dev/null here).
pub fn lines(pair: &Pair, n: u64, rounds: usize) -> Vec<Metric> {
    let line = "x".repeat(99);
    let script = format!("yes {line} | dd bs=100 count={n} iflag=fullblock 2>/dev/null");
    let runs = streams(pair, "lines", &script, n * 100, rounds);
    let (mut wall, mut cpu) = (Samples::default(), Samples::default());
    for (rt, s) in runs {
        wall.push(rt, s.wall);
        cpu.push(rt, s.shim_cpu);
    }
    vec![
        wall.metric(
            "lines",
            &format!("wall of ctr run, {n} lines"),
            "s",
            Agg::Median,
            Target::RatioMax(0.8),
        ),
        cpu.metric("lines", "shim CPU", "s", Agg::Median, Target::RatioMax(0.5)),
    ]
}

/// 2 and 3: bulk output in 4 KiB (busybox head) or 64 KiB (busybox dd) writes.
pub fn bulk(pair: &Pair, workload: &'static str, size: u64, rounds: usize) -> Vec<Metric> {
    let (script, min, cpu_target) = if workload == "write-4k" {
        (
            format!("head -c {size} /dev/zero"),
            1.5,
            Target::RatioMax(0.5),
        )
    } else {
        (
            format!(
                "dd if=/dev/zero bs=65536 count={} 2>/dev/null",
                size / 65536
            ),
            2.0,
            Target::None,
        )
    };
    let runs = streams(pair, workload, &script, size, rounds);
    let (mut rate, mut cpu) = (Samples::default(), Samples::default());
    for (rt, s) in runs {
        rate.push(rt, s.bytes as f64 / MB / s.transfer.max(1e-6));
        cpu.push(rt, s.shim_cpu);
    }
    vec![
        rate.metric(
            workload,
            &format!("throughput, {} MiB", size >> 20),
            "MB/s",
            Agg::Median,
            Target::RatioMin(min),
        ),
        cpu.metric(workload, "shim CPU", "s", Agg::Median, cpu_target),
    ]
}

/// An attached `ctr run` echoing its stdin line by line, over pipes or (`tty`) a terminal.
struct Echo {
    guard: Guard,
    input: Box<dyn Write + Send>,
    output: BufReader<Box<dyn Read + Send>>,
    tty: bool,
    dog: mpsc::Sender<()>,
}

impl Echo {
    fn start(env: &TestEnv, id: &str, tty: bool, timeout: Duration) -> Echo {
        // On a terminal the container's line discipline would echo the input too: off, and a
        // marker says when it is off.
        let script = if tty {
            "stty -echo; echo ready; while read x; do echo $x; done"
        } else {
            "while read x; do echo $x; done"
        };
        let flags: &[&str] = if tty { &["--tty"] } else { &[] };
        let args = env.run_args_with_flags(
            id,
            false,
            &RunOpts::default(),
            flags,
            &["/bin/sh", "-c", script],
        );
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = env.ctr_cmd(&args);
        cmd.stderr(Stdio::null());
        let (child, input, output): (Child, Box<dyn Write + Send>, Box<dyn Read + Send>) = if tty {
            let master = on_a_terminal(&mut cmd);
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start ctr run -t {id}: {e}"));
            // The child holds the terminal now; our copy of its side went with `cmd`.
            drop(cmd);
            let writer = master.try_clone().expect("dup pty master");
            (
                child,
                Box::new(std::fs::File::from(writer)),
                Box::new(std::fs::File::from(master)),
            )
        } else {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .process_group(0);
            let mut child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start ctr run {id}: {e}"));
            let input = child.stdin.take().expect("stdin piped");
            let output = child.stdout.take().expect("stdout piped");
            (child, Box::new(input), Box::new(output))
        };
        let dog = watchdog(child.id(), timeout);
        let mut echo = Echo {
            input,
            output: BufReader::new(output),
            tty,
            guard: Guard(Some(child)),
            dog,
        };
        if tty {
            echo.read_line_equal("ready");
        }
        echo
    }

    fn read_line_equal(&mut self, msg: &str) {
        let mut line = String::new();
        let n = self
            .output
            .read_line(&mut line)
            .expect("read the echo container's output");
        // A terminal ends lines with CR LF.
        assert!(
            n > 0 && line.trim_end() == msg,
            "echo container sent {line:?}, expected {msg:?}"
        );
    }

    /// Seconds from writing one line to reading it back.
    fn round_trip(&mut self, msg: &str) -> f64 {
        let t0 = Instant::now();
        self.input
            .write_all(format!("{msg}\n").as_bytes())
            .expect("write to the echo container's input");
        self.read_line_equal(msg);
        t0.elapsed().as_secs_f64()
    }

    /// Ends the input (EOF on the pipe, ^D on the terminal): the loop ends, the container
    /// exits, ctr removes it.
    fn stop(self) {
        let Echo {
            mut guard,
            mut input,
            output,
            tty,
            dog,
        } = self;
        if tty {
            let _ = input.write_all(b"\x04");
        }
        drop(input);
        let status = guard.0.take().expect("child").wait();
        drop(output);
        let _ = dog.send(());
        match status {
            Ok(s) if s.success() => {}
            other => panic!("echo container's ctr ended with {other:?}"),
        }
    }
}

/// Makes a new terminal `cmd`'s stdin, stdout and controlling terminal (`ctr run -t` wants
/// one), in a session of its own (and so its own process group); returns its master side. Raw from the start, so that nothing is echoed or translated
/// on our side before ctr makes it raw itself.
fn on_a_terminal(cmd: &mut std::process::Command) -> std::os::fd::OwnedFd {
    use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg};
    use std::os::fd::AsRawFd;
    let pty = nix::pty::openpty(None, None).expect("openpty");
    for fd in [&pty.master, &pty.slave] {
        // SAFETY: F_SETFD on a descriptor we own; later children must not inherit it.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let mut t = tcgetattr(&pty.slave).expect("tcgetattr");
    cfmakeraw(&mut t);
    tcsetattr(&pty.slave, SetArg::TCSANOW, &t).expect("tcsetattr");
    let side = |fd: &std::os::fd::OwnedFd| Stdio::from(fd.try_clone().expect("dup pty slave"));
    cmd.stdin(side(&pty.slave)).stdout(side(&pty.slave));
    sluice_integration::pty::in_own_session_with_stdin_as_terminal(cmd);
    pty.master
}

/// 4: latency of one short line after silence, over stdin and stdout pipes or (`tty`) through
/// a terminal (the round trip: ctr → shim → container's stdin, echoed, container's stdout →
/// shim → ctr; with a terminal, the shim copies to and from the pty's master).
pub fn latency(pair: &Pair, k: usize, tty: bool) -> Vec<Metric> {
    let (workload, kind) = if tty {
        ("latency-tty", "tty")
    } else {
        ("latency", "pipe")
    };
    let timeout = Duration::from_secs(120 + k as u64);
    let mut stock = Echo::start(&pair.stock, workload, tty, timeout);
    let mut sluice = Echo::start(&pair.sluice, workload, tty, timeout);
    // The first lines also wait for the containers to start.
    for i in 0..5 {
        stock.round_trip(&format!("warm{i}"));
        sluice.round_trip(&format!("warm{i}"));
    }
    let mut rtt = Samples::default();
    for i in 0..k {
        if i.is_multiple_of(50) {
            progress(workload, &format!("sample {}/{k}", i + 1));
        }
        for rt in order(i) {
            let echo = match rt {
                Runtime::Sluice => &mut sluice,
                Runtime::RuncV2 => &mut stock,
            };
            rtt.push(rt, echo.round_trip(&format!("t{i}")) * 1e3);
            // Silence: the line is alone, as a log line of an idle service is.
            thread::sleep(Duration::from_millis(10));
        }
    }
    stock.stop();
    sluice.stop();
    let p99 = Samples {
        stock: rtt.stock.clone(),
        sluice: rtt.sluice.clone(),
    };
    vec![
        rtt.metric(
            workload,
            &format!("{kind} round trip p50, {k} lines"),
            "ms",
            Agg::Median,
            Target::None,
        ),
        p99.metric(
            workload,
            &format!("{kind} round trip p99"),
            "ms",
            Agg::P99,
            Target::RatioMax(1.0),
        ),
    ]
}

/// 5: execs of /bin/true into a running sleeper: latency, shim CPU per exec, shim RSS after
/// 100 execs and after `total`.
pub fn execs(pair: &Pair, n: usize, total: usize) -> Vec<Metric> {
    const ID: &str = "sleeper";
    let mut shims = Vec::new();
    for rt in [Runtime::RuncV2, Runtime::Sluice] {
        let env = pair.env(rt);
        env.run_detached(ID, &[], &["sleep", "1000000"]);
        env.wait_task_status(ID, "RUNNING", Duration::from_secs(30));
        let pid = shim_of(env, rt, ID).unwrap_or_else(|| panic!("[{rt}] no shim for {ID}"));
        shims.push((rt, pid));
    }
    let shim = |rt: Runtime| shims.iter().find(|s| s.0 == rt).expect("shim").1;
    let exec = |rt: Runtime, i: usize| {
        let out = pair.env(rt).exec(
            ID,
            &format!("e{i}"),
            &["/bin/true"],
            Duration::from_secs(60),
        );
        assert!(out.success(), "[{rt}] exec e{i}:\n{out}");
        out.elapsed.as_secs_f64()
    };
    let mut done = 0;
    for i in 0..3 {
        for rt in order(i) {
            exec(rt, done);
        }
        done += 1;
    }
    let (mut lat, mut cpu) = (Samples::default(), Samples::default());
    for i in 0..n {
        if i.is_multiple_of(20) {
            progress("exec", &format!("exec {}/{n}", i + 1));
        }
        for rt in order(i) {
            let before = cpu_ticks(shim(rt)).expect("shim alive");
            lat.push(rt, exec(rt, done) * 1e3);
            // The exec's own CPU shows up within a tick or two after ctr returns.
            let after = cpu_ticks(shim(rt)).expect("shim alive");
            cpu.push(rt, (after - before) as f64 / clk_tck() * 1e3);
        }
        done += 1;
    }
    // Memory: both shims exec'd in parallel threads (timing no longer matters), to save time.
    let run_to = |rt: Runtime, from: usize, to: usize| {
        for i in from..to {
            exec(rt, i);
        }
    };
    let phase = |from: usize, to: usize| {
        thread::scope(|s| {
            s.spawn(|| run_to(Runtime::RuncV2, from, to));
            s.spawn(|| run_to(Runtime::Sluice, from, to));
        })
    };
    progress("exec", &format!("to 100 execs (now {done})"));
    phase(done, done.max(100));
    done = done.max(100);
    // A moment for both to free what the last exec held.
    thread::sleep(Duration::from_millis(500));
    let mut rss100 = Samples::default();
    for rt in [Runtime::RuncV2, Runtime::Sluice] {
        rss100.push(rt, rss_kib(shim(rt)) as f64);
    }
    progress("exec", &format!("to {total} execs"));
    phase(done, total);
    thread::sleep(Duration::from_millis(500));
    let mut rss_end = Samples::default();
    let mut growth = Samples::default();
    for rt in [Runtime::RuncV2, Runtime::Sluice] {
        let r = rss_kib(shim(rt)) as f64;
        rss_end.push(rt, r);
        let base = match rt {
            Runtime::Sluice => rss100.sluice[0],
            Runtime::RuncV2 => rss100.stock[0],
        };
        growth.push(rt, r - base);
    }
    for rt in [Runtime::RuncV2, Runtime::Sluice] {
        kill_and_delete(pair.env(rt), ID);
    }
    vec![
        lat.metric(
            "exec",
            &format!("exec latency median, {n} execs"),
            "ms",
            Agg::Median,
            Target::RatioMax(0.9),
        ),
        cpu.metric(
            "exec",
            "shim CPU per exec",
            "ms",
            Agg::SumPer(n as f64),
            Target::RatioMax(0.5),
        ),
        rss100.metric(
            "exec",
            "shim RSS after 100 execs",
            "KiB",
            Agg::Median,
            Target::None,
        ),
        rss_end.metric(
            "exec",
            &format!("shim RSS after {total} execs"),
            "KiB",
            Agg::Median,
            Target::None,
        ),
        growth.metric(
            "exec",
            &format!("shim RSS growth 100 -> {total} execs"),
            "KiB",
            Agg::Median,
            Target::SluiceMax(256.0),
        ),
    ]
}

/// The shim's own share of each phase of a task's life (bootstrap, create, start, exec,
/// delete): wall time at a client that plays containerd, less runc's calls inside it
/// (`sluice_integration::share`). `rounds` lives per shim, interleaved.
pub fn share(pair: &Pair, rounds: usize) -> Vec<Metric> {
    use sluice_integration::share::{self, TimedRunc, PHASES};
    let timed = |rt: Runtime| {
        TimedRunc::install(pair.env(rt)).unwrap_or_else(|e| panic!("[{rt}] timed-runc: {e}"))
    };
    let (stock_runc, sluice_runc) = (timed(Runtime::RuncV2), timed(Runtime::Sluice));
    let mut own: Vec<Samples> = PHASES.iter().map(|_| Samples::default()).collect();
    let mut runc: Vec<Samples> = PHASES.iter().map(|_| Samples::default()).collect();
    for i in 0..rounds {
        progress("share", &format!("round {}/{rounds}", i + 1));
        for rt in order(i) {
            let t = match rt {
                Runtime::Sluice => &sluice_runc,
                Runtime::RuncV2 => &stock_runc,
            };
            let phases = share::round(pair.env(rt), rt, t, i)
                .unwrap_or_else(|e| panic!("[{rt}] share round {i}: {e}"));
            for (k, p) in phases.iter().enumerate() {
                own[k].push(rt, p.own().as_secs_f64() * 1e3);
                runc[k].push(rt, p.runc.as_secs_f64() * 1e3);
            }
        }
    }
    let mut out = Vec::new();
    for ((name, o), r) in PHASES.iter().zip(own).zip(runc) {
        if *name == "call" {
            // The floor under every phase, not a phase: no target of its own.
            out.push(o.metric(
                "share",
                "call: one Connect there and back (mean of 10), median",
                "ms",
                Agg::Median,
                Target::None,
            ));
            continue;
        }
        out.push(o.metric(
            "share",
            &format!("{name}: shim's own ms, median of {rounds}"),
            "ms",
            Agg::Median,
            Target::RatioMax(0.3),
        ));
        if *name != "bootstrap" {
            out.push(r.metric(
                "share",
                &format!("{name}: runc's ms inside it ({} clock)", sluice_runc.clock),
                "ms",
                Agg::Median,
                Target::None,
            ));
        }
    }
    out
}

/// `n` idle containers as a shim each and as one group: the shims' total PSS, threads, CPU
/// per minute while nothing happens, and their connections to containerd.
pub fn scale(pair: &Pair, n: usize, settle: Duration, window: Duration) -> Vec<Metric> {
    use sluice_integration::scale::{self, Layout};
    let mut out = Vec::new();
    for (layout, label) in [
        (Layout::ShimEach, "a shim each"),
        (Layout::Grouped, "one group"),
    ] {
        let (mut pss, mut threads, mut cpu, mut conns) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        for rt in order(out.len()) {
            progress("scale", &format!("{n} idle containers, {label}, {rt}"));
            let idle = scale::idle(pair.env(rt), n, layout, settle, window);
            pss.push(rt, idle.pss_kib as f64 / 1024.0);
            threads.push(rt, idle.threads as f64);
            cpu.push(rt, idle.cpu_ms_per_min);
            conns.push(rt, idle.connections as f64);
        }
        let m = |s: Samples, what: &str, unit: &'static str| {
            s.metric(
                "scale",
                &format!("{n} idle, {label}: {what}"),
                unit,
                Agg::Median,
                Target::None,
            )
        };
        out.push(m(pss, "total PSS", "MiB"));
        out.push(m(threads, "threads", "threads"));
        out.push(m(cpu, "CPU per minute", "ms"));
        out.push(m(conns, "connections to containerd", "connections"));
    }
    out
}
