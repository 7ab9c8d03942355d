//! The per-user pipe budget and the small pipes it produces.
//!
//! The kernel charges every pipe's buffer slots (pages) to the user that created it. Once a user's
//! total reaches `fs.pipe-user-pages-soft`, a new pipe of an unprivileged creator (one without
//! `CAP_SYS_RESOURCE` or `CAP_SYS_ADMIN`, on Linux 4.9 and later; anyone before) gets the minimum
//! (one page, two since 5.14) instead of 16: the pipe of the case study, which a 4 KiB crash dump
//! fills. At `fs.pipe-user-pages-hard` pipe creation fails. `0` means no limit.
//!
//! The creator is not visible in `/proc`; a pipe is attributed to the real uid of the lowest pid
//! that holds its write end (the creator usually keeps one end, and a writer is who needs the
//! space), else of its lowest-pid holder. Only anonymous pipes (`pipe:[inode]`) are counted:
//! named FIFOs are charged the same way, but opening one by path is not side-effect free.

use std::collections::BTreeMap;
use std::fs;

use serde::{Deserialize, Serialize};

use super::probe::PipeState;
use super::procfs::{Access, ProcTable};
use super::report::{Finding, Holder, SmallPipe};
use super::{DoctorError, Host, Scope};

/// The kernel's default pipe: 16 buffer slots (`PIPE_DEF_BUFFERS`).
pub const DEFAULT_PIPE_PAGES: u64 = 16;
/// A user at this share of the soft limit is shown as a warning (not yet a finding).
pub const WARN_RATIO: f64 = 0.8;

/// One pipe and who holds it.
#[derive(Clone, Debug)]
pub struct PipeInfo {
    pub inode: u64,
    /// `(pid, fd, access)`, sorted by pid then fd.
    pub holders: Vec<(i32, i32, Access)>,
    /// `None` when no holder's descriptor could be measured.
    pub state: Option<PipeState>,
    /// The uid the pipe is attributed to.
    pub uid: Option<u32>,
}

impl PipeInfo {
    pub fn readers(&self) -> impl Iterator<Item = &(i32, i32, Access)> {
        self.holders.iter().filter(|h| h.2.reads())
    }
}

/// Every anonymous pipe open in any process, by inode.
pub struct Pipes {
    pub by_inode: BTreeMap<u64, PipeInfo>,
    unmeasured: usize,
}

impl Pipes {
    pub fn notes(&self) -> Vec<String> {
        if self.unmeasured == 0 {
            return Vec::new();
        }
        vec![format!(
            "{} pipe(s) could not be measured (closed meanwhile, or no permission): not counted",
            self.unmeasured
        )]
    }
}

/// Collects the pipes of every process and measures each once, through a writer if possible.
pub fn inventory(host: &Host, procs: &ProcTable) -> Pipes {
    let mut by_inode: BTreeMap<u64, PipeInfo> = BTreeMap::new();
    for p in procs.iter() {
        for fd in &p.pipes {
            by_inode
                .entry(fd.inode)
                .or_insert_with(|| PipeInfo {
                    inode: fd.inode,
                    holders: Vec::new(),
                    state: None,
                    uid: None,
                })
                .holders
                .push((p.pid, fd.fd, fd.access));
        }
    }
    let mut unmeasured = 0;
    for info in by_inode.values_mut() {
        info.holders.sort_by_key(|h| (h.0, h.1));
        // Writers first (they are who the attribution names), then the rest, each by pid.
        let mut order: Vec<&(i32, i32, Access)> = info.holders.iter().collect();
        order.sort_by_key(|h| (!h.2.writes(), h.0, h.1));
        info.uid = order
            .first()
            .and_then(|h| procs.get(h.0))
            .and_then(|p| p.uid);
        info.state = order
            .iter()
            .find_map(|h| host.probe.probe(&host.proc_root, h.0, h.1, info.inode).ok());
        unmeasured += usize::from(info.state.is_none());
    }
    Pipes {
        by_inode,
        unmeasured,
    }
}

/// Where one user stands against the soft limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetStatus {
    /// Below 80 % of the soft limit.
    Ok,
    /// At 80 % or more: a few more containers and new pipes shrink.
    Warning,
    /// At or past the soft limit: new pipes of unprivileged creators get the minimum.
    Exhausted,
    /// `pipe-user-pages-soft` is 0, or could not be read.
    Unlimited,
}

