//! Container lifecycle through `ctr`, once under sluice and once under the stock
//! `io.containerd.runc.v2` shim (which validates the harness itself): each scenario takes the
//! runtime as a parameter, so the same steps run against both. They assert what a user of `ctr`
//! sees: exit codes, the bytes that arrived, error text, and how long it took.
//!
//! Run: `cargo test -p sluice-integration --test lifecycle -- --ignored`
//! (as root, with containerd, runc and busybox-static installed; see scripts/test.sh).

use std::path::PathBuf;
use std::time::Duration;

use sluice_integration::checks::{assert_code, assert_stdout, run_large_stdout, start_sleeper};
use sluice_integration::cmd::poll;
use sluice_integration::containers;
use sluice_integration::harness::{RunOpts, TestEnv, CTR_TIMEOUT};
use sluice_integration::versions;
use sluice_integration::Runtime;

/// Declares, for each named scenario, one ignored test per runtime: `sluice::<name>` and
/// `stock_runc_v2::<name>`.
macro_rules! tests_for_both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod sluice {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    super::$name(sluice_integration::Runtime::Sluice);
                }
            )*
        }
        mod stock_runc_v2 {
            $(
                #[test]
                #[ignore = "needs root, containerd and runc; run with --ignored"]
                fn $name() {
                    super::$name(sluice_integration::Runtime::RuncV2);
                }
            )*
        }
    };
}

tests_for_both_runtimes!(
    stdout_and_stderr,
    large_stdout,
    stdin,
    exit_code,
    exec,
    kill,
    delete,
    group_shares_one_shim,
);

/// The shim sockets of the running containers, read from the bundles' `address` files (which
/// containerd 1.6 needs to reconnect after a restart, so they must exist).
fn shim_sockets(env: &TestEnv) -> Vec<PathBuf> {
    let sockets = env.shim_sockets();
    assert!(
        !sockets.is_empty(),
        "[{}] no bundle has an `address` file naming a socket in /run/containerd/s",
        env.runtime
    );
    sockets
}

