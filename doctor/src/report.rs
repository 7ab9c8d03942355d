//! The doctor's findings and how they are printed: plain text for people (a section per kind, a
//! line per item, a summary line) and a JSON object for tools.
//!
//! The JSON shape is a contract: `{"pipe_budget": {...}, "findings": [{"kind": ..., ...}],
//! "healthy": bool, "notes": [...], "threshold_seconds": n, "pids_ratio": r}`. Fields are added,
//! never renamed or removed; an unknown value is `null`, not a missing key. [`JsonReport`] is
//! that object; every type in it also deserializes, so a reader uses these definitions.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::cli::Checks;
pub use super::pipes::{BudgetStatus, PipeBudget, UserPipes};
pub use super::procfs::Access;
use super::procfs::{shorten, ProcTable};

/// One process holding one end of a pipe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: i32,
    pub program: String,
    pub fd: i32,
    /// `read`, `write`, `read-write` or `unknown`.
    pub access: Access,
}

impl Holder {
    pub fn new(procs: &ProcTable, pid: i32, fd: i32, access: Access) -> Holder {
        Holder {
            pid,
            program: procs
                .get(pid)
                .map(|p| p.program().to_string())
                .unwrap_or_default(),
            fd,
            access,
        }
    }

    fn text(&self) -> String {
        format!(
            "pid {} {} fd {} ({})",
            self.pid,
            self.program,
            self.fd,
            self.access.as_str()
        )
    }
}

/// A pipe created (or shrunk) below the default 16 pages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SmallPipe {
    pub inode: u64,
    pub capacity_bytes: u64,
    pub pages: u64,
    pub unread_bytes: Option<u64>,
    /// The uid it is attributed to.
    pub uid: Option<u32>,
    pub holders: Vec<Holder>,
}

/// A pipe an old runc may be blocked writing to, and who could drain it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockedPipe {
    pub fd: i32,
    pub inode: u64,
    pub capacity_bytes: Option<u64>,
    pub unread_bytes: Option<u64>,
    /// Every process holding the pipe open for reading (the runc itself included, if it does).
    pub readers: Vec<Holder>,
}

/// A process, briefly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProcBrief {
    pub pid: i32,
    pub program: String,
}

/// A runc (or `runc init`) process older than the threshold.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OldRunc {
    pub pid: i32,
    pub comm: String,
    pub argv: Vec<String>,
    pub state: String,
    pub age_seconds: u64,
    /// The kernel function it sleeps in; `0` when running (or hidden).
    pub wchan: Option<String>,
    /// The thread that sleeps in a pipe write, when it is not the main thread.
    pub wchan_tid: Option<i32>,
    /// `create`, `exec`, `init`, ...
    pub verb: Option<String>,
    pub container_id: Option<String>,
    /// The containerd namespace, when `--root` is `/run/containerd/runc/<namespace>`.
    pub namespace: Option<String>,
    pub root: Option<String>,
    pub bundle: Option<String>,
    pub cgroup: Option<String>,
    pub parent: Option<ProcBrief>,
    /// For a process asleep in a pipe write: the pipes it writes that are full (all the pipes it
    /// writes to when none is known to be full).
    pub blocked_on: Vec<BlockedPipe>,
    /// What the wait most likely means, when the doctor can tell.
    pub hint: Option<String>,
}

/// A cgroup whose `pids.current` is at or past the ratio of its `pids.max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PidsNearMax {
    /// The cgroup's path inside its hierarchy (`/default/c1`).
    pub cgroup: String,
    /// The directory on disk.
    pub path: String,
    /// `v1` (the pids controller's hierarchy) or `v2`.
    pub hierarchy: String,
    pub current: u64,
    pub max: u64,
    pub percent: f64,
}

/// A shim process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShimRef {
    pub pid: i32,
    pub program: String,
    pub namespace: Option<String>,
    pub id: Option<String>,
}

/// The child that makes a shim worth a look.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShimChild {
    pub pid: i32,
    pub comm: String,
    pub argv: Vec<String>,
    pub state: String,
    /// Since the child started (a zombie's death time is not recorded anywhere).
    pub age_seconds: u64,
    pub wchan: Option<String>,
    /// For a runc child: its verb and the container it works on.
    pub verb: Option<String>,
    pub container_id: Option<String>,
}

/// A shim and its troublesome child.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShimTrouble {
    pub shim: ShimRef,
    pub child: ShimChild,
}

/// One thing that needs attention.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A user at or past `fs.pipe-user-pages-soft`.
    PipeBudgetExhausted {
        uid: u32,
        pages: u64,
        pipes: usize,
        soft_limit_pages: u64,
    },
    SmallPipe(SmallPipe),
    OldRunc(OldRunc),
    PidsNearMax(PidsNearMax),
    /// A shim whose `runc` child has run longer than the threshold (an exec or create stuck).
    ShimRuncChild(ShimTrouble),
    /// A shim with a zombie child older than the threshold: nobody reaps it.
    ShimZombieChild(ShimTrouble),
}