/// One user's pipes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserPipes {
    pub uid: u32,
    pub pipes: usize,
    pub pages: u64,
    /// `pages` as a percentage of the soft limit, when there is one.
    pub percent_of_soft: Option<f64>,
    pub status: BudgetStatus,
}

/// The `pipe_budget` object of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PipeBudget {
    /// `fs.pipe-user-pages-soft`; `None` when the kernel has no such sysctl (before 4.5).
    pub soft_limit_pages: Option<u64>,
    /// `fs.pipe-user-pages-hard`.
    pub hard_limit_pages: Option<u64>,
    pub page_size: u64,
    /// Pipes seen (distinct inodes) and how many of them could not be measured.
    pub pipes: usize,
    pub pipes_unmeasured: usize,
    /// By uid, largest first.
    pub users: Vec<UserPipes>,
}

fn read_sysctl(host: &Host, name: &str) -> Result<Option<u64>, DoctorError> {
    let path = host.proc_root.join("sys/fs").join(name);
    match fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| DoctorError::Malformed {
                path,
                what: format!("expected a number, got {:?}", text.trim()),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(DoctorError::Read { path, source }),
    }
}

/// The sysctls and each user's total.
pub fn budget(host: &Host, pipes: &Pipes) -> Result<PipeBudget, DoctorError> {
    let soft = read_sysctl(host, "pipe-user-pages-soft")?;
    let hard = read_sysctl(host, "pipe-user-pages-hard")?;
    let mut per_uid: BTreeMap<u32, (usize, u64)> = BTreeMap::new();
    for info in pipes.by_inode.values() {
        let (Some(uid), Some(state)) = (info.uid, info.state) else {
            continue;
        };
        let e = per_uid.entry(uid).or_default();
        e.0 += 1;
        e.1 += state.capacity.div_ceil(host.page_size);
    }
    let mut users: Vec<UserPipes> = per_uid
        .into_iter()
        .map(|(uid, (count, pages))| {
            let limit = soft.filter(|s| *s > 0);
            let status = match limit {
                None => BudgetStatus::Unlimited,
                Some(s) if pages >= s => BudgetStatus::Exhausted,
                Some(s) if pages as f64 >= WARN_RATIO * s as f64 => BudgetStatus::Warning,
                Some(_) => BudgetStatus::Ok,
            };
            UserPipes {
                uid,
                pipes: count,
                pages,
                percent_of_soft: limit.map(|s| round1(pages as f64 * 100.0 / s as f64)),
                status,
            }
        })
        .collect();
    users.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.uid.cmp(&b.uid)));
    Ok(PipeBudget {
        soft_limit_pages: soft,
        hard_limit_pages: hard,
        page_size: host.page_size,
        pipes: pipes.by_inode.len(),
        pipes_unmeasured: pipes.unmeasured,
        users,
    })
}

/// One decimal place, for percentages people read.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Exhausted budgets (of users with a process in scope) and pipes below the default size (with
/// a holder in scope).
pub fn findings(
    host: &Host,
    procs: &ProcTable,
    pipes: &Pipes,
    budget: &PipeBudget,
    scope: &Scope,
) -> Vec<Finding> {
    let mut out = Vec::new();
    for u in &budget.users {
        let in_scope = procs
            .iter()
            .any(|p| p.uid == Some(u.uid) && scope.has_pid(p.pid));
        if u.status == BudgetStatus::Exhausted && in_scope {
            out.push(Finding::PipeBudgetExhausted {
                uid: u.uid,
                pages: u.pages,
                pipes: u.pipes,
                soft_limit_pages: budget.soft_limit_pages.unwrap_or(0),
            });
        }
    }
    let default_bytes = DEFAULT_PIPE_PAGES * host.page_size;
    for info in pipes.by_inode.values() {
        let Some(state) = info.state else { continue };
        if state.capacity >= default_bytes || !info.holders.iter().any(|h| scope.has_pid(h.0)) {
            continue;
        }
        out.push(Finding::SmallPipe(SmallPipe {
            inode: info.inode,
            capacity_bytes: state.capacity,
            pages: state.capacity.div_ceil(host.page_size),
            unread_bytes: state.unread,
            uid: info.uid,
            holders: info
                .holders
                .iter()
                .map(|&(pid, fd, access)| Holder::new(procs, pid, fd, access))
                .collect(),
        }));
    }
    out
}
