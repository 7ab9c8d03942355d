//! `io.containerd.cgroups.v1.Metrics` from the per-controller directories of a cgroup v1 host,
//! field for field as containerd's `cgroup1` package fills it (`memory.go`, `cpuacct.go`,
//! `cpu.go`, `pids.go`, `blkio.go`, `hugetlb.go`, `rdma.go`).
//!
//! A message is set when at least one of its files could be read; the Go library sets a message
//! whenever the controller is mounted and drops it on any read error, so a present message here
//! may be partial where Go would have none.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

use containerd_shim::protos::{
    cgroups::metrics::{
        BlkIOEntry, BlkIOStat, CPUStat, CPUUsage, HugetlbStat, MemoryEntry, MemoryOomControl,
        MemoryStat, Metrics, PidsStat, RdmaEntry, RdmaStat, Throttle,
    },
    protobuf::MessageField,
};

use super::parse::{self, Max};

/// The controllers whose directories are looked up in `/proc/<pid>/cgroup`.
pub(super) const CONTROLLERS: &[&str] = &[
    "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb", "rdma",
];

/// `cpuacct.stat` counts in `USER_HZ` ticks, which the kernel fixes at 100 for userspace; the Go
/// library hard-codes the same (`ticks.go`).
const USER_HZ: u64 = 100;
const NANOS_PER_SEC: u64 = 1_000_000_000;

pub(super) fn metrics(dirs: &BTreeMap<&'static str, PathBuf>, proc_root: &Path) -> Metrics {
    let dir = |c: &str| dirs.get(c).map(PathBuf::as_path);
    let mut m = Metrics::new();
    if let Some(d) = dir("memory") {
        m.memory = MessageField::from_option(memory(d));
        m.memory_oom_control = MessageField::from_option(oom_control(d));
    }
    let usage = dir("cpuacct").and_then(cpu_usage);
    let throttling = dir("cpu").and_then(throttling);
    if usage.is_some() || throttling.is_some() {
        m.cpu = MessageField::some(CPUStat {
            usage: MessageField::from_option(usage),
            throttling: MessageField::from_option(throttling),
            ..Default::default()
        });
    }
    m.pids = MessageField::from_option(dir("pids").and_then(pids));
    m.blkio = MessageField::from_option(dir("blkio").and_then(|d| blkio(d, proc_root)));
    m.hugetlb = dir("hugetlb").map(hugetlb).unwrap_or_default();
    m.rdma = MessageField::from_option(dir("rdma").and_then(rdma));
    m
}

fn memory(dir: &Path) -> Option<MemoryStat> {
    let stat = parse::flat_keyed(&dir.join("memory.stat"));
    let usage = memory_entry(dir, "memory.");
    let swap = memory_entry(dir, "memory.memsw.");
    let kernel = memory_entry(dir, "memory.kmem.");
    let kernel_tcp = memory_entry(dir, "memory.kmem.tcp.");
    if stat.is_none()
        && usage.is_none()
        && swap.is_none()
        && kernel.is_none()
        && kernel_tcp.is_none()
    {
        return None;
    }
    let stat = stat.unwrap_or_default();
    let g = |k: &str| stat.get(k).copied().unwrap_or(0);
    Some(MemoryStat {
        cache: g("cache"),
        rss: g("rss"),
        rss_huge: g("rss_huge"),
        mapped_file: g("mapped_file"),
        dirty: g("dirty"),
        writeback: g("writeback"),
        pg_pg_in: g("pgpgin"),
        pg_pg_out: g("pgpgout"),
        pg_fault: g("pgfault"),
        pg_maj_fault: g("pgmajfault"),
        inactive_anon: g("inactive_anon"),
        active_anon: g("active_anon"),
        inactive_file: g("inactive_file"),
        active_file: g("active_file"),
        unevictable: g("unevictable"),
        hierarchical_memory_limit: g("hierarchical_memory_limit"),
        // The kernel calls it memsw; the message calls it swap.
        hierarchical_swap_limit: g("hierarchical_memsw_limit"),
        total_cache: g("total_cache"),
        total_rss: g("total_rss"),
        total_rss_huge: g("total_rss_huge"),
        total_mapped_file: g("total_mapped_file"),
        total_dirty: g("total_dirty"),
        total_writeback: g("total_writeback"),
        total_pg_pg_in: g("total_pgpgin"),
        total_pg_pg_out: g("total_pgpgout"),
        total_pg_fault: g("total_pgfault"),
        total_pg_maj_fault: g("total_pgmajfault"),
        total_inactive_anon: g("total_inactive_anon"),
        total_active_anon: g("total_active_anon"),
        total_inactive_file: g("total_inactive_file"),
        total_active_file: g("total_active_file"),
        total_unevictable: g("total_unevictable"),
        usage: MessageField::from_option(usage),
        swap: MessageField::from_option(swap),
        kernel: MessageField::from_option(kernel),
        kernel_tcp: MessageField::from_option(kernel_tcp),
        ..Default::default()
    })
}

