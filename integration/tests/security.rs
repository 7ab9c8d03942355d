//! Security (issue 5, item 5): the shim's socket is root's alone, no shim descriptor reaches the
//! container, and `IoUid`/`IoGid` are respected: the shim creates the container's stdio pipes
//! owned by that uid/gid, so a container process can reopen its own stdio through
//! `/proc/self/fd/N`.
//!
//! How the runc options reach a shim through `ctr` (no CRI here):
//! - sluice under its own runtime type: `--runtime-config-path` names a TOML with `IoUid` and
//!   `IoGid`, sent as the CRI's generic runtime options, on every containerd version;
//! - `io.containerd.runc.v2` (the stock shim, or sluice installed under its name): only ctr
//!   1.6's `--uidmap`/`--gidmap` (`WithUIDOwner`/`WithGIDOwner` on the task) set them for a
//!   `--rootfs` container; ctr 1.7 and 2.x send none.
//!
//! What the container sees: runc re-owns the uid of its stdio to the process's user
//! (`fixStdioPermissions`) but keeps the gid, so the pipes show `<user>:<IoGid>`, and without
//! the options `<user>:0`. The process runs as user 1000 where ctr has `--user` (1.7 and 2.x);
//! ctr 1.6 has no such flag, so there it runs as root.
//!
//! Run: `SLUICE_CONTAINERD=1.6 cargo test -p sluice-integration --test security -- --ignored
//! --nocapture --test-threads=1` (as root; see scripts/test.sh).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use sluice_integration::cmd::poll;
use sluice_integration::containers;
use sluice_integration::harness::{EnvOpts, TestEnv};
use sluice_integration::procs::{fd_targets, fds_of};
use sluice_integration::traces::pids_cgroup;
use sluice_integration::versions::{self, Line};
use sluice_integration::{CmdOutput, RunOpts, Runtime};

const IO_ID: u32 = 1000;

/// Reports, one line each: the owner of fds 0-2, the uid it runs as, whether stdin reopens;
/// then writes through `/proc/self/fd/1` and `/proc/self/fd/2` (a failure prints the shell's
/// own error on stderr, as a user would see it).
const SCRIPT: &str = "stat -L -c '%u:%g' /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2; id -u; \
     if true 2>/dev/null 3</proc/self/fd/0; then echo stdin-reopened; else echo stdin-denied; fi; \
     echo via-proc > /proc/self/fd/1; echo via-proc-err > /proc/self/fd/2";

/// How the test delivers `IoUid`/`IoGid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// None at all: the control run.
    None,
    /// sluice's runtime type with `--runtime-config-path` to a TOML.
    ConfigPath,
    /// `--uidmap`/`--gidmap` (ctr 1.6 turns them into the runc `Options` of the task for
    /// `io.containerd.runc.v2`, into the legacy `CreateOptions` for any other runtime type).
    IdMapFlags,
}

/// The uid the container process runs as, and the ctr flags that make it so.
fn container_user() -> (u32, Vec<String>) {
    match versions::selected().line {
        Line::V1_6 => (0, vec![]),
        _ => (IO_ID, vec!["--user".into(), format!("{IO_ID}:{IO_ID}")]),
    }
}

/// Does ctr of the selected containerd deliver `delivery` to the shim at all?
fn delivered(delivery: Delivery) -> bool {
    match delivery {
        Delivery::None => false,
        Delivery::ConfigPath => true,
        Delivery::IdMapFlags => versions::selected().line == Line::V1_6,
    }
}

/// What the container must print when the pipes are owned by `gid` and it runs as `user`.
fn expected_stdout(user: u32, gid: u32) -> String {
    format!("{user}:{gid}\n{user}:{gid}\n{user}:{gid}\n{user}\nstdin-reopened\nvia-proc\n")
}

