//! Fixture trees in a tempdir stand in for `/sys/fs/cgroup` and `/proc`, with file contents in the
//! format the kernel writes them. One root-only test (ignored by default) uses the host's real
//! cgroup v1 memory controller.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use containerd_shim::protos::{
    cgroups::metrics as m1,
    cgroups_v2::metrics as m2,
    protobuf::{well_known_types::any::Any, Message},
};
use tempfile::TempDir;

use super::*;

fn put(dir: &Path, name: &str, content: &str) {
    fs::create_dir_all(dir).expect("create fixture dir");
    fs::write(dir.join(name), content).expect("write fixture file");
}

fn decode_v1(any: &Any) -> m1::Metrics {
    assert_eq!(any.type_url, "io.containerd.cgroups.v1.Metrics");
    m1::Metrics::parse_from_bytes(&any.value).expect("decode v1 metrics")
}

fn decode_v2(any: &Any) -> m2::Metrics {
    assert_eq!(any.type_url, "io.containerd.cgroups.v2.Metrics");
    m2::Metrics::parse_from_bytes(&any.value).expect("decode v2 metrics")
}

const V1_PID: u32 = 4242;
const V2_PID: u32 = 77;

/// A cgroup v1 host as a distribution lays it out: one mount per controller, `cpu,cpuacct`
/// co-mounted with a symlink per name, a cgroup2 mount at `unified` (hybrid), and the
/// container at `/ns/ctr` in each.
struct V1Fixture {
    tmp: TempDir,
}

impl V1Fixture {
    fn new() -> V1Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = V1Fixture { tmp };
        for c in ["memory", "cpu,cpuacct", "pids", "blkio", "hugetlb"] {
            fs::create_dir_all(f.root().join(c)).expect("mount dir");
        }
        std::os::unix::fs::symlink("cpu,cpuacct", f.root().join("cpu")).expect("symlink");
        std::os::unix::fs::symlink("cpu,cpuacct", f.root().join("cpuacct")).expect("symlink");
        put(&f.root().join("unified"), "cgroup.controllers", "");
        put(
            &f.proc().join(V1_PID.to_string()),
            "cgroup",
            "12:hugetlb:/ns/ctr\n\
             11:pids:/ns/ctr\n\
             10:freezer:/ns/ctr\n\
             7:memory:/ns/ctr\n\
             4:cpu,cpuacct:/ns/ctr\n\
             3:blkio:/ns/ctr\n\
             1:name=systemd:/ns/ctr\n\
             0::/ns/ctr\n",
        );
        put(
            &f.proc(),
            "partitions",
            "major minor  #blocks  name\n\
             \n\
             \x20  8        0  488386584 sda\n\
             \x20  8        1     524288 sda1\n\
             \x20253        0  104857600 dm-0\n",
        );
        f
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("sys/fs/cgroup")
    }

    fn proc(&self) -> PathBuf {
        self.tmp.path().join("proc")
    }

    fn ctr(&self, controller: &str) -> PathBuf {
        self.root().join(controller).join("ns/ctr")
    }

    fn fs(&self) -> CgroupFs {
        CgroupFs::with_roots(self.root(), self.proc())
    }

    fn cgroup(&self) -> ContainerCgroup {
        self.fs().for_pid(V1_PID).expect("for_pid")
    }

    /// Every controller's files, with values copied from a 5.x kernel.
    fn populate(&self) {
        let mem = self.ctr("memory");
        put(
            &mem,
            "memory.stat",
            "cache 9449472\nrss 5197824\nrss_huge 2097152\nshmem 9084928\nmapped_file 7593984\n\
             dirty 94208\nwriteback 4096\nworkingset_refault_anon 0\nswap 0\npgpgin 36138\n\
             pgpgout 32562\npgfault 40591\npgmajfault 17\ninactive_anon 8192\n\
             active_anon 1531904\ninactive_file 28672\nactive_file 335872\n\
             unevictable 12750848\nhierarchical_memory_limit 536870912\n\
             hierarchical_memsw_limit 1073741824\ntotal_cache 2779881472\n\
             total_rss 226078720\ntotal_rss_huge 4194304\ntotal_shmem 9084928\n\
             total_mapped_file 208326656\ntotal_dirty 111996928\ntotal_writeback 8192\n\
             total_swap 0\ntotal_pgpgin 22489222\ntotal_pgpgout 21849750\n\
             total_pgfault 23781933\ntotal_pgmajfault 9257\ntotal_inactive_anon 220803072\n\
             total_active_anon 1585152\ntotal_inactive_file 1177427968\n\
             total_active_file 1593368576\ntotal_unevictable 12750849\n",
        );
        put(&mem, "memory.usage_in_bytes", "14647296\n");
        put(&mem, "memory.max_usage_in_bytes", "20971520\n");
        put(&mem, "memory.failcnt", "3\n");
        put(&mem, "memory.limit_in_bytes", "536870912\n");
        put(&mem, "memory.memsw.usage_in_bytes", "14650000\n");
        put(&mem, "memory.memsw.max_usage_in_bytes", "20980000\n");
        put(&mem, "memory.memsw.failcnt", "1\n");
        put(&mem, "memory.memsw.limit_in_bytes", "1073741824\n");
        put(&mem, "memory.kmem.usage_in_bytes", "1200128\n");
        put(&mem, "memory.kmem.max_usage_in_bytes", "1500000\n");
        put(&mem, "memory.kmem.failcnt", "0\n");
        put(&mem, "memory.kmem.limit_in_bytes", "9223372036854771712\n");
        put(&mem, "memory.kmem.tcp.usage_in_bytes", "0\n");
        put(&mem, "memory.kmem.tcp.max_usage_in_bytes", "4096\n");
        put(&mem, "memory.kmem.tcp.failcnt", "0\n");
        put(
            &mem,
            "memory.kmem.tcp.limit_in_bytes",
            "9223372036854771712\n",
        );
        put(
            &mem,
            "memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
        );

        let cpu = self.ctr("cpu,cpuacct");
        put(&cpu, "cpuacct.usage", "688957767169\n");
        put(&cpu, "cpuacct.stat", "user 56594\nsystem 12301\n");
        put(&cpu, "cpuacct.usage_percpu", "307806491789 381151275380 \n");
        put(
            &cpu,
            "cpu.stat",
            "nr_periods 120\nnr_throttled 7\nthrottled_time 8123456\nnr_bursts 0\nburst_time 0\n",
        );

        let pids = self.ctr("pids");
        put(&pids, "pids.current", "5\n");
        put(&pids, "pids.max", "max\n");

        let blkio = self.ctr("blkio");
        let rw = |r: u64, w: u64| {
            format!(
                "8:0 Read {r}\n8:0 Write {w}\n8:0 Sync {w}\n8:0 Async {r}\n8:0 Discard 0\n\
                 8:0 Total {}\nTotal {}\n",
                r + w,
                r + w
            )
        };
        put(&blkio, "blkio.io_service_bytes_recursive", &rw(1024, 2048));
        put(&blkio, "blkio.io_serviced_recursive", &rw(10, 20));
        put(&blkio, "blkio.io_queued_recursive", &rw(0, 1));
        put(&blkio, "blkio.io_service_time_recursive", &rw(500, 600));
        put(&blkio, "blkio.io_wait_time_recursive", &rw(70, 80));
        put(&blkio, "blkio.io_merged_recursive", &rw(2, 3));
        put(&blkio, "blkio.time_recursive", "8:0 12345\n");
        put(&blkio, "blkio.sectors_recursive", "8:0 4096\n253:0 8\n");
        put(&blkio, "blkio.throttle.io_serviced", &rw(9999, 9999));

        let huge = self.ctr("hugetlb");
        put(&huge, "hugetlb.2MB.usage_in_bytes", "4194304\n");
        put(&huge, "hugetlb.2MB.max_usage_in_bytes", "6291456\n");
        put(&huge, "hugetlb.2MB.failcnt", "2\n");
        put(&huge, "hugetlb.2MB.limit_in_bytes", "8388608\n");
        put(&huge, "hugetlb.2MB.rsvd.usage_in_bytes", "77\n");
        put(&huge, "hugetlb.2MB.rsvd.max_usage_in_bytes", "77\n");
        put(&huge, "hugetlb.1GB.usage_in_bytes", "0\n");
        put(&huge, "hugetlb.1GB.max_usage_in_bytes", "1073741824\n");
        put(&huge, "hugetlb.1GB.failcnt", "0\n");
        put(&huge, "hugetlb.1GB.limit_in_bytes", "9223372036854771712\n");
    }
}