/// `<prefix>usage_in_bytes`, `max_usage_in_bytes`, `failcnt`, `limit_in_bytes`; `None` when none
/// exists (no swap accounting, or a kernel without kmem files).
fn memory_entry(dir: &Path, prefix: &str) -> Option<MemoryEntry> {
    let f = |name: &str| parse::single(&dir.join(format!("{prefix}{name}")), Max::Zero);
    let usage = f("usage_in_bytes");
    let max = f("max_usage_in_bytes");
    let failcnt = f("failcnt");
    let limit = f("limit_in_bytes");
    if usage.is_none() && max.is_none() && failcnt.is_none() && limit.is_none() {
        return None;
    }
    Some(MemoryEntry {
        usage: usage.unwrap_or(0),
        max: max.unwrap_or(0),
        failcnt: failcnt.unwrap_or(0),
        limit: limit.unwrap_or(0),
        ..Default::default()
    })
}

fn oom_control(dir: &Path) -> Option<MemoryOomControl> {
    let kv = parse::flat_keyed(&dir.join("memory.oom_control"))?;
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    Some(MemoryOomControl {
        oom_kill_disable: g("oom_kill_disable"),
        under_oom: g("under_oom"),
        oom_kill: g("oom_kill"),
        ..Default::default()
    })
}

fn cpu_usage(dir: &Path) -> Option<CPUUsage> {
    let total = parse::single(&dir.join("cpuacct.usage"), Max::Zero);
    let stat = parse::flat_keyed(&dir.join("cpuacct.stat"));
    let per_cpu = parse::list(&dir.join("cpuacct.usage_percpu"));
    if total.is_none() && stat.is_none() && per_cpu.is_none() {
        return None;
    }
    let ticks = |k: &str| {
        stat.as_ref()
            .and_then(|s| s.get(k))
            .map_or(0, |&t| ticks_to_nanos(t))
    };
    Some(CPUUsage {
        total: total.unwrap_or(0),
        user: ticks("user"),
        kernel: ticks("system"),
        per_cpu: per_cpu.unwrap_or_default(),
        ..Default::default()
    })
}