/// The result of one examination.
#[derive(Clone, Debug)]
pub struct Report {
    pub pipe_budget: PipeBudget,
    pub findings: Vec<Finding>,
    pub notes: Vec<String>,
    pub threshold_seconds: f64,
    pub pids_ratio: f64,
    /// The checks that ran (`--check`); a kind not checked has no findings by construction.
    pub checks: Checks,
}

/// The report as `--json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonReport {
    pub pipe_budget: PipeBudget,
    pub findings: Vec<Finding>,
    /// No findings.
    pub healthy: bool,
    pub notes: Vec<String>,
    pub threshold_seconds: f64,
    pub pids_ratio: f64,
    /// The checks that ran, as `--check` spells them.
    pub checks: Vec<String>,
}

/// `42s`, `5m07s`, `3h12m`, `2d04h`.
pub fn fmt_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 2 * 86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A section's count, or why it has none.
fn count_or_skipped(checked: bool, n: usize) -> String {
    if checked {
        n.to_string()
    } else {
        "not checked (--check)".to_string()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "?".into())
}

impl Report {
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }

    pub fn to_json(&self) -> String {
        let view = JsonReport {
            pipe_budget: self.pipe_budget.clone(),
            findings: self.findings.clone(),
            healthy: self.healthy(),
            notes: self.notes.clone(),
            threshold_seconds: self.threshold_seconds,
            pids_ratio: self.pids_ratio,
            checks: self.checks.names().into_iter().map(String::from).collect(),
        };
        // Plain data with string keys: serialization cannot fail.
        let mut s = serde_json::to_string_pretty(&view).unwrap_or_else(|e| {
            format!("{{\"healthy\": false, \"notes\": [\"cannot encode the report: {e}\"]}}")
        });
        s.push('\n');
        s
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        self.budget_text(&mut s);

        let small: Vec<&SmallPipe> = self
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::SmallPipe(p) => Some(p),
                _ => None,
            })
            .collect();
        let _ = writeln!(
            s,
            "\nsmall pipes (below the default 16 pages): {}",
            count_or_skipped(self.checks.pipes, small.len())
        );
        for p in &small {
            let holders: Vec<String> = p.holders.iter().map(Holder::text).collect();
            let _ = writeln!(
                s,
                "  pipe:[{}] {} bytes ({}), {} unread, uid {}: {}",
                p.inode,
                p.capacity_bytes,
                plural(p.pages as usize, "page", "pages"),
                opt(&p.unread_bytes),
                opt(&p.uid),
                holders.join(", ")
            );
        }

        let runcs: Vec<&OldRunc> = self
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::OldRunc(r) => Some(r),
                _ => None,
            })
            .collect();
        let _ = writeln!(
            s,
            "\nrunc processes older than {}s: {}",
            self.threshold_seconds,
            count_or_skipped(self.checks.runc, runcs.len())
        );
        for r in &runcs {
            s.push_str(&runc_text(r));
        }

        let near: Vec<&PidsNearMax> = self
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::PidsNearMax(c) => Some(c),
                _ => None,
            })
            .collect();
        let _ = writeln!(
            s,
            "\ncgroups near pids.max (current >= {}% of max): {}",
            self.pids_ratio * 100.0,
            count_or_skipped(self.checks.pids, near.len())
        );
        for c in &near {
            let _ = writeln!(
                s,
                "  {}: {} of {} pids ({}%) [{} {}]",
                c.cgroup, c.current, c.max, c.percent, c.hierarchy, c.path
            );
        }

        let shims: Vec<(&str, &ShimTrouble)> = self
            .findings
            .iter()
            .filter_map(|f| match f {
                Finding::ShimRuncChild(t) => Some(("runc", t)),
                Finding::ShimZombieChild(t) => Some(("zombie", t)),
                _ => None,
            })
            .collect();
        let _ = writeln!(
            s,
            "\nshims with trouble: {}",
            count_or_skipped(self.checks.shims, shims.len())
        );
        for (what, t) in &shims {
            let sh = &t.shim;
            let c = &t.child;
            let head = format!(
                "  pid {} {} (namespace {}, id {})",
                sh.pid,
                sh.program,
                opt(&sh.namespace),
                opt(&sh.id)
            );
            let _ = match *what {
                "runc" => writeln!(
                    s,
                    "{head}: runc child pid {} ({}) has run for {}, in {}",
                    c.pid,
                    match (&c.verb, &c.container_id) {
                        (Some(v), Some(id)) => format!("runc {v} {id}"),
                        _ => shorten(&c.argv.join(" "), 120),
                    },
                    fmt_age(c.age_seconds),
                    opt(&c.wchan),
                ),
                _ => writeln!(
                    s,
                    "{head}: zombie child pid {} ({}), started {} ago, not reaped",
                    c.pid,
                    c.comm,
                    fmt_age(c.age_seconds)
                ),
            };
        }

        if !self.notes.is_empty() {
            s.push_str("\nnotes:\n");
            for n in &self.notes {
                let _ = writeln!(s, "  {n}");
            }
        }
        let _ = writeln!(s, "\nsummary: {}", self.summary());
        s
    }

    fn budget_text(&self, s: &mut String) {
        let b = &self.pipe_budget;
        let limit = |v: Option<u64>| match v {
            None => "not available".to_string(),
            Some(0) => "0 (unlimited)".to_string(),
            Some(n) => n.to_string(),
        };
        let _ = writeln!(
            s,
            "pipe budget: fs.pipe-user-pages-soft {}, fs.pipe-user-pages-hard {}; {} seen \
             ({} not measured); a page is {} bytes",
            limit(b.soft_limit_pages),
            limit(b.hard_limit_pages),
            plural(b.pipes, "pipe", "pipes"),
            b.pipes_unmeasured,
            b.page_size
        );
        for u in &b.users {
            let share = match u.percent_of_soft {
                Some(p) => format!("{p}% of the soft limit"),
                None => "no soft limit".to_string(),
            };
            let status = match u.status {
                BudgetStatus::Ok | BudgetStatus::Unlimited => "",
                BudgetStatus::Warning => "  WARNING: near the soft limit",
                BudgetStatus::Exhausted => {
                    "  EXHAUSTED: new pipes of its unprivileged processes get the minimum size"
                }
            };
            let _ = writeln!(
                s,
                "  uid {}: {} pages in {}, {share}{status}",
                u.uid,
                u.pages,
                plural(u.pipes, "pipe", "pipes")
            );
        }
    }

    /// `no problems found`, or the count of findings by kind.
    pub fn summary(&self) -> String {
        if self.findings.is_empty() {
            return "no problems found".to_string();
        }
        let count = |pred: fn(&Finding) -> bool| self.findings.iter().filter(|f| pred(f)).count();
        let parts = [
            (
                count(|f| matches!(f, Finding::PipeBudgetExhausted { .. })),
                "user past the pipe budget",
                "users past the pipe budget",
            ),
            (
                count(|f| matches!(f, Finding::SmallPipe(_))),
                "small pipe",
                "small pipes",
            ),
            (
                count(|f| matches!(f, Finding::OldRunc(_))),
                "old runc process",
                "old runc processes",
            ),
            (
                count(|f| matches!(f, Finding::PidsNearMax(_))),
                "cgroup near pids.max",
                "cgroups near pids.max",
            ),
            (
                count(|f| matches!(f, Finding::ShimRuncChild(_))),
                "shim waiting on an old runc",
                "shims waiting on an old runc",
            ),
            (
                count(|f| matches!(f, Finding::ShimZombieChild(_))),
                "unreaped shim child",
                "unreaped shim children",
            ),
        ];
        let listed: Vec<String> = parts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, one, many)| plural(*n, one, many))
            .collect();
        format!(
            "{}: {}",
            plural(self.findings.len(), "finding", "findings"),
            listed.join(", ")
        )
    }
}