#[test]
fn cgroup_v1_is_detected_on_a_hybrid_host() {
    let f = V1Fixture::new();
    assert_eq!(f.fs().hierarchy(), Hierarchy::V1);
    assert_eq!(f.cgroup().hierarchy(), Hierarchy::V1);
}

#[test]
fn cgroup_v1_metrics_match_the_files() {
    let f = V1Fixture::new();
    f.populate();
    let m = decode_v1(&f.cgroup().metrics_any().expect("metrics"));

    let mem = m.memory.as_ref().expect("memory");
    assert_eq!(mem.cache, 9449472);
    assert_eq!(mem.rss, 5197824);
    assert_eq!(mem.rss_huge, 2097152);
    assert_eq!(mem.mapped_file, 7593984);
    assert_eq!(mem.dirty, 94208);
    assert_eq!(mem.writeback, 4096);
    assert_eq!(mem.pg_pg_in, 36138);
    assert_eq!(mem.pg_pg_out, 32562);
    assert_eq!(mem.pg_fault, 40591);
    assert_eq!(mem.pg_maj_fault, 17);
    assert_eq!(mem.inactive_anon, 8192);
    assert_eq!(mem.active_anon, 1531904);
    assert_eq!(mem.inactive_file, 28672);
    assert_eq!(mem.active_file, 335872);
    assert_eq!(mem.unevictable, 12750848);
    assert_eq!(mem.hierarchical_memory_limit, 536870912);
    assert_eq!(mem.hierarchical_swap_limit, 1073741824);
    assert_eq!(mem.total_cache, 2779881472);
    assert_eq!(mem.total_rss, 226078720);
    assert_eq!(mem.total_rss_huge, 4194304);
    assert_eq!(mem.total_mapped_file, 208326656);
    assert_eq!(mem.total_dirty, 111996928);
    assert_eq!(mem.total_writeback, 8192);
    assert_eq!(mem.total_pg_pg_in, 22489222);
    assert_eq!(mem.total_pg_pg_out, 21849750);
    assert_eq!(mem.total_pg_fault, 23781933);
    assert_eq!(mem.total_pg_maj_fault, 9257);
    assert_eq!(mem.total_inactive_anon, 220803072);
    assert_eq!(mem.total_active_anon, 1585152);
    assert_eq!(mem.total_inactive_file, 1177427968);
    assert_eq!(mem.total_active_file, 1593368576);
    assert_eq!(mem.total_unevictable, 12750849);
    let entry = |e: &m1::MemoryEntry| (e.usage, e.max, e.failcnt, e.limit);
    assert_eq!(
        entry(&mem.usage),
        (14647296, 20971520, 3, 536870912),
        "usage"
    );
    assert_eq!(
        entry(&mem.swap),
        (14650000, 20980000, 1, 1073741824),
        "swap"
    );
    assert_eq!(
        entry(&mem.kernel),
        (1200128, 1500000, 0, 9223372036854771712),
        "kernel"
    );
    assert_eq!(
        entry(&mem.kernel_tcp),
        (0, 4096, 0, 9223372036854771712),
        "kernel_tcp"
    );
    let oom = m.memory_oom_control.as_ref().expect("oom control");
    assert_eq!(
        (oom.oom_kill_disable, oom.under_oom, oom.oom_kill),
        (0, 0, 3)
    );

    let cpu = m.cpu.as_ref().expect("cpu");
    assert_eq!(cpu.usage.total, 688957767169);
    // USER_HZ ticks to nanoseconds: 100 ticks a second.
    assert_eq!(cpu.usage.user, 56594 * 10_000_000);
    assert_eq!(cpu.usage.kernel, 12301 * 10_000_000);
    assert_eq!(cpu.usage.per_cpu, vec![307806491789, 381151275380]);
    assert_eq!(cpu.throttling.periods, 120);
    assert_eq!(cpu.throttling.throttled_periods, 7);
    assert_eq!(cpu.throttling.throttled_time, 8123456);

    let pids = m.pids.as_ref().expect("pids");
    assert_eq!((pids.current, pids.limit), (5, 0), "`max` reads as 0 on v1");

    let blkio = m.blkio.as_ref().expect("blkio");
    let e = |op: &str, value: u64| m1::BlkIOEntry {
        op: op.into(),
        device: "/dev/sda".into(),
        major: 8,
        minor: 0,
        value,
        ..Default::default()
    };
    assert_eq!(
        blkio.io_service_bytes_recursive,
        vec![
            e("Read", 1024),
            e("Write", 2048),
            e("Sync", 2048),
            e("Async", 1024),
            e("Discard", 0),
            e("Total", 3072),
        ]
    );
    assert_eq!(blkio.io_serviced_recursive[0], e("Read", 10));
    assert_eq!(
        blkio.io_serviced_recursive.len(),
        6,
        "CFQ wins over throttle"
    );
    assert_eq!(blkio.io_queued_recursive[1], e("Write", 1));
    assert_eq!(blkio.io_service_time_recursive[0], e("Read", 500));
    assert_eq!(blkio.io_wait_time_recursive[1], e("Write", 80));
    assert_eq!(blkio.io_merged_recursive[5], e("Total", 5));
    assert_eq!(blkio.io_time_recursive, vec![e("", 12345)]);
    assert_eq!(
        blkio.sectors_recursive,
        vec![
            e("", 4096),
            m1::BlkIOEntry {
                device: "/dev/dm-0".into(),
                major: 253,
                minor: 0,
                value: 8,
                ..Default::default()
            }
        ]
    );

    let huge: Vec<_> = m
        .hugetlb
        .iter()
        .map(|h| (h.pagesize.as_str(), h.usage, h.max, h.failcnt))
        .collect();
    assert_eq!(
        huge,
        vec![("2MB", 4194304, 6291456, 2), ("1GB", 0, 1073741824, 0)]
    );
    assert!(m.rdma.is_none(), "no rdma controller in the fixture");
}