/// After the last task of a shim is deleted the shim must exit by itself and remove its socket
/// (`sockets`, from [`shim_sockets`] while the tasks ran) so none pile up in /run/containerd/s.
fn assert_shims_exit(env: &TestEnv, sockets: &[PathBuf]) {
    let rt = env.runtime;
    let gone = poll(Duration::from_secs(15), || {
        env.shims(rt).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "[{rt}] shim still running 15s after its last task was deleted: {:?}",
        env.shims(rt)
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    let mut left: Vec<_> = sockets.iter().filter(|s| s.exists()).collect();
    left.dedup();
    // containerd 2.1's own runc shim leaves a group shim's socket behind (seen on Debian's
    // 2.1.9); that is the reference's behaviour, not the harness's, so the stock run only notes
    // it and removes the dead file. sluice is held to removing it.
    if rt == Runtime::RuncV2 && versions::selected().line.is_v2() && !left.is_empty() {
        eprintln!("[{rt}] note: containerd 2.x's stock shim left {left:?}; removing");
        for s in &left {
            let _ = std::fs::remove_file(s);
        }
        return;
    }
    assert!(
        left.is_empty(),
        "[{rt}] the shim exited but left its socket behind: {left:?}"
    );
}

// ---- lifecycle ---------------------------------------------------------------------------

/// `ctr run` of `sh -c 'echo out; echo err >&2'`: both streams arrive, separately, exit 0.
fn stdout_and_stderr(rt: Runtime) {
    let env = TestEnv::start("stdio", rt);
    let out = env.run("c1", &["sh", "-c", "echo out; echo err >&2"]);
    let what = format!("[{rt}] ctr run sh -c 'echo out; echo err >&2'");
    assert_code(&out, 0, &what);
    assert_stdout(&out, "out\n", &what);
    assert_eq!(
        out.stderr_str(),
        "err\n",
        "{what}: unexpected stderr\n{out}"
    );
}

/// A container printing 1 MiB: every byte arrives, in order (the container's own output keeps
/// the stock semantics: nothing dropped). tests/stress.rs runs the same check many times.
fn large_stdout(rt: Runtime) {
    let env = TestEnv::start("bigout", rt);
    if let Err(loss) = run_large_stdout(&env, "c1") {
        panic!("[{rt}] ctr run yes | head -c 1MiB: {loss}\n{}", loss.out);
    }
}

/// `echo hi | ctr run ... `: stdin reaches the container. (ctr 1.6 never closes the stdin FIFO
/// on EOF for `run`, so the container reads a line or a byte count instead of waiting for EOF.)
fn stdin(rt: Runtime) {
    let env = TestEnv::start("stdin", rt);
    let opts = RunOpts {
        stdin: Some(b"hi\n".to_vec()),
        ..RunOpts::default()
    };
    let out = env.run_with("c1", &opts, &["sh", "-c", "read line; echo \"got:$line\""]);
    let what = format!("[{rt}] echo hi | ctr run sh -c 'read line; echo got:$line'");
    assert_code(&out, 0, &what);
    assert_stdout(&out, "got:hi\n", &what);

    let big = RunOpts {
        stdin: Some(vec![b'x'; 200_000]),
        ..RunOpts::default()
    };
    let out = env.run_with("c2", &big, &["sh", "-c", "head -c 200000 | wc -c"]);
    let what = format!("[{rt}] 200000 bytes | ctr run head -c 200000 | wc -c");
    assert_code(&out, 0, &what);
    assert_eq!(out.stdout_str().trim(), "200000", "{what}\n{out}");
}

/// The container's exit code is ctr's exit code.
fn exit_code(rt: Runtime) {
    let env = TestEnv::start("exitcode", rt);
    let out = env.run("c1", &["sh", "-c", "exit 7"]);
    assert_code(&out, 7, &format!("[{rt}] ctr run sh -c 'exit 7'"));
    let out = env.run("c2", &["false"]);
    assert_code(&out, 1, &format!("[{rt}] ctr run false"));
}

/// `ctr task exec` into a running container: output, stderr and exit code.
fn exec(rt: Runtime) {
    let env = TestEnv::start("exec", rt);
    start_sleeper(&env, "c1");
    let out = env.exec(
        "c1",
        "e1",
        &["sh", "-c", "echo from-exec; echo exec-err >&2; exit 3"],
        CTR_TIMEOUT,
    );
    let what = format!("[{rt}] ctr task exec c1 sh -c '...; exit 3'");
    assert_code(&out, 3, &what);
    assert_stdout(&out, "from-exec\n", &what);
    assert_eq!(
        out.stderr_str(),
        "exec-err\n",
        "{what}: unexpected stderr\n{out}"
    );

    // A second exec sees the container's own process.
    let out = env.exec("c1", "e2", &["cat", "/proc/1/cmdline"], CTR_TIMEOUT);
    let what = format!("[{rt}] ctr task exec c1 cat /proc/1/cmdline");
    assert_code(&out, 0, &what);
    assert_stdout(&out, "sleep\u{0}1000\u{0}", &what);
    containers::kill_and_delete(&env, "c1");
}

/// SIGKILL through `ctr task kill`: the attached `ctr run` exits 137 and `--rm` cleans up.
fn kill(rt: Runtime) {
    let env = TestEnv::start("kill", rt);
    let mut run = env.spawn_run("c1", &["sleep", "1000"]);
    let running = poll(Duration::from_secs(30), || {
        assert!(!run.has_exited(), "[{rt}] ctr run sleep 1000 exited early");
        env.task("c1").filter(|t| t.status == "RUNNING")
    });
    assert!(
        running.is_some(),
        "[{rt}] task c1 never ran: {:?}",
        env.tasks()
    );
    env.kill("c1", "SIGKILL")
        .expect_success(&format!("[{rt}] ctr task kill -s SIGKILL c1"));
    let out = run.wait(Duration::from_secs(30));
    assert_code(&out, 137, &format!("[{rt}] attached ctr run after SIGKILL"));
    assert!(
        !env.containers().contains(&"c1".to_string()),
        "[{rt}] ctr run --rm left container c1 behind"
    );
}

/// Kill, then delete: `ctr task delete` reports the 137, task and container disappear, and the
/// shim exits.
fn delete(rt: Runtime) {
    let env = TestEnv::start("delete", rt);
    start_sleeper(&env, "c1");
    assert_eq!(env.shims(rt).len(), 1, "[{rt}] expected one shim for c1");
    let sockets = shim_sockets(&env);
    env.kill("c1", "SIGKILL")
        .expect_success(&format!("[{rt}] ctr task kill -s SIGKILL c1"));
    env.wait_task_status("c1", "STOPPED", Duration::from_secs(30));
    let out = env
        .task_delete("c1")
        .expect_success(&format!("[{rt}] ctr task delete c1"));
    // ctr 1.6 exits 0 here and warns with the exit code on stderr.
    assert!(
        out.stderr_str().contains("exit code 137"),
        "[{rt}] ctr task delete did not report exit code 137\n{out}"
    );
    assert!(env.task("c1").is_none(), "[{rt}] task c1 still listed");
    env.container_delete("c1")
        .expect_success(&format!("[{rt}] ctr container delete c1"));
    assert!(env.containers().is_empty(), "[{rt}] containers left");
    assert_shims_exit(&env, &sockets);
}

/// Two containers annotated with the same `io.containerd.runc.v2.group` share one shim.
fn group_shares_one_shim(rt: Runtime) {
    let env = TestEnv::start("group", rt);
    let ann = "io.containerd.runc.v2.group=grp1";
    env.run_detached("g1", &[ann], &["sleep", "1000"]);
    env.run_detached("g2", &[ann], &["sleep", "1000"]);
    env.wait_task_status("g1", "RUNNING", Duration::from_secs(30));
    env.wait_task_status("g2", "RUNNING", Duration::from_secs(30));
    // `shim start` invocations are short-lived; wait for the steady state.
    let one = poll(Duration::from_secs(10), || {
        (env.shims(rt).len() == 1).then_some(())
    });
    assert!(
        one.is_some(),
        "[{rt}] expected exactly one {} serving g1 and g2, found: {:?}",
        rt.shim_binary(),
        env.shims(rt)
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    let sockets = shim_sockets(&env);
    assert_eq!(
        sockets.len(),
        2,
        "[{rt}] expected an address file for g1 and for g2: {sockets:?}"
    );
    assert_eq!(
        sockets[0], sockets[1],
        "[{rt}] g1 and g2 must name the same shim socket"
    );
    for id in ["g1", "g2"] {
        let out = env.exec(id, "e1", &["echo", id], CTR_TIMEOUT);
        let what = format!("[{rt}] ctr task exec {id} echo {id}");
        assert_code(&out, 0, &what);
        assert_stdout(&out, &format!("{id}\n"), &what);
    }
    containers::kill_and_delete(&env, "g1");
    assert_eq!(
        env.shims(rt).len(),
        1,
        "[{rt}] the group shim must stay while g2 lives"
    );
    containers::kill_and_delete(&env, "g2");
    assert_shims_exit(&env, &sockets);
}
