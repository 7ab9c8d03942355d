//!
//! What containerd's own environment hands the shim, and so runc (issue 12): containerd run by
//! systemd as a `Type=notify` service has `NOTIFY_SOCKET` set, and every shim inherits it. A
//! runc that sees it makes `runc start` wait for the container's own `READY=1`, which an
//! ordinary process never sends: each detached start hangs until the shim's deadline. go-runc
//! withholds the variable from runc; so must sluice. Reproduced here without systemd: the
//! private containerd is started with `NOTIFY_SOCKET` naming a datagram socket of the test's.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use sluice_integration::containers::kill_and_delete;
use sluice_integration::harness::{EnvOpts, TestEnv, CTR_TIMEOUT};
use sluice_integration::Runtime;

/// sluice's runc deadline for this test: a start that waits for READY=1 fails in this time
/// instead of the default two minutes.
const DEADLINE: &str = "io.sluice.runc-timeout-seconds=15";

/// With `NOTIFY_SOCKET` in containerd's environment, `ctr run --detach` of a process that never
/// notifies starts and runs, promptly, and exec works in it.
fn detached_start_under_notify_socket(rt: Runtime) {
    let path = std::env::temp_dir().join(format!("sluice-notify-{}-{rt:?}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // Bound for the whole test, as systemd's is; nobody needs to read it.
    let _socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    let _unlink = Unlink(path.clone());
    let env = TestEnv::start_with(
        "notify-socket",
        rt,
        EnvOpts {
            containerd_env: vec![("NOTIFY_SOCKET".into(), path.display().to_string())],
            ..EnvOpts::default()
        },
    );
    let started = Instant::now();
    env.run_detached("c1", &[DEADLINE], &["sleep", "1000"]);
    let took = started.elapsed();
    let row = env.wait_task_status("c1", "RUNNING", Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(10),
        "[{rt}] a detached start took {took:?} with NOTIFY_SOCKET set (pid {})",
        row.pid
    );
    let out = env
        .exec("c1", "e1", &["echo", "ready"], CTR_TIMEOUT)
        .expect_success(&format!("[{rt}] exec"));
    assert_eq!(out.stdout_str(), "ready\n");
    kill_and_delete(&env, "c1");
}

struct Unlink(std::path::PathBuf);

impl Drop for Unlink {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

mod sluice {
    #[test]
    #[ignore = "needs root, containerd and runc; run with --ignored"]
    fn detached_start_under_notify_socket() {
        super::detached_start_under_notify_socket(sluice_integration::Runtime::Sluice);
    }
}

mod stock_runc_v2 {
    #[test]
    #[ignore = "needs root, containerd and runc; run with --ignored"]
    fn detached_start_under_notify_socket() {
        super::detached_start_under_notify_socket(sluice_integration::Runtime::RuncV2);
    }
}