#[test]
fn cgroup_v1_blkio_falls_back_to_throttle_files_without_cfq() {
    let f = V1Fixture::new();
    let blkio = f.ctr("blkio");
    put(
        &blkio,
        "blkio.throttle.io_serviced",
        "8:0 Read 5\n8:0 Write 6\n8:0 Total 11\nTotal 11\n",
    );
    put(
        &blkio,
        "blkio.throttle.io_service_bytes",
        "8:1 Read 4096\n8:1 Total 4096\nTotal 4096\n",
    );
    let m = decode_v1(&f.cgroup().metrics_any().expect("metrics"));
    let blkio = m.blkio.as_ref().expect("blkio");
    let ops: Vec<_> = blkio
        .io_serviced_recursive
        .iter()
        .map(|e| (e.device.as_str(), e.op.as_str(), e.value))
        .collect();
    assert_eq!(
        ops,
        vec![
            ("/dev/sda", "Read", 5),
            ("/dev/sda", "Write", 6),
            ("/dev/sda", "Total", 11)
        ]
    );
    assert_eq!(blkio.io_service_bytes_recursive[0].device, "/dev/sda1");
    assert_eq!(blkio.io_service_bytes_recursive[0].value, 4096);
    assert!(blkio.io_queued_recursive.is_empty());
}

#[test]
fn cgroup_v1_finds_a_comount_by_its_joined_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("cg");
    let proc = tmp.path().join("proc");
    let ctr = root.join("cpu,cpuacct/kubepods/pod1/ctr");
    put(&ctr, "cpuacct.usage", "77\n");
    put(
        &proc.join("9"),
        "cgroup",
        "4:cpu,cpuacct:/kubepods/pod1/ctr\n",
    );
    let cg = CgroupFs::with_roots(&root, &proc)
        .for_pid(9)
        .expect("for_pid");
    let m = decode_v1(&cg.metrics_any().expect("metrics"));
    assert_eq!(m.cpu.usage.total, 77);
    assert!(m.cpu.throttling.is_none(), "no cpu.stat in the fixture");
    assert!(m.memory.is_none());
}

