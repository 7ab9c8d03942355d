//! `io.containerd.cgroups.v2.Metrics` from one cgroup v2 directory, field for field as
//! containerd's `cgroup2/manager.go` `Stat` fills it.
//!
//! Differences from Go, on purpose: a message is set only when one of its files could be read
//! (Go always sets pids, CPU, memory, IO and rdma, zero-filled); `cpu.stat` is read whenever it
//! exists (Go reads it only when `cpu` is in `cgroup.controllers`, yet the kernel keeps the usage
//! counters without the controller); hugetlb `failcnt` is the `max` count of
//! `hugetlb.<size>.events` (Go reads that keyed file as one number and always reports 0).

use std::{collections::HashMap, path::Path};

use containerd_shim::protos::{
    cgroups_v2::metrics::{
        CPUStat, HugeTlbStat, IOEntry, IOStat, MemoryEvents, MemoryStat, Metrics, PSIData,
        PSIStats, PidsStat, RdmaEntry, RdmaStat,
    },
    protobuf::MessageField,
};

use super::parse::{self, Max};

pub(super) fn metrics(dir: &Path) -> Metrics {
    let mut m = Metrics::new();
    m.pids = MessageField::from_option(pids(dir));
    m.cpu = MessageField::from_option(cpu(dir));
    m.memory = MessageField::from_option(memory(dir));
    m.memory_events = MessageField::from_option(memory_events(dir));
    m.io = MessageField::from_option(io(dir));
    m.rdma = MessageField::from_option(rdma(dir));
    m.hugetlb = hugetlb(dir);
    m
}

/// `max` means no limit and reads as `u64::MAX` in every v2 single-value file, as in Go.
fn single(dir: &Path, name: &str) -> Option<u64> {
    parse::single(&dir.join(name), Max::U64Max)
}

fn pids(dir: &Path) -> Option<PidsStat> {
    let current = single(dir, "pids.current");
    let limit = single(dir, "pids.max");
    if current.is_none() && limit.is_none() {
        return None;
    }
    Some(PidsStat {
        current: current.unwrap_or(0),
        limit: limit.unwrap_or(0),
        ..Default::default()
    })
}

fn cpu(dir: &Path) -> Option<CPUStat> {
    let stat = parse::flat_keyed(&dir.join("cpu.stat"));
    let psi = psi(&dir.join("cpu.pressure"));
    if stat.is_none() && psi.is_none() {
        return None;
    }
    let stat = stat.unwrap_or_default();
    let g = |k: &str| stat.get(k).copied().unwrap_or(0);
    Some(CPUStat {
        usage_usec: g("usage_usec"),
        user_usec: g("user_usec"),
        system_usec: g("system_usec"),
        nr_periods: g("nr_periods"),
        nr_throttled: g("nr_throttled"),
        throttled_usec: g("throttled_usec"),
        nr_bursts: g("nr_bursts"),
        burst_usec: g("burst_usec"),
        psi: MessageField::from_option(psi),
        ..Default::default()
    })
}

