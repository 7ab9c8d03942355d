//! sluice-bench: sluice against containerd's stock runc shim (`io.containerd.runc.v2`), in the
//! same run, interleaved, each result as the ratio sluice/stock. See bench/README.md.
//!
//!   cargo run -p sluice-bench --release -- [--quick] [--only lines,write-4k,write-64k,latency,latency-tty,exec,share,scale]
//!       [--containerd 1.6|1.7|2.x] [--json FILE] [--svg FILE] [--rss-execs N] [--idle N]
//!
//! Needs root, runc, busybox-static and containerd, as the integration tests do (it runs on
//! their harness: one private containerd per shim, torn down by `TestEnv`'s Drop, also when a
//! workload panics).

mod report;
mod sample;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use sluice_integration::{Runtime, TestEnv};

use workloads::Pair;

const WORKLOADS: [&str; 8] = [
    "lines",
    "write-4k",
    "write-64k",
    "latency",
    "latency-tty",
    "exec",
    "share",
    "scale",
];
const USAGE: &str =
    "usage: sluice-bench [--quick] [--only lines,write-4k,write-64k,latency,latency-tty,exec,share,scale] \
                     [--containerd 1.6|1.7|2.x] [--json FILE] [--svg FILE] [--rss-execs N] [--idle N]";

struct Args {
    quick: bool,
    only: Vec<String>,
    containerd: String,
    json: Option<PathBuf>,
    svg: Option<PathBuf>,
    /// Execs for the RSS reading of workload 5 (default 10,000; quick 500).
    rss_execs: Option<usize>,
    /// Idle containers of the scale workload (default 200; quick 10).
    idle: Option<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        quick: false,
        only: WORKLOADS.iter().map(|s| s.to_string()).collect(),
        containerd: "1.6".into(),
        json: None,
        svg: None,
        rss_execs: None,
        idle: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--quick" => a.quick = true,
            "--only" => {
                a.only = value().split(',').map(str::to_string).collect();
                if let Some(w) = a.only.iter().find(|w| !WORKLOADS.contains(&w.as_str())) {
                    die(&format!("unknown workload {w}"));
                }
            }
            "--containerd" => a.containerd = value(),
            "--json" => a.json = Some(value().into()),
            "--svg" => a.svg = Some(value().into()),
            "--rss-execs" => {
                let v = value();
                a.rss_execs =
                    Some(v.parse().ok().filter(|n| *n >= 100).unwrap_or_else(|| {
                        die(&format!("--rss-execs {v}: a number of at least 100"))
                    }));
            }
            "--idle" => {
                let v = value();
                a.idle = Some(v.parse().ok().filter(|n| *n >= 1).unwrap_or_else(|| {
                    die(&format!("--idle {v}: a number of containers, at least 1"))
                }));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => die(&format!("unknown argument {arg}")),
        }
    }
    a
}

fn die(msg: &str) -> ! {
    eprintln!("sluice-bench: {msg}\n{USAGE}");
    std::process::exit(2);
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

/// The shim under test: `$SLUICE_SHIM_BIN`, else the static release build, built if missing
/// (the build that ships; the debug build's copy loops would understate sluice).
fn shim_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_SHIM_BIN") {
        return p.into();
    }
    let host = String::from_utf8(
        Command::new("rustc")
            .arg("-vV")
            .output()
            .expect("run rustc -vV")
            .stdout,
    )
    .expect("rustc -vV is UTF-8");
    let triple = host
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host");
    let bin = workspace().join(format!("target/{triple}/release/containerd-shim-sluice-v2"));
    if !bin.is_file() {
        eprintln!("[bench] building the static release shim (scripts/build-static.sh --release)");
        let ok = Command::new("bash")
            .arg(workspace().join("scripts/build-static.sh"))
            .arg("--release")
            .status()
            .expect("run scripts/build-static.sh")
            .success();
        assert!(
            ok && bin.is_file(),
            "scripts/build-static.sh --release failed"
        );
    }
    bin
}

/// The harness's runc wrapper (pass-through here): `$SLUICE_FAULT_RUNC_BIN`, else beside this
/// executable. The share workload finds `timed-runc` beside it. Both are built with this
/// executable's profile if missing (`cargo run -p sluice-bench` does not build the harness's
/// binaries).
fn fault_runc() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_FAULT_RUNC_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().expect("exe has a dir").to_path_buf();
    let bins = ["fault-runc", "timed-runc"];
    if bins.iter().any(|b| !dir.join(b).is_file()) {
        let release = dir.file_name().is_some_and(|n| n == "release");
        eprintln!("[bench] building the harness's {}", bins.join(" and "));
        let mut cmd = Command::new("cargo");
        cmd.current_dir(workspace())
            .args(["build", "-p", "sluice-integration"]);
        for b in bins {
            cmd.args(["--bin", b]);
        }
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().expect("run cargo build").success();
        assert!(
            ok && bins.iter().all(|b| dir.join(b).is_file()),
            "cannot build {}",
            bins.join(" and ")
        );
    }
    dir.join("fault-runc")
}