#[test]
fn cgroup_v1_malformed_files_leave_fields_out() {
    let f = V1Fixture::new();
    let mem = f.ctr("memory");
    fs::create_dir_all(&mem).expect("dir");
    fs::write(
        mem.join("memory.stat"),
        b"cache\nrss abc\ndirty 5 6\n\xff\xfe junk\n\nmapped_file 7\npgfault -3\n",
    )
    .expect("write");
    put(&mem, "memory.usage_in_bytes", "garbage\n");
    put(&mem, "memory.limit_in_bytes", "");
    put(
        &mem,
        "memory.oom_control",
        "oom_kill_disable\nunder_oom 1\n",
    );
    let cpu = f.ctr("cpu,cpuacct");
    put(&cpu, "cpuacct.usage_percpu", "1 x 3\n");
    put(&cpu, "cpuacct.usage", "18446744073709551616\n");
    let pids = f.ctr("pids");
    put(&pids, "pids.current", "\n");
    let blkio = f.ctr("blkio");
    put(
        &blkio,
        "blkio.throttle.io_serviced",
        "8:0 Read\nx:y Read 5\n8:0 Read 12\n1 2 3 4 5\n8:0 Write 1x\n",
    );
    let huge = f.ctr("hugetlb");
    put(&huge, "hugetlb.2MB.usage_in_bytes", "4096\n");
    // A directory where a file should be: read fails with EISDIR, not NotFound.
    fs::create_dir_all(huge.join("hugetlb.2MB.failcnt")).expect("dir");
    fs::remove_file(f.proc().join("partitions")).expect("remove partitions");

    let m = decode_v1(&f.cgroup().metrics_any().expect("metrics"));
    let mstat = m.memory.as_ref().expect("memory.stat was readable");
    assert_eq!(mstat.mapped_file, 7);
    assert_eq!(mstat.pg_fault, 0, "negative reads as 0");
    assert_eq!((mstat.cache, mstat.rss, mstat.dirty), (0, 0, 0));
    assert!(mstat.usage.is_none(), "no usable memory.* entry");
    assert!(mstat.swap.is_none() && mstat.kernel.is_none());
    assert_eq!(m.memory_oom_control.under_oom, 1);
    assert_eq!(m.cpu.usage.total, 0);
    assert!(m.cpu.usage.per_cpu.is_empty(), "a bad entry drops the list");
    assert!(m.pids.is_none());
    let io = &m.blkio.io_serviced_recursive;
    assert_eq!(io.len(), 1);
    assert_eq!((io[0].op.as_str(), io[0].value), ("Read", 12));
    assert_eq!(io[0].device, "", "no /proc/partitions");
    assert_eq!(m.hugetlb.len(), 1);
    assert_eq!((m.hugetlb[0].usage, m.hugetlb[0].failcnt), (4096, 0));
}

#[test]
fn cgroup_v1_missing_controllers_are_absent() {
    let f = V1Fixture::new();
    put(&f.ctr("pids"), "pids.current", "1\n");
    let m = decode_v1(&f.cgroup().metrics_any().expect("metrics"));
    assert_eq!(m.pids.current, 1);
    assert!(m.memory.is_none());
    assert!(m.memory_oom_control.is_none());
    assert!(m.cpu.is_none());
    assert!(m.blkio.is_none());
    assert!(m.hugetlb.is_empty());
}

#[test]
fn cgroup_v1_gone_when_no_directory_is_left() {
    let f = V1Fixture::new();
    let err = f.cgroup().metrics_any().expect_err("gone");
    assert!(
        matches!(err, CgroupError::Gone { pid: V1_PID, .. }),
        "{err}"
    );
}

