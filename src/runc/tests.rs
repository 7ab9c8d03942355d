//! The runc layer against fake runc scripts that flood their pipes, fail, or never exit.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use tokio::io::AsyncReadExt;

use super::{invoke, CallStdio, RuncError};
use crate::io::{ProcessIo, StdioPaths};

const MIB: usize = 1024 * 1024;

fn fake_runc(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("runc");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write fake runc");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// 1 MiB of "out" lines on stdout, then 1 MiB of "err" lines on stderr, then `exit code`.
fn flood_then_exit(code: i32) -> String {
    format!(
        "yes out | head -c {MIB}\nyes err | head -c {MIB} >&2\necho 'last words' >&2\nexit {code}"
    )
}

fn call(binary: PathBuf, stdio: CallStdio, deadline: Duration) -> invoke::Call {
    invoke::Call {
        verb: "exec",
        container: "c1".into(),
        binary,
        args: vec!["exec".into(), "c1".into()],
        stdio,
        log: None,
        deadline,
        on_slow: None,
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still answers kill(0); read its state to tell.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[tokio::test]
async fn capture_drains_a_mebibyte_on_each_pipe_and_succeeds() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = fake_runc(dir.path(), &flood_then_exit(0));
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        invoke::run(call(runc, CallStdio::Capture, Duration::from_secs(20))),
    )
    .await
    .expect("runc layer hung on full pipes")
    .expect("exit 0 is success");
    assert_eq!(out.len(), MIB);
    assert!(out.starts_with(b"out\nout\n"));
}

#[tokio::test]
async fn capture_failure_reports_status_and_runcs_last_words() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = fake_runc(dir.path(), &flood_then_exit(2));
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        invoke::run(call(runc, CallStdio::Capture, Duration::from_secs(20))),
    )
    .await
    .expect("runc layer hung on full pipes")
    .expect_err("exit 2 is a failure");
    let RuncError::Failed { status, .. } = &err else {
        panic!("expected Failed, got {err:?}");
    };
    assert_eq!(*status, 2);
    let text = err.to_string();
    assert!(
        text.starts_with("runc exec for container c1 failed with exit status 2 after "),
        "{text}"
    );
    assert!(text.ends_with("last words"), "{text}");
    assert!(
        text.contains("bytes omitted"),
        "a 1 MiB stderr must be cut: {}",
        text.len()
    );
}

#[tokio::test]
async fn log_json_error_is_reported() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("log.json");
    std::fs::write(&log, "{\"level\":\"error\",\"msg\":\"old failure\"}\n").expect("log");
    let runc = fake_runc(
        dir.path(),
        &format!(
            "echo '{{\"level\":\"error\",\"msg\":\"container_linux.go:380: no such file\"}}' >> {}\nexit 1",
            log.display()
        ),
    );
    let mut c = call(runc, CallStdio::Capture, Duration::from_secs(20));
    c.log = Some(log);
    let err = invoke::run(c).await.expect_err("exit 1");
    let text = err.to_string();
    assert!(
        text.contains(": container_linux.go:380: no such file"),
        "{text}"
    );
    assert!(!text.contains("old failure"), "{text}");
}

#[tokio::test]
async fn deadline_kills_runc_and_what_it_left() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let pids = dir.path().join("pids");
    // A child that outlives nothing, like `runc init` blocked on a pipe, and runc that waits.
    let runc = fake_runc(
        dir.path(),
        &format!(
            "sleep 1000 &\necho $$ $! > {}\necho stuck >&2\nwait",
            pids.display()
        ),
    );
    let started = Instant::now();
    let err = invoke::run(call(runc, CallStdio::Capture, Duration::from_millis(700)))
        .await
        .expect_err("a runc that never exits must time out");
    let elapsed = started.elapsed();
    assert!(matches!(err, RuncError::Timeout { .. }), "{err:?}");
    assert!(elapsed < Duration::from_secs(8), "took {elapsed:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("runc exec for container c1 did not finish within 0."),
        "{text}"
    );
    assert!(text.contains("stuck"), "{text}");
    let listed = std::fs::read_to_string(&pids).expect("pids written");
    let pids: Vec<i32> = listed
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2);
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for p in pids {
        assert!(!alive(p), "pid {p} survived the deadline");
    }
}

/// Opens a FIFO's read side and reads it to EOF.
async fn read_fifo(path: PathBuf) -> Vec<u8> {
    let mut rx = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(&path)
        .expect("open fifo");
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rx.read(&mut buf).await {
            Ok(0) => {
                // A non-blocking reader sees EOF before the writer connects; wait for data.
                if all.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                return all;
            }
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("read fifo: {e}"),
        }
    }
}

fn fifos(dir: &Path) -> StdioPaths {
    let mk = |name: &str| {
        let p = dir.join(name);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        p.display().to_string()
    };
    StdioPaths {
        stdin: String::new(),
        stdout: mk("stdout"),
        stderr: mk("stderr"),
        terminal: false,
    }
}

async fn run_with_process_io(
    runc: PathBuf,
    paths: &StdioPaths,
) -> (ProcessIo, Result<Vec<u8>, RuncError>) {
    let (io, child) = ProcessIo::start("c1/e1", paths, &Default::default())
        .await
        .expect("process io");
    let stdio = CallStdio::Process {
        stdin: child.stdin,
        stdout: child.stdout,
        stderr: child.stderr,
        tail: io.runc_tail(),
    };
    let res = tokio::time::timeout(
        Duration::from_secs(30),
        invoke::run(call(runc, stdio, Duration::from_secs(20))),
    )
    .await
    .expect("runc layer hung on the process pipes");
    io.end_runc_phase();
    (io, res)
}