fn text_of(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() {
    let args = parse_args();
    // Before any thread exists: the harness reads these.
    std::env::set_var("SLUICE_CONTAINERD", &args.containerd);
    let shim = shim_bin();
    std::env::set_var("SLUICE_SHIM_BIN", &shim);
    std::env::set_var("SLUICE_FAULT_RUNC_BIN", fault_runc());

    let started = Instant::now();
    let load_before = loadavg();
    let q = args.quick;
    let rounds = if q { 3 } else { 5 };
    eprintln!(
        "[bench] {} run, containerd {}, shim {}, load {load_before}",
        if q { "quick" } else { "full" },
        args.containerd,
        shim.display()
    );
    let pair = Pair {
        stock: TestEnv::start("bench-stock", Runtime::RuncV2),
        sluice: TestEnv::start("bench-sluice", Runtime::Sluice),
    };
    let mut metrics = Vec::new();
    let mut failed: Vec<&str> = Vec::new();
    for w in WORKLOADS
        .iter()
        .filter(|w| args.only.iter().any(|o| o == *w))
    {
        let t = Instant::now();
        eprintln!("[bench] == {w}");
        // A workload that breaks must not cost the figures of the others: it is reported and
        // fails the run at the end (its panic message is on stderr above).
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match *w {
            "lines" => workloads::lines(&pair, if q { 20_000 } else { 200_000 }, rounds),
            "write-4k" => workloads::bulk(&pair, w, if q { 64 << 20 } else { 1 << 30 }, rounds),
            "write-64k" => workloads::bulk(&pair, w, if q { 64 << 20 } else { 1 << 30 }, rounds),
            "latency" => workloads::latency(&pair, if q { 100 } else { 1000 }, false),
            "latency-tty" => workloads::latency(&pair, if q { 100 } else { 1000 }, true),
            "exec" => {
                let (n, total) = if q { (20, 500) } else { (200, 10_000) };
                workloads::execs(&pair, n, args.rss_execs.unwrap_or(total))
            }
            "share" => workloads::share(&pair, if q { 5 } else { 30 }),
            "scale" => {
                let (n, settle, window) = if q { (10, 3, 5) } else { (200, 15, 60) };
                let secs = Duration::from_secs;
                workloads::scale(&pair, args.idle.unwrap_or(n), secs(settle), secs(window))
            }
            _ => unreachable!("workload names are checked in parse_args"),
        }));
        match run {
            Ok(m) => metrics.extend(m),
            Err(_) => {
                eprintln!("[bench] {w} FAILED");
                failed.push(w);
            }
        }
        eprintln!("[bench] {w} took {:.1} s", t.elapsed().as_secs_f64());
    }
    drop(pair);

    let elapsed = started.elapsed().as_secs_f64();
    let commit = text_of(Command::new("git").current_dir(workspace()).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]));
    let date = text_of(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    let title = format!(
        "sluice/stock, {} run, containerd {}, {date}, {commit}",
        if q { "quick" } else { "full" },
        args.containerd
    );
    let table = report::table(&metrics);
    println!("{title}\n\n{table}");
    println!(
        "{:.0} s; load average before {load_before}, after {}",
        elapsed,
        loadavg()
    );
    if let Some(path) = &args.json {
        let meta = json!({
            "date": date,
            "commit": commit,
            "quick": q,
            "containerd": args.containerd,
            "shim": shim.display().to_string(),
            "rounds": rounds,
            "rss_execs": args.rss_execs,
            "seconds": elapsed,
            "loadavg_before": load_before,
            "loadavg_after": loadavg(),
            "failed": failed,
        });
        let text = serde_json::to_string_pretty(&report::json(&metrics, meta)).expect("json");
        std::fs::write(path, text + "\n")
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    if let Some(path) = &args.svg {
        std::fs::write(path, report::svg(&metrics, &title))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    if !failed.is_empty() {
        eprintln!(
            "sluice-bench: workloads that failed: {} (their error is above)",
            failed.join(", ")
        );
        std::process::exit(1);
    }
}