#[test]
fn cgroup_for_pid_reports_the_pid_and_file() {
    let f = V1Fixture::new();
    let err = f.fs().for_pid(1).expect_err("no such pid");
    assert!(
        matches!(err, CgroupError::ProcCgroup { pid: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("1/cgroup"), "{err}");

    put(&f.proc().join("2"), "cgroup", "1:name=systemd:/x\n0::/x\n");
    let err = f.fs().for_pid(2).expect_err("no v1 controller");
    assert!(matches!(err, CgroupError::NoCgroup { pid: 2, .. }), "{err}");
}

/// A cgroup v2 host with the container at `/system.slice/ctr.scope`.
struct V2Fixture {
    tmp: TempDir,
}

impl V2Fixture {
    fn new() -> V2Fixture {
        let f = V2Fixture {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        put(
            &f.root(),
            "cgroup.controllers",
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        );
        put(&f.dir(), "cgroup.controllers", "cpu io memory pids\n");
        put(
            &f.tmp.path().join("proc").join(V2_PID.to_string()),
            "cgroup",
            "0::/system.slice/ctr.scope\n",
        );
        f
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("cg")
    }

    fn dir(&self) -> PathBuf {
        self.root().join("system.slice/ctr.scope")
    }

    fn cgroup(&self) -> ContainerCgroup {
        CgroupFs::with_roots(self.root(), self.tmp.path().join("proc"))
            .for_pid(V2_PID)
            .expect("for_pid")
    }

    /// Every file, with values from a 6.x kernel.
    fn populate(&self) {
        let d = self.dir();
        put(&d, "memory.current", "12345678\n");
        put(&d, "memory.max", "max\n");
        put(&d, "memory.peak", "23456789\n");
        put(&d, "memory.swap.current", "4096\n");
        put(&d, "memory.swap.max", "1073741824\n");
        put(
            &d,
            "memory.stat",
            "anon 5058560\nfile 7061504\nkernel 1146880\nkernel_stack 98304\npagetables 196608\n\
             sec_pagetables 0\npercpu 2880\nsock 4096\nvmalloc 0\nshmem 8192\nzswap 0\n\
             zswapped 0\nfile_mapped 3121152\nfile_dirty 12288\nfile_writeback 16384\n\
             swapcached 0\nanon_thp 2097152\nfile_thp 0\nshmem_thp 0\ninactive_anon 4976640\n\
             active_anon 90112\ninactive_file 5799936\nactive_file 1253376\nunevictable 4\n\
             slab_reclaimable 397208\nslab_unreclaimable 396512\nslab 793720\n\
             workingset_refault_anon 0\nworkingset_refault_file 11\nworkingset_refault 12\n\
             workingset_activate 13\nworkingset_restore_anon 0\nworkingset_nodereclaim 14\n\
             pgscan 15\npgsteal 16\npgrefill 17\npgactivate 18\npgdeactivate 19\n\
             pglazyfree 20\npglazyfreed 21\nthp_fault_alloc 22\nthp_collapse_alloc 23\n\
             pgfault 8934\npgmajfault 41\n",
        );
        put(
            &d,
            "memory.events",
            "low 1\nhigh 2\nmax 12\noom 3\noom_kill 1\noom_group_kill 0\n",
        );
        put(
            &d,
            "memory.pressure",
            "some avg10=0.12 avg60=0.05 avg300=0.01 total=4521\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=1234\n",
        );
        put(
            &d,
            "cpu.stat",
            "usage_usec 4403870\nuser_usec 2944327\nsystem_usec 1459543\n\
             core_sched.force_idle_usec 0\nnr_periods 10\nnr_throttled 2\n\
             throttled_usec 3000\nnr_bursts 1\nburst_usec 500\n",
        );
        put(
            &d,
            "cpu.pressure",
            "some avg10=1.50 avg60=0.75 avg300=0.25 total=99\n",
        );
        put(&d, "pids.current", "3\n");
        put(&d, "pids.max", "100\n");
        put(
            &d,
            "io.stat",
            "8:0 rbytes=1459200 wbytes=314773504 rios=192 wios=353 dbytes=0 dios=0\n\
             253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
        );
        put(&d, "hugetlb.2MB.current", "2097152\n");
        put(&d, "hugetlb.2MB.max", "max\n");
        put(&d, "hugetlb.2MB.events", "max 4\n");
        put(&d, "hugetlb.2MB.events.local", "max 4\n");
        put(&d, "hugetlb.2MB.rsvd.current", "0\n");
        put(&d, "hugetlb.2MB.rsvd.max", "max\n");
        put(&d, "hugetlb.1GB.current", "0\n");
        put(&d, "hugetlb.1GB.max", "0\n");
        put(&d, "hugetlb.1GB.events", "max 0\n");
        put(&d, "rdma.current", "mlx4_0 hca_handle=2 hca_object=2000\n");
        put(&d, "rdma.max", "mlx4_0 hca_handle=max hca_object=5000\n");
    }
}

#[test]
fn cgroup_v2_is_detected_from_the_root() {
    let f = V2Fixture::new();
    assert_eq!(
        CgroupFs::with_roots(f.root(), "/proc").hierarchy(),
        Hierarchy::V2
    );
    assert_eq!(f.cgroup().hierarchy(), Hierarchy::V2);
}

#[test]
fn cgroup_v2_metrics_match_the_files() {
    let f = V2Fixture::new();
    f.populate();
    let m = decode_v2(&f.cgroup().metrics_any().expect("metrics"));

    let pids = m.pids.as_ref().expect("pids");
    assert_eq!((pids.current, pids.limit), (3, 100));

    let cpu = m.cpu.as_ref().expect("cpu");
    assert_eq!(cpu.usage_usec, 4403870);
    assert_eq!(cpu.user_usec, 2944327);
    assert_eq!(cpu.system_usec, 1459543);
    assert_eq!(cpu.nr_periods, 10);
    assert_eq!(cpu.nr_throttled, 2);
    assert_eq!(cpu.throttled_usec, 3000);
    assert_eq!(cpu.nr_bursts, 1);
    assert_eq!(cpu.burst_usec, 500);
    assert_eq!(cpu.psi.some.avg10, 1.5);
    assert_eq!(cpu.psi.some.total, 99);
    assert!(cpu.psi.full.is_none());

    let mem = m.memory.as_ref().expect("memory");
    assert_eq!(mem.anon, 5058560);
    assert_eq!(mem.file, 7061504);
    assert_eq!(mem.kernel_stack, 98304);
    assert_eq!(mem.slab, 793720);
    assert_eq!(mem.sock, 4096);
    assert_eq!(mem.shmem, 8192);
    assert_eq!(mem.file_mapped, 3121152);
    assert_eq!(mem.file_dirty, 12288);
    assert_eq!(mem.file_writeback, 16384);
    assert_eq!(mem.anon_thp, 2097152);
    assert_eq!(mem.inactive_anon, 4976640);
    assert_eq!(mem.active_anon, 90112);
    assert_eq!(mem.inactive_file, 5799936);
    assert_eq!(mem.active_file, 1253376);
    assert_eq!(mem.unevictable, 4);
    assert_eq!(mem.slab_reclaimable, 397208);
    assert_eq!(mem.slab_unreclaimable, 396512);
    assert_eq!(mem.pgfault, 8934);
    assert_eq!(mem.pgmajfault, 41);
    assert_eq!(mem.workingset_refault, 12);
    assert_eq!(mem.workingset_activate, 13);
    assert_eq!(mem.workingset_nodereclaim, 14);
    assert_eq!(mem.pgscan, 15);
    assert_eq!(mem.pgsteal, 16);
    assert_eq!(mem.pgrefill, 17);
    assert_eq!(mem.pgactivate, 18);
    assert_eq!(mem.pgdeactivate, 19);
    assert_eq!(mem.pglazyfree, 20);
    assert_eq!(mem.pglazyfreed, 21);
    assert_eq!(mem.thp_fault_alloc, 22);
    assert_eq!(mem.thp_collapse_alloc, 23);
    assert_eq!(mem.usage, 12345678);
    assert_eq!(mem.usage_limit, u64::MAX, "`max` reads as u64::MAX on v2");
    assert_eq!(mem.max_usage, 23456789);
    assert_eq!(mem.swap_usage, 4096);
    assert_eq!(mem.swap_limit, 1073741824);
    assert_eq!(mem.swap_max_usage, 0, "no memory.swap.peak");
    assert_eq!(mem.psi.some.avg60, 0.05);
    assert_eq!(mem.psi.full.total, 1234);

    let ev = m.memory_events.as_ref().expect("memory events");
    assert_eq!(
        (
            ev.low,
            ev.high,
            ev.max,
            ev.oom,
            ev.oom_kill,
            ev.oom_group_kill
        ),
        (1, 2, 12, 3, 1, 0)
    );

    let io = m.io.as_ref().expect("io");
    let entries: Vec<_> = io
        .usage
        .iter()
        .map(|e| (e.major, e.minor, e.rbytes, e.wbytes, e.rios, e.wios))
        .collect();
    assert_eq!(
        entries,
        vec![
            (8, 0, 1459200, 314773504, 192, 353),
            (253, 0, 4096, 0, 1, 0)
        ]
    );
    assert!(io.psi.is_none(), "no io.pressure");

    let huge: Vec<_> = m
        .hugetlb
        .iter()
        .map(|h| (h.pagesize.as_str(), h.current, h.max, h.failcnt))
        .collect();
    assert_eq!(huge, vec![("2MB", 2097152, u64::MAX, 4), ("1GB", 0, 0, 0)]);

    let rdma = m.rdma.as_ref().expect("rdma");
    assert_eq!(rdma.current[0].device, "mlx4_0");
    assert_eq!(
        (rdma.current[0].hca_handles, rdma.current[0].hca_objects),
        (2, 2000)
    );
    assert_eq!(
        (rdma.limit[0].hca_handles, rdma.limit[0].hca_objects),
        (u32::MAX, 5000)
    );
}

#[test]
fn cgroup_v2_pids_max_reads_as_u64_max() {
    let f = V2Fixture::new();
    put(&f.dir(), "pids.current", "1\n");
    put(&f.dir(), "pids.max", "max\n");
    let m = decode_v2(&f.cgroup().metrics_any().expect("metrics"));
    assert_eq!((m.pids.current, m.pids.limit), (1, u64::MAX));
}

#[test]
fn cgroup_v2_malformed_and_missing_files_leave_fields_out() {
    let f = V2Fixture::new();
    let d = f.dir();
    put(&d, "memory.current", "12x\n");
    put(
        &d,
        "memory.stat",
        "anon 1\nfile\nslab x\nsock 1 2\n\nshmem 9\n",
    );
    put(&d, "memory.events", "\n\n");
    put(
        &d,
        "cpu.stat",
        "usage_usec 10\nuser_usec -4\nsystem_usec nope\n",
    );
    put(
        &d,
        "cpu.pressure",
        "some avg10=x avg60=0 avg300=0 total=1\nfull\n",
    );
    put(
        &d,
        "io.stat",
        "8:0 rbytes=1 wbytes=x rios\nbogus rbytes=5\n\n9:1 wios=7\n",
    );
    put(&d, "hugetlb.2MB.current", "1\n");
    put(&d, "hugetlb.2MB.events", "oops\n");
    put(&d, "rdma.current", "mlx hca_handle=1 hca_object=zz\n");

    let m = decode_v2(&f.cgroup().metrics_any().expect("metrics"));
    let mem = m.memory.as_ref().expect("memory.stat was readable");
    assert_eq!(
        (mem.anon, mem.file, mem.slab, mem.sock, mem.shmem),
        (1, 0, 0, 0, 9)
    );
    assert_eq!(mem.usage, 0);
    assert!(m.memory_events.is_none(), "no counter in memory.events");
    let cpu = m.cpu.as_ref().expect("cpu.stat was readable");
    assert_eq!((cpu.usage_usec, cpu.user_usec, cpu.system_usec), (10, 0, 0));
    let psi = cpu.psi.as_ref().expect("cpu.pressure was readable");
    assert!(psi.some.is_none() && psi.full.is_none());
    let io: Vec<_> =
        m.io.usage
            .iter()
            .map(|e| (e.major, e.minor, e.rbytes, e.wbytes, e.wios))
            .collect();
    assert_eq!(io, vec![(8, 0, 1, 0, 0), (9, 1, 0, 0, 7)]);
    assert!(m.pids.is_none());
    assert_eq!(m.hugetlb.len(), 1);
    assert_eq!(
        (m.hugetlb[0].current, m.hugetlb[0].max, m.hugetlb[0].failcnt),
        (1, 0, 0)
    );
    assert_eq!(m.rdma.current[0].hca_objects, 0);
}

#[test]
fn cgroup_v2_empty_directory_gives_empty_metrics_and_missing_is_gone() {
    let f = V2Fixture::new();
    let m = decode_v2(&f.cgroup().metrics_any().expect("metrics"));
    assert_eq!(m, m2::Metrics::new());

    fs::remove_dir_all(f.dir()).expect("remove");
    let err = f.cgroup().metrics_any().expect_err("gone");
    assert!(
        matches!(err, CgroupError::Gone { pid: V2_PID, .. }),
        "{err}"
    );
}

#[test]
fn cgroup_v2_refuses_a_path_outside_the_mount() {
    let f = V2Fixture::new();
    put(&f.tmp.path().join("proc/5"), "cgroup", "0::/../../escape\n");
    let err = CgroupFs::with_roots(f.root(), f.tmp.path().join("proc"))
        .for_pid(5)
        .expect_err("refused");
    assert!(matches!(err, CgroupError::NoCgroup { pid: 5, .. }), "{err}");
}

#[test]
fn cgroup_metrics_any_uses_the_bare_type_url_and_round_trips() {
    let f = V2Fixture::new();
    f.populate();
    let any = f.cgroup().metrics_any().expect("metrics");
    assert!(!any.type_url.contains('/'), "{}", any.type_url);
    let m = decode_v2(&any);
    assert_eq!(m.write_to_bytes().expect("encode"), any.value);

    let f = V1Fixture::new();
    f.populate();
    let any = f.cgroup().metrics_any().expect("metrics");
    let m = decode_v1(&any);
    assert_eq!(m.write_to_bytes().expect("encode"), any.value);
}

/// Reads this test process's own cgroup on the host, whatever its hierarchy: the parsing of a
/// real `/proc/<pid>/cgroup` and real files, without root.
#[test]
fn cgroup_host_self_metrics_decode() {
    let fs = CgroupFs::host();
    let cg = fs.for_pid(std::process::id()).expect("own cgroup");
    let any = cg.metrics_any().expect("own metrics");
    match fs.hierarchy() {
        Hierarchy::V1 => {
            let m = decode_v1(&any);
            assert!(m.memory.is_some() || m.cpu.is_some(), "{m:?}");
        }
        Hierarchy::V2 => {
            let m = decode_v2(&any);
            assert!(m.cpu.is_some(), "{m:?}");
        }
    }
}

const WITHIN: Duration = Duration::from_secs(1);

#[tokio::test]
async fn cgroup_v2_oom_watcher_fires_when_oom_kill_increases() {
    let f = V2Fixture::new();
    let events = f.dir().join("memory.events");
    let counters = |oom: u64, kill: u64| {
        format!("low 0\nhigh 0\nmax 5\noom {oom}\noom_kill {kill}\noom_group_kill 0\n")
    };
    fs::write(&events, counters(1, 1)).expect("write");
    put(&f.dir(), "cgroup.events", "populated 1\nfrozen 0\n");
    let mut w = f.cgroup().oom_watcher().expect("watcher");

    fs::write(&events, counters(2, 2)).expect("rewrite");
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(Some(())));

    // A change that is not an OOM kill wakes the watcher but is not reported.
    fs::write(&events, counters(2, 2).replace("max 5", "max 6")).expect("rewrite");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err(),
        "no OOM kill, no event"
    );

    fs::write(&events, counters(3, 3)).expect("rewrite");
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(Some(())));

    // The last process left: the watcher ends.
    fs::write(f.dir().join("cgroup.events"), "populated 0\nfrozen 0\n").expect("rewrite");
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(None));
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(None));
}

