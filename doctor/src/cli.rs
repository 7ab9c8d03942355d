//! The doctor's command line. Hand-parsed (the shim's own flags are containerd's business and go
//! through the containerd-shim crate); `--flag value` and `--flag=value` both work.

use std::path::PathBuf;

/// Default age at which a `runc` process, or a shim's `runc` child, counts as old.
pub const DEFAULT_THRESHOLD_SECS: f64 = 30.0;
/// Default share of `pids.max` at which a cgroup is reported.
pub const DEFAULT_PIDS_RATIO: f64 = 0.9;

pub const USAGE: &str = "\
Usage: containerd-shim-sluice-v2 doctor [options]

Looks for the conditions that hang a runc shim on runc's output pipes (containerd#4434):
a spent per-user pipe budget and pipes smaller than 16 pages, runc processes that have run for
too long and what they wait on, cgroups near pids.max, and shims with an unreaped child or a
runc child that does not return. Read-only; run it as root to see every process.

Options:
  --json                  print a JSON object instead of text
  --threshold <seconds>   age at which runc (or a shim's runc child) is old [30]
  --pids-ratio <0..1>     report a cgroup when pids.current >= ratio * pids.max [0.9]
  --pid <pid>             only processes in the subtree of <pid> (repeatable) for the
                          process-based findings; the pipe budget is still counted node-wide
  --cgroup-prefix <path>  only cgroups at or below <path>, e.g. /k8s.io (repeatable)
  --check <list>          only these checks, comma-separated: pipes, runc, pids, shims [all]
  --proc-root <dir>       read processes and fs.pipe-user-pages-* from <dir> [/proc]
  --cgroup-root <dir>     read cgroups from <dir> [/sys/fs/cgroup]
  -h, --help              this text

Exit status: 0 nothing needs attention (a user at 80% of the pipe budget is a warning only),
1 findings, 2 the doctor itself failed.
";

/// How the report is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Which checks produce findings (`--check`). The pipe budget is always counted and shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checks {
    pub pipes: bool,
    pub runc: bool,
    pub pids: bool,
    pub shims: bool,
}

impl Checks {
    pub const ALL: Checks = Checks {
        pipes: true,
        runc: true,
        pids: true,
        shims: true,
    };
    pub const NONE: Checks = Checks {
        pipes: false,
        runc: false,
        pids: false,
        shims: false,
    };

    /// The names of the checks that are on, as `--check` spells them.
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.pipes, "pipes"),
            (self.runc, "runc"),
            (self.pids, "pids"),
            (self.shims, "shims"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }
}

/// Parsed `doctor` options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    pub format: Format,
    pub threshold_secs: f64,
    pub pids_ratio: f64,
    pub pids: Vec<i32>,
    pub cgroup_prefixes: Vec<String>,
    pub checks: Checks,
    pub proc_root: PathBuf,
    pub cgroup_root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: Format::Text,
            threshold_secs: DEFAULT_THRESHOLD_SECS,
            pids_ratio: DEFAULT_PIDS_RATIO,
            pids: Vec::new(),
            cgroup_prefixes: Vec::new(),
            checks: Checks::ALL,
            proc_root: PathBuf::from("/proc"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Options),
    Help,
}

/// Parses the arguments after `doctor`.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut o = Options::default();
    let mut checks: Option<Checks> = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with('-') => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        // Go's flag package (containerd's tools) takes one dash as well as two.
        let name = name.strip_prefix("--").or_else(|| name.strip_prefix('-'));
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let mut value = |what: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("--{name} needs {what}")),
            }
        };
        match name {
            "h" | "help" => return Ok(Command::Help),
            "json" => {
                if inline.is_some() {
                    return Err("--json takes no value".into());
                }
                o.format = Format::Json;
            }
            "threshold" => {
                let v = value("a number of seconds")?;
                o.threshold_secs = v
                    .parse::<f64>()
                    .ok()
                    .filter(|t| t.is_finite() && *t >= 0.0)
                    .ok_or_else(|| {
                        format!("--threshold {v:?}: expected a number of seconds >= 0")
                    })?;
            }
            "pids-ratio" => {
                let v = value("a ratio between 0 and 1")?;
                o.pids_ratio = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("--pids-ratio {v:?}: expected a number from 0 to 1"))?;
            }
            "pid" => {
                let v = value("a process id")?;
                let pid = v
                    .parse::<i32>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("--pid {v:?}: expected a process id"))?;
                o.pids.push(pid);
            }
            "cgroup-prefix" => {
                let v = value("a cgroup path")?;
                o.cgroup_prefixes.push(normalize_cgroup_prefix(&v)?);
            }
            "check" => {
                let v = value("a list of checks")?;
                let c = checks.get_or_insert(Checks::NONE);
                for name in v.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    match name {
                        "pipes" => c.pipes = true,
                        "runc" => c.runc = true,
                        "pids" => c.pids = true,
                        "shims" => c.shims = true,
                        other => {
                            return Err(format!(
                                "--check {other:?}: expected pipes, runc, pids or shims"
                            ))
                        }
                    }
                }
            }
            "proc-root" => o.proc_root = PathBuf::from(value("a directory")?),
            "cgroup-root" => o.cgroup_root = PathBuf::from(value("a directory")?),
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    o.checks = checks.unwrap_or(Checks::ALL);
    if o.checks == Checks::NONE {
        return Err("--check needs at least one of pipes, runc, pids, shims".into());
    }
    Ok(Command::Run(o))
}

/// `ns/c1/`, `/ns//c1` → `/ns/c1`; `/` stays `/`. A `..` is refused: a prefix names cgroups, it
/// does not walk the filesystem.
fn normalize_cgroup_prefix(v: &str) -> Result<String, String> {
    let parts: Vec<&str> = v
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!("--cgroup-prefix {v:?}: `..` is not allowed"));
    }
    Ok(format!("/{}", parts.join("/")))
}

/// True when cgroup `path` (`/ns/c1`) is `prefix` or below it, component by component (so
/// `/ns` does not match `/ns2`).
pub fn cgroup_in_prefix(path: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty()
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}
