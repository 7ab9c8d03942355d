//! sluice-doctor, run as `containerd-shim-sluice-v2 doctor`: makes the case study's conditions
//! visible on a node.
//!
//! The hang sluice removes needs three things to line up (DESIGN.md, "The bug it exists to
//! remove"): a per-user pipe budget that is spent (`fs.pipe-user-pages-soft`, so new pipes get a
//! page or two instead of sixteen), a container at its `pids.max` (so `runc init` dies with a
//! crash dump bigger than such a pipe), and a shim that reads runc's pipes only after runc exits.
//! The stuck result is a `runc` that never ends, asleep in `pipe_write`, under a shim that waits
//! for it. This module looks for each of those, read-only:
//!
//! 1. the pipe budget: the sysctls, the pipe pages in use per user, and pipes smaller than the
//!    default 16 pages ([`pipes`]);
//! 2. `runc` processes older than a threshold, with what they sleep in and, for a pipe write, who
//!    holds the read end, and the container they work on ([`runc`]);
//! 3. cgroups whose `pids.current` is near `pids.max` ([`cgroups`]);
//! 4. shims with an unreaped child or a `runc` child older than the threshold ([`shims`]).
//!
//! Owns: reading `/proc` and the cgroup filesystem through injectable roots ([`Host`]), so unit
//! tests run on fixture trees without root; the report in text and JSON ([`report`]); the exit
//! code (0 nothing needs attention, 1 findings, 2 the doctor itself failed).
//!
//! Must not: change anything it inspects. It never writes to `/proc` or cgroupfs, never signals a
//! process, and never opens a pipe for writing (a writer it added would keep a reader from seeing
//! EOF). Measuring a pipe duplicates the holder's descriptor (`pidfd_getfd`) or, failing that,
//! opens it read-only and non-blocking through `/proc` ([`probe`]).
//!
//! It is not part of the shim: a crate of its own that imports nothing from the shim. The shim
//! binary's `doctor` subcommand only calls [`main`], so nothing here runs when containerd starts
//! the binary. The report types ([`report`]) are public and deserialize from `--json`, so tools
//! (the integration tests) read the report with the same definitions that wrote it.

mod cgroups;
mod cli;
mod pipes;
mod probe;
mod procfs;
pub mod report;
mod runc;
mod shims;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cli::{Command, Format, Options};
use probe::PipeProbe;
use procfs::ProcTable;
use report::Report;

/// Exit code: nothing needs attention.
pub const EXIT_HEALTHY: i32 = 0;
/// Exit code: at least one finding.
pub const EXIT_FINDINGS: i32 = 1;
/// Exit code: the doctor could not do its job (bad flags, `/proc` unreadable).
pub const EXIT_FAILED: i32 = 2;

/// Why the doctor could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("--pid {0}: no such process")]
    NoSuchPid(i32),
}

/// Everything the checks read from, and the host facts a fixture has to pin down.
pub struct Host<'a> {
    /// `/proc`, or a fixture tree in its shape (`<pid>/stat`, `<pid>/fd/*`, `stat`, `sys/fs/*`).
    pub proc_root: PathBuf,
    /// `/sys/fs/cgroup`: a v1 tree with a `pids` controller directory (and maybe `unified`), or
    /// a v2 tree with `cgroup.controllers` at its top.
    pub cgroup_root: PathBuf,
    /// `sysconf(_SC_CLK_TCK)`: the unit of a process's start time in `<pid>/stat`.
    pub clk_tck: u64,
    /// `sysconf(_SC_PAGESIZE)`: the unit of the pipe budget.
    pub page_size: u64,
    /// Seconds since the epoch, compared against `btime` plus a process's start time.
    pub now: f64,
    /// The doctor's own pid, left out of every check (its stdout may well be a pipe).
    pub self_pid: Option<i32>,
    /// Measures a pipe through one of its holders' descriptors.
    pub probe: &'a dyn PipeProbe,
    /// How long a zombie must stay unreaped, after it was first seen, to count: a shim that
    /// reaps promptly will have done so by then. Zero in tests.
    pub zombie_settle: Duration,
}