/// The final read at an init's exit reports a kill the inotify event has not yet delivered,
/// once: `next` does not report it again.
#[tokio::test]
async fn cgroup_v2_oom_check_now_reports_an_untold_kill_once() {
    let f = V2Fixture::new();
    let events = f.dir().join("memory.events");
    let counters = |kill: u64| format!("low 0\nhigh 0\nmax 0\noom {kill}\noom_kill {kill}\n");
    fs::write(&events, counters(0)).expect("write");
    put(&f.dir(), "cgroup.events", "populated 1\nfrozen 0\n");
    let mut w = f.cgroup().oom_watcher().expect("watcher");
    assert!(!w.check_now(), "no kill yet");
    fs::write(&events, counters(1)).expect("rewrite");
    assert!(w.check_now(), "the kill, before its inotify event is read");
    assert!(!w.check_now(), "told once");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), w.next())
            .await
            .is_err(),
        "next does not tell it again"
    );
}

#[tokio::test]
async fn cgroup_v2_oom_watcher_ends_when_the_cgroup_is_removed() {
    let f = V2Fixture::new();
    put(&f.dir(), "memory.events", "oom 0\noom_kill 0\n");
    let mut w = f.cgroup().oom_watcher().expect("watcher");
    fs::remove_dir_all(f.dir()).expect("remove");
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(None));
}