fn memory(dir: &Path) -> Option<MemoryStat> {
    let stat = parse::flat_keyed(&dir.join("memory.stat"));
    let usage = single(dir, "memory.current");
    let usage_limit = single(dir, "memory.max");
    let max_usage = single(dir, "memory.peak");
    let swap_usage = single(dir, "memory.swap.current");
    let swap_limit = single(dir, "memory.swap.max");
    let swap_max_usage = single(dir, "memory.swap.peak");
    let psi = psi(&dir.join("memory.pressure"));
    let singles = [
        usage,
        usage_limit,
        max_usage,
        swap_usage,
        swap_limit,
        swap_max_usage,
    ];
    if stat.is_none() && psi.is_none() && singles.iter().all(Option::is_none) {
        return None;
    }
    let stat = stat.unwrap_or_default();
    let g = |k: &str| stat.get(k).copied().unwrap_or(0);
    Some(MemoryStat {
        anon: g("anon"),
        file: g("file"),
        kernel_stack: g("kernel_stack"),
        slab: g("slab"),
        sock: g("sock"),
        shmem: g("shmem"),
        file_mapped: g("file_mapped"),
        file_dirty: g("file_dirty"),
        file_writeback: g("file_writeback"),
        anon_thp: g("anon_thp"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        slab_reclaimable: g("slab_reclaimable"),
        slab_unreclaimable: g("slab_unreclaimable"),
        pgfault: g("pgfault"),
        pgmajfault: g("pgmajfault"),
        workingset_refault: g("workingset_refault"),
        workingset_activate: g("workingset_activate"),
        workingset_nodereclaim: g("workingset_nodereclaim"),
        pgrefill: g("pgrefill"),
        pgscan: g("pgscan"),
        pgsteal: g("pgsteal"),
        pgactivate: g("pgactivate"),
        pgdeactivate: g("pgdeactivate"),
        pglazyfree: g("pglazyfree"),
        pglazyfreed: g("pglazyfreed"),
        thp_fault_alloc: g("thp_fault_alloc"),
        thp_collapse_alloc: g("thp_collapse_alloc"),
        usage: usage.unwrap_or(0),
        usage_limit: usage_limit.unwrap_or(0),
        max_usage: max_usage.unwrap_or(0),
        swap_usage: swap_usage.unwrap_or(0),
        swap_limit: swap_limit.unwrap_or(0),
        swap_max_usage: swap_max_usage.unwrap_or(0),
        psi: MessageField::from_option(psi),
        ..Default::default()
    })
}

/// Set only when `memory.events` has at least one counter, as in Go.
fn memory_events(dir: &Path) -> Option<MemoryEvents> {
    let kv: HashMap<String, u64> = parse::flat_keyed(&dir.join("memory.events"))?;
    if kv.is_empty() {
        return None;
    }
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    Some(MemoryEvents {
        low: g("low"),
        high: g("high"),
        max: g("max"),
        oom: g("oom"),
        oom_kill: g("oom_kill"),
        oom_group_kill: g("oom_group_kill"),
        ..Default::default()
    })
}

/// `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device. A line with a
/// bad device is skipped (Go stops at it), a bad value reads as 0.
fn io(dir: &Path) -> Option<IOStat> {
    let path = dir.join("io.stat");
    let lines = parse::nested_keyed(&path);
    let psi = psi(&dir.join("io.pressure"));
    if lines.is_none() && psi.is_none() {
        return None;
    }
    let usage = lines
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(dev, kv)| {
            let Some((major, minor)) = parse::major_minor(&dev) else {
                log::debug!("cgroup: {}: skipping device {dev:?}", path.display());
                return None;
            };
            let g = |k: &str| kv.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            Some(IOEntry {
                major,
                minor,
                rbytes: g("rbytes"),
                wbytes: g("wbytes"),
                rios: g("rios"),
                wios: g("wios"),
                ..Default::default()
            })
        })
        .collect();
    Some(IOStat {
        usage,
        psi: MessageField::from_option(psi),
        ..Default::default()
    })
}

fn rdma(dir: &Path) -> Option<RdmaStat> {
    let current = parse::rdma(&dir.join("rdma.current"));
    let limit = parse::rdma(&dir.join("rdma.max"));
    if current.is_none() && limit.is_none() {
        return None;
    }
    let entries = |v: Option<Vec<(String, u32, u32)>>| -> Vec<RdmaEntry> {
        v.unwrap_or_default()
            .into_iter()
            .map(|(device, hca_handles, hca_objects)| RdmaEntry {
                device,
                hca_handles,
                hca_objects,
                ..Default::default()
            })
            .collect()
    };
    Some(RdmaStat {
        current: entries(current),
        limit: entries(limit),
        ..Default::default()
    })
}

fn hugetlb(dir: &Path) -> Vec<HugeTlbStat> {
    parse::hugetlb_sizes(dir, "current")
        .into_iter()
        .map(|size| {
            let failcnt = parse::flat_keyed(&dir.join(format!("hugetlb.{size}.events")))
                .and_then(|kv| kv.get("max").copied());
            HugeTlbStat {
                current: single(dir, &format!("hugetlb.{size}.current")).unwrap_or(0),
                max: single(dir, &format!("hugetlb.{size}.max")).unwrap_or(0),
                failcnt: failcnt.unwrap_or(0),
                pagesize: size.clone(),
                ..Default::default()
            }
        })
        .collect()
}

fn psi(path: &Path) -> Option<PSIStats> {
    let (some, full) = parse::psi(path)?;
    let data = |p: Option<parse::Psi>| {
        p.map(|p| PSIData {
            avg10: p.avg10,
            avg60: p.avg60,
            avg300: p.avg300,
            total: p.total,
            ..Default::default()
        })
    };
    Some(PSIStats {
        some: MessageField::from_option(data(some)),
        full: MessageField::from_option(data(full)),
        ..Default::default()
    })
}