impl<'a> Host<'a> {
    /// The running system: `/proc`, `/sys/fs/cgroup`, the real clock and `pidfd_getfd`.
    fn system(opts: &Options, probe: &'a dyn PipeProbe) -> Host<'a> {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let (tck, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        Host {
            proc_root: opts.proc_root.clone(),
            cgroup_root: opts.cgroup_root.clone(),
            clk_tck: u64::try_from(tck).ok().filter(|t| *t > 0).unwrap_or(100),
            page_size: u64::try_from(page).ok().filter(|p| *p > 0).unwrap_or(4096),
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
            self_pid: Some(std::process::id() as i32),
            probe,
            zombie_settle: Duration::from_millis(300),
        }
    }
}

/// `containerd-shim-sluice-v2 doctor <args>`: prints the report, returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let opts = match cli::parse(args) {
        Ok(Command::Run(opts)) => opts,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return EXIT_HEALTHY;
        }
        Err(e) => {
            eprintln!("containerd-shim-sluice-v2 doctor: {e}");
            eprintln!("run `containerd-shim-sluice-v2 doctor --help` for the options");
            return EXIT_FAILED;
        }
    };
    let sys_probe = probe::SysPipeProbe::new(&opts.proc_root);
    let host = Host::system(&opts, &sys_probe);
    let mut stdout = io::stdout().lock();
    run(&opts, &host, &mut stdout)
}

/// Examines `host`, writes the report in `opts.format` to `out`, and returns the exit code.
pub fn run(opts: &Options, host: &Host, out: &mut dyn Write) -> i32 {
    let report = match examine(opts, host) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("containerd-shim-sluice-v2 doctor: {e}");
            return EXIT_FAILED;
        }
    };
    let text = match opts.format {
        Format::Text => report.to_text(),
        Format::Json => report.to_json(),
    };
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        eprintln!("containerd-shim-sluice-v2 doctor: cannot write the report: {e}");
        return EXIT_FAILED;
    }
    if report.healthy() {
        EXIT_HEALTHY
    } else {
        EXIT_FINDINGS
    }
}

/// What the filters leave in view.
pub struct Scope {
    /// The processes the process-based findings may name: the subtrees of `--pid`; `None` = all.
    pub pids: Option<BTreeSet<i32>>,
    /// Cgroup path prefixes (`/ns`, `/kubepods/...`) for the pids check; empty = all.
    pub cgroup_prefixes: Vec<String>,
}

impl Scope {
    fn has_pid(&self, pid: i32) -> bool {
        match &self.pids {
            Some(set) => set.contains(&pid),
            None => true,
        }
    }
}

/// Runs every check and assembles the report.
pub fn examine(opts: &Options, host: &Host) -> Result<Report, DoctorError> {
    let procs = ProcTable::load(host)?;
    let pids = if opts.pids.is_empty() {
        None
    } else {
        for pid in &opts.pids {
            if !procs.contains(*pid) {
                return Err(DoctorError::NoSuchPid(*pid));
            }
        }
        Some(procs.subtree(&opts.pids))
    };
    let scope = Scope {
        pids,
        cgroup_prefixes: opts.cgroup_prefixes.clone(),
    };
    let threshold = opts.threshold_secs;

    let checks = opts.checks;
    let mut notes = procs.notes();
    let pipes = pipes::inventory(host, &procs);
    let budget = pipes::budget(host, &pipes)?;
    let mut findings = Vec::new();
    if checks.pipes {
        findings.extend(pipes::findings(host, &procs, &pipes, &budget, &scope));
    }
    if checks.runc {
        findings.extend(runc::old_runc(host, &procs, &pipes, &scope, threshold));
    }
    if checks.pids {
        let (near_max, cg_notes) = cgroups::pids_near_max(host, opts.pids_ratio, &scope)?;
        findings.extend(near_max);
        notes.extend(cg_notes);
    }
    if checks.shims {
        findings.extend(shims::trouble(host, &procs, &scope, threshold));
    }
    notes.extend(pipes.notes());

    Ok(Report {
        pipe_budget: budget,
        findings,
        notes,
        threshold_seconds: threshold,
        pids_ratio: opts.pids_ratio,
        checks,
    })
}