#[tokio::test]
async fn process_pipes_deliver_every_byte_when_runc_floods_them() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = fake_runc(dir.path(), &flood_then_exit(0));
    let paths = fifos(dir.path());
    let out = tokio::spawn(read_fifo(PathBuf::from(&paths.stdout)));
    let err = tokio::spawn(read_fifo(PathBuf::from(&paths.stderr)));
    let (io, res) = run_with_process_io(runc, &paths).await;
    res.expect("exit 0");
    assert!(io.wait_delivered(Duration::from_secs(10)).await);
    let out = out.await.expect("stdout reader");
    let err = err.await.expect("stderr reader");
    assert_eq!(out.len(), MIB);
    assert_eq!(err.len(), MIB + "last words\n".len());
}

#[tokio::test]
async fn process_pipe_failure_carries_what_runc_wrote_to_the_process_stderr() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = fake_runc(
        dir.path(),
        "echo 'runtime/cgo: pthread_create failed: Resource temporarily unavailable' >&2\n\
         yes 'goroutine 1 [running]:' | head -c 7000 >&2\nexit 2",
    );
    let paths = fifos(dir.path());
    // Nobody ever opens the FIFOs: the sink is not there, runc must still return.
    let (_io, res) = run_with_process_io(runc, &paths).await;
    let text = res.expect_err("exit 2").to_string();
    assert!(
        text.contains(
            "runc wrote: runtime/cgo: pthread_create failed: Resource temporarily unavailable"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn process_pipes_flooded_with_no_reader_do_not_block_runc() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = fake_runc(dir.path(), &flood_then_exit(0));
    let paths = fifos(dir.path());
    let (io, res) = run_with_process_io(runc, &paths).await;
    res.expect("exit 0 even though nobody reads the FIFOs");
    io.shutdown();
}

#[test]
fn unreadable_ps_output_is_quoted_by_its_ends_only() {
    let mut noise = vec![b'x'; 1 << 20];
    noise.extend_from_slice(b"[1,2]");
    let err = super::parse_ps(&noise).expect_err("noise is not JSON");
    assert!(err.len() < 2048, "error of {} bytes", err.len());
    assert!(err.contains("1048581 bytes"), "{err}");
    assert!(err.contains("[1,2]"), "the end is lost: {err}");
    assert_eq!(super::parse_ps(b"[3, 4]\n"), Ok(vec![3, 4]));
}

#[test]
fn runc_never_sees_notify_socket() {
    // As if containerd ran under systemd (Type=notify): the variable reaches the shim, and
    // would make `runc start` wait for a READY=1 no ordinary container sends.
    let mut cmd = std::process::Command::new("runc");
    cmd.env("NOTIFY_SOCKET", "/run/systemd/notify");
    cmd.env("PATH", "/usr/bin");
    super::invoke::environment(&mut cmd);
    let envs: Vec<_> = cmd.get_envs().collect();
    assert!(
        envs.contains(&(std::ffi::OsStr::new("NOTIFY_SOCKET"), None)),
        "NOTIFY_SOCKET must be removed, not passed: {envs:?}"
    );
    assert!(
        envs.contains(&(
            std::ffi::OsStr::new("PATH"),
            Some(std::ffi::OsStr::new("/usr/bin"))
        )),
        "everything else is inherited as it is: {envs:?}"
    );
    assert_eq!(super::invoke::WITHHELD_FROM_RUNC, ["NOTIFY_SOCKET"]);
}

/// A failing exec's error comes from its own `--log`, which is gone afterwards: a probe that
/// fails for ever leaves the bundle as it was (containerd #8972).
#[tokio::test]
async fn each_exec_has_its_own_log_and_leaves_none() {
    crate::reaper::start().expect("reaper");
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).expect("bundle");
    std::fs::write(bundle.join("log.json"), "").expect("log.json");
    // Writes an error to whatever --log names, as runc does, and fails.
    let script = r#"while [ $# -gt 0 ]; do
  if [ "$1" = --log ]; then log=$2; fi
  shift
done
echo "{\"level\":\"error\",\"msg\":\"exec failed: no such file: $log\"}" >> "$log"
exit 1"#;
    let runc = super::Runc {
        binary: fake_runc(dir.path(), script),
        criu: None,
        root: dir.path().join("root"),
        systemd_cgroup: false,
        deadline: Duration::from_secs(20),
    };
    let spec = bundle.join(".sluice-exec-probe.json");
    for _ in 0..3 {
        let err = runc
            .exec(
                "c1",
                &bundle,
                &spec,
                &bundle.join("probe.pid"),
                super::RuncIo::Console(dir.path().join("console.sock")),
            )
            .await
            .expect_err("exit 1");
        let text = err.to_string();
        assert!(
            text.contains("exec failed: no such file: ")
                && text.contains(".sluice-exec-probe-exec.log"),
            "{text}"
        );
    }
    let mut left: Vec<String> = std::fs::read_dir(&bundle)
        .expect("read bundle")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["log.json"]);
    assert_eq!(
        std::fs::metadata(bundle.join("log.json"))
            .expect("log")
            .len(),
        0
    );
}