/// Runs [`SCRIPT`] in a container of a fresh environment for `rt` (`as_runc_v2`: sluice is
/// installed as `containerd-shim-runc-v2` and reached through that runtime type).
fn run_script(rt: Runtime, as_runc_v2: bool, delivery: Delivery) -> CmdOutput {
    let label = format!(
        "io-uid-{}-{delivery:?}",
        if as_runc_v2 { "v2" } else { "own" }
    );
    let env = if as_runc_v2 {
        let sluice = sluice_integration::system::sluice_shim_bin();
        TestEnv::start_with(
            &label,
            Runtime::RuncV2,
            EnvOpts {
                shims: vec![("containerd-shim-runc-v2".into(), sluice)],
                ..Default::default()
            },
        )
    } else {
        TestEnv::start(&label, rt)
    };
    let (_, user_flags) = container_user();
    let mut flags: Vec<String> = user_flags;
    let toml: PathBuf = env.dir.join("io-owner.toml");
    match delivery {
        Delivery::None => {}
        Delivery::ConfigPath => {
            fs::write(&toml, format!("IoUid = {IO_ID}\nIoGid = {IO_ID}\n"))
                .expect("write runtime config");
            flags.extend(["--runtime-config-path".into(), toml.display().to_string()]);
        }
        Delivery::IdMapFlags => {
            // A map of one id: ctr only reads the host ids for the pipes' owner; with --rootfs
            // it adds no user namespace to the spec.
            flags.extend([
                "--uidmap".into(),
                format!("0:{IO_ID}:1"),
                "--gidmap".into(),
                format!("0:{IO_ID}:1"),
            ]);
        }
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let out = containers::run_with_flags(
        &env,
        "c1",
        &flags,
        &RunOpts::default(),
        &["sh", "-c", SCRIPT],
    );
    if as_runc_v2 {
        // sluice tags every log line it sends through containerd with its runtime type.
        let log = fs::read_to_string(&env.log_path).unwrap_or_default();
        assert!(
            log.contains("runtime=io.containerd.sluice.v2"),
            "containerd did not start sluice as containerd-shim-runc-v2:\n{}",
            env.log_tail(80)
        );
    }
    let who = if as_runc_v2 {
        "sluice as io.containerd.runc.v2".to_string()
    } else {
        rt.to_string()
    };
    eprintln!(
        "[io-uid {who} containerd {}] {delivery:?}:\n{out}",
        versions::selected().line.label()
    );
    out
}

/// The container's output when the shim honoured `IoUid`/`IoGid` = 1000.
fn assert_owned(what: &str, out: &CmdOutput) {
    let (user, _) = container_user();
    assert!(out.success(), "{what}: the container failed:\n{out}");
    assert_eq!(
        out.stdout_str(),
        expected_stdout(user, IO_ID),
        "{what}: stdio not owned by IoGid {IO_ID}, or not reopenable:\n{out}"
    );
    assert_eq!(
        out.stderr_str(),
        "via-proc-err\n",
        "{what}: stderr through /proc/self/fd/2:\n{out}"
    );
}

/// sluice under its own runtime type, `IoUid`/`IoGid` from the `ConfigPath` TOML.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn io_uid_sluice() {
    let out = run_script(Runtime::Sluice, false, Delivery::ConfigPath);
    assert_owned("[sluice] IoUid/IoGid 1000 from ConfigPath", &out);
}

/// The stock shim with `IoUid`/`IoGid` from ctr's id-map flags: the reference on 1.6; on 1.7
/// and 2.x ctr sends no options, so it shows the control's ownership.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn io_uid_stock() {
    let out = run_script(Runtime::RuncV2, false, Delivery::IdMapFlags);
    check_id_map_flags("[stock]", &out);
}

/// sluice installed as `containerd-shim-runc-v2`, the same client path as the stock run: the
/// runc `Options` decoding of `io_uid`/`io_gid`.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn io_uid_sluice_as_runc_v2() {
    let out = run_script(Runtime::Sluice, true, Delivery::IdMapFlags);
    check_id_map_flags("[sluice as runc.v2]", &out);
}

/// sluice under its own runtime type with ctr's id-map flags: containerd's client then sends the
/// legacy `containerd.linux.runc.CreateOptions` (it knows the type only as "not runc"), which
/// must deliver `IoUid`/`IoGid` as well.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn io_uid_sluice_id_map_flags() {
    let out = run_script(Runtime::Sluice, false, Delivery::IdMapFlags);
    check_id_map_flags("[sluice, own type]", &out);
}