#[tokio::test]
async fn cgroup_v2_oom_watcher_needs_memory_events() {
    let f = V2Fixture::new();
    let err = f.cgroup().oom_watcher().expect_err("no memory controller");
    assert!(
        matches!(
            err,
            CgroupError::NoController {
                controller: "memory",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn cgroup_oom_watcher_outside_a_runtime_is_an_error_not_a_panic() {
    let f = V2Fixture::new();
    put(&f.dir(), "memory.events", "oom 0\noom_kill 0\n");
    let err = f.cgroup().oom_watcher().expect_err("no runtime");
    assert!(err.to_string().contains("no tokio runtime"), "{err}");
}

/// Signals an eventfd of this process by number, as the kernel would on an OOM.
fn signal_eventfd(fd: i32) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: `fd` is the watcher's eventfd, open in this process; the buffer is 8 valid bytes.
    let n = unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
    assert_eq!(n, 8, "write eventfd: {}", std::io::Error::last_os_error());
}

#[tokio::test]
async fn cgroup_v1_oom_watcher_registers_an_eventfd_and_reports_it() {
    let f = V1Fixture::new();
    let mem = f.ctr("memory");
    put(
        &mem,
        "memory.oom_control",
        "oom_kill_disable 0\nunder_oom 0\n",
    );
    put(&mem, "cgroup.event_control", "");
    let mut w = f.cgroup().oom_watcher().expect("watcher");

    let line = fs::read_to_string(mem.join("cgroup.event_control")).expect("read");
    let fds: Vec<i32> = line
        .split_whitespace()
        .map(|s| s.parse().expect("fd number"))
        .collect();
    assert_eq!(fds.len(), 2, "`<eventfd> <oom_control fd>`: {line:?}");

    signal_eventfd(fds[0]);
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(Some(())));

    // The kernel signals once more when the cgroup is removed.
    fs::remove_dir_all(&mem).expect("remove");
    signal_eventfd(fds[0]);
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(None));
    assert_eq!(tokio::time::timeout(WITHIN, w.next()).await, Ok(None));
}

#[tokio::test]
async fn cgroup_v1_oom_watcher_errors_name_the_file() {
    let f = V1Fixture::new();
    let mem = f.ctr("memory");
    put(&mem, "memory.oom_control", "oom_kill_disable 0\n");
    let err = f.cgroup().oom_watcher().expect_err("no event_control");
    assert!(
        matches!(&err, CgroupError::Os { pid: V1_PID, path, .. } if path.ends_with("cgroup.event_control")),
        "{err}"
    );

    put(&f.proc().join("3"), "cgroup", "8:pids:/x\n");
    let err = f
        .fs()
        .for_pid(3)
        .expect("for_pid")
        .oom_watcher()
        .expect_err("no memory");
    assert!(
        matches!(
            err,
            CgroupError::NoController {
                pid: 3,
                controller: "memory",
                ..
            }
        ),
        "{err}"
    );
}

/// A memory cgroup made for one test, emptied and removed on drop, failed test included.
struct TestCgroup {
    dir: PathBuf,
    removed: bool,
}

impl TestCgroup {
    fn create(dir: PathBuf) -> TestCgroup {
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        TestCgroup {
            dir,
            removed: false,
        }
    }

    fn remove(&mut self) -> std::io::Result<()> {
        if self.removed {
            return Ok(());
        }
        for _ in 0..50 {
            let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<i32> = procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: kill takes no pointers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut last = Ok(());
        for _ in 0..20 {
            last = fs::remove_dir(&self.dir);
            if last.is_ok() {
                self.removed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        last
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("cannot remove test cgroup {}: {e}", self.dir.display());
        }
    }
}

#[tokio::test]
#[ignore = "needs root and cgroup v1 memory controller"]
async fn cgroup_v1_real_oom_kill_is_reported() {
    use std::process::{Command, Stdio};

    let host = CgroupFs::host();
    let memory_root = Path::new("/sys/fs/cgroup/memory");
    assert!(
        host.hierarchy() == Hierarchy::V1 && memory_root.join("cgroup.event_control").exists(),
        "this test needs a cgroup v1 host with the memory controller at {}",
        memory_root.display()
    );
    let mut cg =
        TestCgroup::create(memory_root.join(format!("sluice-test-{}", std::process::id())));
    let limit = 32u64 << 20;
    fs::write(cg.dir.join("memory.limit_in_bytes"), limit.to_string()).expect("set limit");
    if cg.dir.join("memory.memsw.limit_in_bytes").exists() {
        // No escape to swap; must come after the memory limit, which it may not undercut.
        fs::write(
            cg.dir.join("memory.memsw.limit_in_bytes"),
            limit.to_string(),
        )
        .expect("set memsw limit");
    }
    let procs = cg.dir.join("cgroup.procs");

    // A small process the container cgroup is found from, like a container's init.
    let mut holder = Command::new("sleep")
        .arg("60")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sleep");
    fs::write(&procs, holder.id().to_string()).expect("move sleep into the cgroup");
    let container = host.for_pid(holder.id()).expect("for_pid");
    let mut watcher = container.oom_watcher().expect("watcher");

    // `tail` keeps the current line in memory; /dev/zero has no newline.
    let mut hog = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec tail /dev/zero",
            procs.display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn hog");
    let fired = tokio::time::timeout(Duration::from_secs(20), watcher.next()).await;
    let hog_status = {
        // The hog is dead if the OOM killer did its work; if not, the cleanup below kills it.
        let _ = cg.remove_pid_if_alive(hog.id());
        hog.wait().expect("wait hog")
    };
    assert_eq!(
        fired,
        Ok(Some(())),
        "OOM kill not reported; hog: {hog_status}"
    );

    let m = decode_v1(&container.metrics_any().expect("metrics"));
    assert_eq!(m.memory.usage.limit, limit);
    // failcnt is not counted by every kernel (6.x leaves it at 0 here); the peak is.
    assert_eq!(m.memory.usage.max, limit, "{:?}", m.memory);
    assert!(
        m.memory_oom_control.oom_kill >= 1,
        "{:?}",
        m.memory_oom_control
    );

    let _ = holder.kill();
    let _ = holder.wait();
    cg.remove().expect("remove the test cgroup");
    // The kernel signals the eventfd once more as the cgroup goes away.
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), watcher.next()).await,
        Ok(None)
    );
}

