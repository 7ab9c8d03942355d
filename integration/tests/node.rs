//! Node behaviour (cgroup v2, systemd, the systemd cgroup driver) for both shims and both
//! drivers: see `sluice_integration::node`. Runs in the guest lane (scripts/vm-test.sh).

sluice_integration::node_tests!(
    lifecycle,
    exec_drain,
    seed,
    pids_max,
    stats,
    oom,
    update,
    pause_resume,
    restart,
    pod,
    checkpoint,
);