/// Ticks to nanoseconds without overflow: a busy many-core host accrues enough ticks in a few
/// years to overflow `ticks * 1e9` in 64 bits.
fn ticks_to_nanos(ticks: u64) -> u64 {
    let nanos = u128::from(ticks) * u128::from(NANOS_PER_SEC) / u128::from(USER_HZ);
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

fn throttling(dir: &Path) -> Option<Throttle> {
    let kv = parse::flat_keyed(&dir.join("cpu.stat"))?;
    let g = |k: &str| kv.get(k).copied().unwrap_or(0);
    Some(Throttle {
        periods: g("nr_periods"),
        throttled_periods: g("nr_throttled"),
        throttled_time: g("throttled_time"),
        ..Default::default()
    })
}

fn pids(dir: &Path) -> Option<PidsStat> {
    let current = parse::single(&dir.join("pids.current"), Max::Zero);
    // `max` (no limit) reads as 0, as the Go library reports it.
    let limit = parse::single(&dir.join("pids.max"), Max::Zero);
    if current.is_none() && limit.is_none() {
        return None;
    }
    Some(PidsStat {
        current: current.unwrap_or(0),
        limit: limit.unwrap_or(0),
        ..Default::default()
    })
}

fn blkio(dir: &Path, proc_root: &Path) -> Option<BlkIOStat> {
    let devices = partitions(&proc_root.join("partitions"));
    let mut s = BlkIOStat::new();
    let mut read_any = false;
    // The CFQ scheduler's recursive files, read first when the kernel has them, as in `blkio.go`.
    if dir.join("blkio.io_serviced_recursive").exists() {
        let cfq = [
            ("sectors_recursive", &mut s.sectors_recursive),
            (
                "io_service_bytes_recursive",
                &mut s.io_service_bytes_recursive,
            ),
            ("io_serviced_recursive", &mut s.io_serviced_recursive),
            ("io_queued_recursive", &mut s.io_queued_recursive),
            (
                "io_service_time_recursive",
                &mut s.io_service_time_recursive,
            ),
            ("io_wait_time_recursive", &mut s.io_wait_time_recursive),
            ("io_merged_recursive", &mut s.io_merged_recursive),
            ("time_recursive", &mut s.io_time_recursive),
        ];
        for (name, entries) in cfq {
            read_any |= blkio_entries(&dir.join(format!("blkio.{name}")), &devices, entries);
        }
    }
    let found = s.io_service_bytes_recursive.len()
        + s.io_serviced_recursive.len()
        + s.io_queued_recursive.len()
        + s.io_service_time_recursive.len()
        + s.io_wait_time_recursive.len()
        + s.io_merged_recursive.len()
        + s.io_time_recursive.len()
        + s.sectors_recursive.len();
    // Devices without the CFQ scheduler (every device on kernels without CFQ) only count in the
    // throttle files; the Go library falls back to them the same way.
    if found == 0 {
        read_any |= blkio_entries(
            &dir.join("blkio.throttle.io_serviced"),
            &devices,
            &mut s.io_serviced_recursive,
        );
        read_any |= blkio_entries(
            &dir.join("blkio.throttle.io_service_bytes"),
            &devices,
            &mut s.io_service_bytes_recursive,
        );
    }
    read_any.then_some(s)
}

/// Appends the entries of one blkio file (`8:0 Read 4096` or `8:0 4096` per line, then
/// `Total 4096`); true if the file was read.
fn blkio_entries(
    path: &Path,
    devices: &HashMap<(u64, u64), String>,
    out: &mut Vec<BlkIOEntry>,
) -> bool {
    let Some(text) = parse::read(path) else {
        return false;
    };
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, value) = match fields.as_slice() {
            [] | ["Total", _] => continue,
            [dev, value] => (*dev, "", *value),
            [dev, op, value] => (*dev, *op, *value),
            _ => {
                log::debug!("cgroup: {}: skipping line {line:?}", path.display());
                continue;
            }
        };
        let (Some((major, minor)), Some(value)) =
            (parse::major_minor(dev), parse::parse_u64(value))
        else {
            log::debug!("cgroup: {}: skipping line {line:?}", path.display());
            continue;
        };
        out.push(BlkIOEntry {
            op: op.to_string(),
            device: devices.get(&(major, minor)).cloned().unwrap_or_default(),
            major,
            minor,
            value,
            ..Default::default()
        });
    }
    true
}

/// Device names by major and minor from `/proc/partitions` (`major minor #blocks name`), as
/// `/dev/<name>`; the first name of a device wins, as in `blkio.go`.
fn partitions(path: &Path) -> HashMap<(u64, u64), String> {
    let mut devices = HashMap::new();
    for line in parse::read(path).unwrap_or_default().lines() {
        // The header and the blank line after it fail to parse and are skipped.
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [major, minor, _blocks, name] = fields.as_slice() {
            if let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) {
                devices
                    .entry((major, minor))
                    .or_insert_with(|| format!("/dev/{name}"));
            }
        }
    }
    devices
}

fn hugetlb(dir: &Path) -> Vec<HugetlbStat> {
    parse::hugetlb_sizes(dir, "usage_in_bytes")
        .into_iter()
        .map(|size| {
            let f = |name: &str| {
                parse::single(&dir.join(format!("hugetlb.{size}.{name}")), Max::Zero).unwrap_or(0)
            };
            HugetlbStat {
                usage: f("usage_in_bytes"),
                max: f("max_usage_in_bytes"),
                failcnt: f("failcnt"),
                pagesize: size.clone(),
                ..Default::default()
            }
        })
        .collect()
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