impl TestCgroup {
    /// SIGKILL `pid` if it still lives, so a hog that escaped the OOM killer cannot block `wait`.
    fn remove_pid_if_alive(&self, pid: u32) -> std::io::Result<()> {
        let procs = fs::read_to_string(self.dir.join("cgroup.procs"))?;
        if procs.lines().any(|l| l.trim() == pid.to_string()) {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        Ok(())
    }
}

#[test]
fn cgroup_add_process_writes_every_v1_hierarchy_that_has_the_cgroup() {
    let dir = tempfile::tempdir().expect("tempdir");
    for c in ["memory", "pids", "cpu,cpuacct"] {
        std::fs::create_dir_all(dir.path().join(c).join("shims")).expect("mkdir");
        std::fs::write(dir.path().join(c).join("shims/cgroup.procs"), "").expect("procs");
    }
    std::fs::create_dir_all(dir.path().join("freezer")).expect("mkdir");
    super::add_process(dir.path(), "/shims", 4242).expect("add");
    for c in ["memory", "pids", "cpu,cpuacct"] {
        let got =
            std::fs::read_to_string(dir.path().join(c).join("shims/cgroup.procs")).expect("read");
        assert_eq!(got, "4242", "{c}");
    }
    let err = super::add_process(dir.path(), "/absent", 1).expect_err("no such cgroup");
    assert!(err.to_string().contains("/absent"), "{err}");
}

#[test]
fn cgroup_add_process_on_v2_writes_the_unified_tree() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("cgroup.controllers"), "memory pids").expect("controllers");
    std::fs::create_dir_all(dir.path().join("shims")).expect("mkdir");
    std::fs::write(dir.path().join("shims/cgroup.procs"), "").expect("procs");
    super::add_process(dir.path(), "shims", 7).expect("add");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("shims/cgroup.procs")).expect("read"),
        "7"
    );
}