fn runc_text(r: &OldRunc) -> String {
    let mut s = String::new();
    let what = match (&r.verb, &r.container_id) {
        (Some(v), Some(id)) => format!("runc {v} {id}"),
        (Some(v), None) => format!("runc {v}"),
        (None, Some(id)) => format!("runc {id}"),
        (None, None) => r.comm.clone(),
    };
    let ns = r
        .namespace
        .as_ref()
        .map(|n| format!(" (namespace {n})"))
        .unwrap_or_default();
    let thread = r
        .wchan_tid
        .map(|t| format!(" (thread {t})"))
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "  pid {} {what}{ns}: running for {}, state {}, in {}{thread}{}",
        r.pid,
        fmt_age(r.age_seconds),
        r.state,
        opt(&r.wchan),
        r.parent
            .as_ref()
            .map(|p| format!(", parent pid {} {}", p.pid, p.program))
            .unwrap_or_default()
    );
    for b in &r.blocked_on {
        let readers = if b.readers.is_empty() {
            "nobody holds the read end".to_string()
        } else {
            let list: Vec<String> = b.readers.iter().map(Holder::text).collect();
            format!("read end held by {}", list.join(", "))
        };
        let _ = writeln!(
            s,
            "    writing fd {} pipe:[{}]: {} of {} bytes unread; {readers}",
            b.fd,
            b.inode,
            opt(&b.unread_bytes),
            opt(&b.capacity_bytes)
        );
    }
    // The root cgroup says nothing (runc itself usually runs in its shim's cgroup).
    if let Some(cg) = r.cgroup.as_ref().filter(|c| *c != "/") {
        let _ = writeln!(s, "    cgroup {cg}");
    }
    if let Some(h) = &r.hint {
        let _ = writeln!(s, "    {h}");
    }
    s
}