fn check_id_map_flags(what: &str, out: &CmdOutput) {
    if delivered(Delivery::IdMapFlags) {
        assert_owned(
            &format!("{what} IoUid/IoGid 1000 from --uidmap/--gidmap"),
            out,
        );
    } else {
        let (user, _) = container_user();
        eprintln!("{what} ctr of this containerd sends no IoUid/IoGid for a --rootfs container");
        assert!(out.success(), "{what}: the container failed:\n{out}");
        assert_eq!(out.stdout_str(), expected_stdout(user, 0), "{what}:\n{out}");
    }
}

/// No `IoUid`/`IoGid`: what each shim does (printed); asserted only where they agree, which
/// they must: runc gives the uid of the pipes to the container's user either way.
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn io_uid_control() {
    let stock = run_script(Runtime::RuncV2, false, Delivery::None);
    let sluice = run_script(Runtime::Sluice, false, Delivery::None);
    let (user, _) = container_user();
    eprintln!(
        "[io-uid control] stock: exit {:?} stdout {:?} stderr {:?}; sluice: exit {:?} stdout {:?} \
         stderr {:?}",
        stock.code(),
        stock.stdout_str(),
        stock.stderr_str(),
        sluice.code(),
        sluice.stdout_str(),
        sluice.stderr_str()
    );
    assert_eq!(
        (sluice.code(), sluice.stdout_str(), sluice.stderr_str()),
        (stock.code(), stock.stdout_str(), stock.stderr_str()),
        "sluice and the stock shim differ without IoUid/IoGid"
    );
    assert_eq!(stock.stdout_str(), expected_stdout(user, 0), "{stock}");
}

// ---- what the container can reach of the shim -------------------------------------------------

fn cgroup_procs(env: &TestEnv, id: &str) -> Vec<u32> {
    fs::read_to_string(pids_cgroup(env, id).join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The shim's socket and its directory are root's alone; the container's init and an exec hold
/// only fds 0, 1 and 2 (nothing of the shim leaks into the container).
#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn socket_and_descriptors() {
    let env = TestEnv::start("security", Runtime::Sluice);
    env.run_detached("c1", &[], &["sleep", "100000"]);
    let init = env
        .wait_task_status("c1", "RUNNING", Duration::from_secs(30))
        .pid;
    let address = containers::shim_address(&env, "c1");
    let socket = PathBuf::from(address.trim_start_matches("unix://"));
    let mode = fs::metadata(&socket)
        .expect("stat socket")
        .permissions()
        .mode()
        & 0o7777;
    let dir = socket.parent().expect("socket dir");
    let dir_mode = fs::metadata(dir).expect("stat dir").permissions().mode() & 0o7777;
    eprintln!(
        "[security] socket {} mode {mode:o}; dir {} mode {dir_mode:o}",
        socket.display(),
        dir.display()
    );
    assert_eq!(
        mode & 0o077,
        0,
        "shim socket is reachable by group/others: {mode:o}"
    );
    assert_eq!(
        dir_mode & 0o007,
        0,
        "socket dir is accessible to others: {dir_mode:o}"
    );

    let init_fds = fd_targets(init);
    eprintln!("[security] init {init} fds: {init_fds:?}");
    assert_eq!(fds_of(init), ["0", "1", "2"], "init fds: {init_fds:?}");

    containers::exec_detached(&env, "c1", "e1", &["sleep", "1000"]);
    let exec_pid = poll(Duration::from_secs(15), || {
        cgroup_procs(&env, "c1").into_iter().find(|p| {
            *p != init
                && fs::read_to_string(format!("/proc/{p}/cmdline"))
                    .map(|c| c.starts_with("sleep\0"))
                    .unwrap_or(false)
        })
    })
    .expect("the exec's sleep never appeared in the container's cgroup");
    let exec_fds = fd_targets(exec_pid);
    eprintln!("[security] exec {exec_pid} fds: {exec_fds:?}");
    assert_eq!(fds_of(exec_pid), ["0", "1", "2"], "exec fds: {exec_fds:?}");
    containers::kill_and_delete(&env, "c1");
}
