//! CRI end to end, and the three ways a vendor installs sluice, each driven by a real CRI client
//! (k8s-cri's tonic stubs) against a private containerd with its CRI plugin on. No registry: the
//! image is built locally (src/cri.rs) and imported with `ctr -n k8s.io images import`.
//!
//! Every test runs the same pod: RunPodSandbox (host network), two containers (CreateContainer,
//! StartContainer; the second is stopped and removed first), ContainerStatus, ExecSync with 300 007 bytes of output, the container's CRI log file,
//! StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox; and checks the runc
//! settings reached runc (`BinaryName` through a logging wrapper, `Root` through runc's state
//! dir), the pod was served by one shim process, which binary that shim was, and that nothing
//! is left once the pod is removed (runc state, mounts, bundles, cgroups).
//!
//! Run: `cargo test -p sluice-integration --test cri -- --ignored` (root; scripts/test.sh does,
//! for each containerd of `SLUICE_CONTAINERD`).

#[path = "cri/client.rs"]
mod client;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::Cri;
use k8s_cri::v1 as cri;
use sluice_integration::cmd::{excerpt, first_difference, poll};
use sluice_integration::cri::{
    parse_cri_log, shim_cgroup, systemd_driver, CriEnv, Install, HANDLER, IMAGE_REF, PAUSE_ARGV,
};
use sluice_integration::procs::ProcInfo;
use sluice_integration::{system, traces, versions};

/// Bytes the ExecSync prints: well over a 64 KiB pipe, and not a multiple of anything.
const EXEC_BYTES: usize = 300_007;
const EXEC_LINE: &str = "0123456789abcdef";
/// What the container prints before it sleeps; the CRI log file must hold exactly this.
const APP_STDOUT: [&str; 4] = ["hello from the container", "line 0", "line 1", "line 2"];
const APP_STDERR: [&str; 1] = ["to stderr"];

/// `yes EXEC_LINE | head -c EXEC_BYTES`, computed here.
/// The memory limit UpdateContainerResources gives the app container.
const RESIZED_MEMORY: i64 = 200 * 1024 * 1024;

fn expected_exec_stdout() -> Vec<u8> {
    let line = format!("{EXEC_LINE}\n");
    line.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(EXEC_BYTES)
        .collect()
}

/// What one pod run observed, for the install-specific checks.
struct PodRun {
    sandbox_id: String,
    container_id: String,
    /// The shim processes serving the containerd while sandbox and container ran.
    shims: Vec<ProcInfo>,
}

fn label() -> String {
    format!("containerd {}", versions::selected().version)
}

fn sandbox_config(env: &CriEnv, name: &str) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.into(),
            uid: format!("uid-{name}-{}", std::process::id()),
            namespace: "sluice-it".into(),
            attempt: 0,
        }),
        // Empty, as kubelet sends it for a host-network pod (no UTS namespace to name).
        hostname: String::new(),
        log_directory: env.pod_log_dir(name).display().to_string(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: env.cgroup_parent(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Node as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        labels: HashMap::from([("test".to_string(), "sluice".to_string())]),
        ..Default::default()
    }
}

/// The shim processes while the pod runs: `shim start` calls are short-lived, so wait for the
/// steady state of exactly one.
fn one_shim(env: &CriEnv, what: &str) -> Vec<ProcInfo> {
    let found = poll(Duration::from_secs(10), || {
        let s = env.shim_procs();
        (s.len() == 1).then_some(s)
    });
    found.unwrap_or_else(|| {
        panic!(
            "[{}] {what}: expected exactly one shim process serving the pod, found {:?}",
            label(),
            env.shim_procs()
                .iter()
                .map(|p| (p.pid, p.exe.clone(), p.cmdline()))
                .collect::<Vec<_>>()
        )
    })
}

/// The whole pod lifecycle through CRI, asserting what a kubelet would see at each step.
fn run_pod(env: &CriEnv, name: &str) -> PodRun {
    let l = label();
    let c = Cri::connect(env.socket());

    let v = c.ok(
        "Version",
        c.rs().version(cri::VersionRequest {
            version: "v1".into(),
        }),
    );
    assert_eq!(v.runtime_name, "containerd", "[{l}] Version: {v:?}");

    // The imported image is what CRI resolves (no pull: there is no registry).
    let img = c.ok(
        "ImageStatus",
        c.is().image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: IMAGE_REF.into(),
                ..Default::default()
            }),
            verbose: false,
        }),
    );
    let image = img
        .image
        .unwrap_or_else(|| panic!("[{l}] ImageStatus({IMAGE_REF}): CRI does not see the image"));
    assert!(
        image.repo_tags.iter().any(|t| t == IMAGE_REF),
        "[{l}] ImageStatus repo tags {:?}",
        image.repo_tags
    );

    let pod_config = sandbox_config(env, name);
    fs::create_dir_all(env.pod_log_dir(name)).expect("mkdir pod log dir");
    let started = Instant::now();
    let sandbox_id = c
        .ok(
            "RunPodSandbox",
            c.rs().run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(pod_config.clone()),
                runtime_handler: HANDLER.into(),
            }),
        )
        .pod_sandbox_id;
    eprintln!(
        "[{l}] RunPodSandbox {sandbox_id} took {:?}",
        started.elapsed()
    );
    let status = c.ok(
        "PodSandboxStatus",
        c.rs().pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.clone(),
            verbose: false,
        }),
    );
    let st = status.status.expect("PodSandboxStatus has a status");
    assert_eq!(
        st.state,
        cri::PodSandboxState::SandboxReady as i32,
        "[{l}] sandbox not ready: {st:?}"
    );

    // A TERM handler with its own exit code: StopContainer's signal must reach the process and
    // its exit status must come back through the shim.
    let script = format!(
        "trap 'exit 42' TERM; echo {}; echo {} >&2; i=0; \
         while [ $i -lt 3 ]; do echo line $i; i=$((i+1)); done; sleep 2147483647 & wait",
        APP_STDOUT[0], APP_STDERR[0]
    );
    let side_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "side".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE_REF.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sleep".into(), "1000".into()],
        log_path: "side_0.log".into(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: "app".into(),
            attempt: 0,
        }),
        image: Some(cri::ImageSpec {
            image: IMAGE_REF.into(),
            ..Default::default()
        }),
        command: vec!["/bin/sh".into(), "-c".into(), script],
        log_path: "app_0.log".into(),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let container_id = c
        .ok(
            "CreateContainer",
            c.rs().create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.clone(),
                config: Some(container_config),
                sandbox_config: Some(pod_config.clone()),
            }),
        )
        .container_id;
    c.ok(
        "StartContainer",
        c.rs().start_container(cri::StartContainerRequest {
            container_id: container_id.clone(),
        }),
    );
    // A second container in the pod, served by the same shim, removed before the app.
    let side_id = c
        .ok(
            "CreateContainer side",
            c.rs().create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.clone(),
                config: Some(side_config),
                sandbox_config: Some(pod_config),
            }),
        )
        .container_id;
    c.ok(
        "StartContainer side",
        c.rs().start_container(cri::StartContainerRequest {
            container_id: side_id.clone(),
        }),
    );

    let status = container_status(&c, &container_id);
    assert_eq!(
        status.state,
        cri::ContainerState::ContainerRunning as i32,
        "[{l}] ContainerStatus after StartContainer: {status:?}"
    );
    let log_path = env.pod_log_dir(name).join("app_0.log");
    assert_eq!(
        Path::new(&status.log_path),
        log_path,
        "[{l}] ContainerStatus.log_path"
    );

    // The pod (sandbox and container) is served by one shim process, at one socket, in the
    // handler's ShimCgroup.
    let shims = one_shim(env, "sandbox and container running");
    if env.install != Install::PackagedSnippet {
        let want = format!(":{}", shim_cgroup(&env.env));
        for s in &shims {
            let text = fs::read_to_string(format!("/proc/{}/cgroup", s.pid)).unwrap_or_default();
            assert!(
                text.lines().any(|l| l.ends_with(&want)),
                "[{l}] ShimCgroup {}: shim {} is in\n{text}",
                shim_cgroup(&env.env),
                s.pid
            );
        }
    }
    let sockets = env.env.shim_sockets();
    assert!(
        sockets.len() == 3 && sockets.iter().all(|s| *s == sockets[0]),
        "[{l}] the sandbox's and both containers' bundles must name one shim socket: {sockets:?}"
    );

    // ExecSync: more than a pipe holds, on stdout; a line on stderr; an exit code.
    let started = Instant::now();
    let exec = c
        .call(
            "ExecSync",
            Duration::from_secs(90),
            c.rs().exec_sync(cri::ExecSyncRequest {
                container_id: container_id.clone(),
                cmd: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    format!("yes {EXEC_LINE} | head -c {EXEC_BYTES}; echo exec-stderr >&2; exit 3"),
                ],
                timeout: 60,
            }),
        )
        .unwrap_or_else(|s| panic!("[{l}] ExecSync failed: {:?}: {}", s.code(), s.message()));
    eprintln!(
        "[{l}] ExecSync of {} bytes took {:?}",
        exec.stdout.len(),
        started.elapsed()
    );
    assert_eq!(
        exec.exit_code,
        3,
        "[{l}] ExecSync exit code; stderr {}",
        excerpt(&exec.stderr)
    );
    let expected = expected_exec_stdout();
    assert!(
        exec.stdout == expected,
        "[{l}] ExecSync stdout: {} bytes, expected {} ({}): {}",
        exec.stdout.len(),
        expected.len(),
        first_difference(&exec.stdout, &expected),
        excerpt(&exec.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&exec.stderr),
        "exec-stderr\n",
        "[{l}] ExecSync stderr"
    );

    // UpdateContainerResources, as an in-place pod resize sends it: the limits reach the
    // container's own cgroup (v2 files, or v1's memory and cpu controllers).
    c.ok(
        "UpdateContainerResources",
        c.rs()
            .update_container_resources(cri::UpdateContainerResourcesRequest {
                container_id: container_id.clone(),
                linux: Some(cri::LinuxContainerResources {
                    memory_limit_in_bytes: RESIZED_MEMORY,
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
    );
    let limits = c
        .call(
            "ExecSync",
            Duration::from_secs(60),
            c.rs().exec_sync(cri::ExecSyncRequest {
                container_id: container_id.clone(),
                cmd: vec![
                    "/bin/sh".into(),
                    "-c".into(),
                    "cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max; \
                     cut -d' ' -f1 cpu.max; else cat memory/memory.limit_in_bytes \
                     cpu/cpu.cfs_quota_us; fi"
                        .into(),
                ],
                timeout: 30,
            }),
        )
        .unwrap_or_else(|s| panic!("[{l}] ExecSync failed: {:?}: {}", s.code(), s.message()));
    assert_eq!(
        String::from_utf8_lossy(&limits.stdout),
        format!("{RESIZED_MEMORY}\n50000\n"),
        "[{l}] the container's memory limit and cpu quota after UpdateContainerResources; \
         stderr {}",
        excerpt(&limits.stderr)
    );
    // The same limit seen from the host, in the container's own cgroup wherever its driver put
    // it: a scope of the pod's slice (systemd), `<parent>/<id>` (cgroupfs), or the literal
    // `slice:prefix:id` that runc's cgroupfs driver makes of a slice parent (the packaged
    // snippet leaves SystemdCgroup unset).
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (root, file) = if v2 {
        ("/sys/fs/cgroup", "memory.max")
    } else {
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
    };
    let dirs = cgroup_dirs_named(Path::new(root), &container_id, 6);
    assert_eq!(
        dirs.len(),
        1,
        "[{l}] cgroups of container {container_id} under {root} (systemd driver: {})",
        systemd_driver()
    );
    let limit_file = dirs[0].join(file);
    assert_eq!(
        fs::read_to_string(&limit_file)
            .map(|t| t.trim().to_string())
            .ok(),
        Some(RESIZED_MEMORY.to_string()),
        "[{l}] {} after UpdateContainerResources",
        limit_file.display()
    );

    // The container's log, as CRI writes it: every line, per stream, in order.
    let want_out: Vec<String> = APP_STDOUT.iter().map(|s| s.to_string()).collect();
    let want_err: Vec<String> = APP_STDERR.iter().map(|s| s.to_string()).collect();
    let streams = |text: &str| {
        let entries = parse_cri_log(text);
        let pick = |s: &str| -> Vec<String> {
            entries
                .iter()
                .filter(|(st, _)| st == s)
                .map(|(_, t)| t.clone())
                .collect()
        };
        (pick("stdout"), pick("stderr"))
    };
    let got = poll(Duration::from_secs(10), || {
        let text = fs::read_to_string(&log_path).ok()?;
        let (o, e) = streams(&text);
        (o == want_out && e == want_err).then_some(())
    });
    let text = fs::read_to_string(&log_path).unwrap_or_else(|e| format!("<{e}>"));
    assert!(
        got.is_some(),
        "[{l}] CRI log {} should hold stdout {want_out:?} and stderr {want_err:?}; it holds {:?}\n{text}",
        log_path.display(),
        streams(&text)
    );

    c.ok(
        "StopContainer side",
        c.rs().stop_container(cri::StopContainerRequest {
            container_id: side_id.clone(),
            timeout: 5,
        }),
    );
    c.ok(
        "RemoveContainer side",
        c.rs().remove_container(cri::RemoveContainerRequest {
            container_id: side_id.clone(),
        }),
    );
    // StopContainer: SIGTERM, which the container's handler turns into exit code 42.
    c.ok(
        "StopContainer",
        c.rs().stop_container(cri::StopContainerRequest {
            container_id: container_id.clone(),
            timeout: 30,
        }),
    );
    let status = container_status(&c, &container_id);
    assert_eq!(
        (status.state, status.exit_code),
        (cri::ContainerState::ContainerExited as i32, 42),
        "[{l}] ContainerStatus after StopContainer: {status:?}"
    );
    c.ok(
        "RemoveContainer",
        c.rs().remove_container(cri::RemoveContainerRequest {
            container_id: container_id.clone(),
        }),
    );
    let left = c.ok(
        "ListContainers",
        c.rs()
            .list_containers(cri::ListContainersRequest { filter: None }),
    );
    assert!(
        left.containers.is_empty(),
        "[{l}] containers left after RemoveContainer: {:?}",
        left.containers
    );
    // The sandbox still runs, so its shim does too.
    assert_eq!(
        env.shim_procs().len(),
        1,
        "[{l}] the pod's shim must stay while the sandbox runs"
    );

    c.ok(
        "StopPodSandbox",
        c.rs().stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        }),
    );
    c.ok(
        "RemovePodSandbox",
        c.rs().remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: sandbox_id.clone(),
        }),
    );
    let pods = c.ok(
        "ListPodSandbox",
        c.rs()
            .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
    );
    assert!(
        pods.items.is_empty(),
        "[{l}] pods left after RemovePodSandbox: {:?}",
        pods.items
    );
    let gone = poll(Duration::from_secs(15), || {
        env.shim_procs().is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "[{l}] the pod's shim still runs 15s after RemovePodSandbox: {:?}",
        env.shim_procs()
            .iter()
            .map(|p| (p.pid, p.cmdline()))
            .collect::<Vec<_>>()
    );
    assert_nothing_left(env, &[&sandbox_id, &container_id, &side_id]);
    let left: Vec<_> = sockets.iter().filter(|s| s.exists()).collect();
    if env.install.is_sluice() {
        assert!(
            left.is_empty(),
            "[{l}] the shim exited but left its socket: {left:?}"
        );
    } else if !left.is_empty() {
        // containerd 2.1's stock shim leaves a grouped shim's socket (see scenarios.rs).
        eprintln!("[{l}] note: the stock shim left {left:?}; removing");
        for s in left {
            let _ = fs::remove_file(s);
        }
    }
    PodRun {
        sandbox_id,
        container_id,
        shims,
    }
}

/// After the pod's containers and then the pod are removed, what the Task `Delete` and the
/// `shim delete` calls clean up is gone: runc's state, the rootfs mounts, the bundles, the
/// cgroups of every container of the pod (containerd 2.x with task API v3 leaves it all to
/// the shim's Delete).
fn assert_nothing_left(env: &CriEnv, ids: &[&String]) {
    let l = label();
    let runc_state = env.env.runc_root.join("k8s.io");
    let states: Vec<_> = fs::read_dir(&runc_state)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        states.is_empty(),
        "[{l}] runc state left in {}: {states:?}",
        runc_state.display()
    );
    let tasks = env.env.dir.join("state/io.containerd.runtime.v2.task");
    let mounts = traces::mounts_under(&tasks);
    assert!(mounts.is_empty(), "[{l}] mounts left: {mounts:?}");
    let bundles: Vec<_> = fs::read_dir(tasks.join("k8s.io"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(bundles.is_empty(), "[{l}] bundles left: {bundles:?}");
    for id in ids {
        let cgroups = cgroup_dirs_named(Path::new("/sys/fs/cgroup"), id, 6);
        assert!(
            cgroups.is_empty(),
            "[{l}] cgroups of {id} left: {cgroups:?}"
        );
    }
}

fn container_status(c: &Cri, id: &str) -> cri::ContainerStatus {
    c.ok(
        "ContainerStatus",
        c.rs().container_status(cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose: false,
        }),
    )
    .status
    .expect("ContainerStatus has a status")
}

/// Directories under `root`, at most `depth` levels down, whose name contains `id`.
fn cgroup_dirs_named(root: &Path, id: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(root) else {
        return found;
    };
    for e in entries.flatten() {
        if !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = e.path();
        if e.file_name().to_string_lossy().contains(id) {
            found.push(path);
        } else if depth > 1 {
            found.extend(cgroup_dirs_named(&path, id, depth - 1));
        }
    }
    found
}

/// The runc settings of the handler reached runc, whichever way the shim got them:
/// `BinaryName` (every runc call went through the logging wrapper, none to the `runc` on
/// containerd's PATH) and `Root` (runc kept its state in `<Root>/k8s.io`).
fn assert_runc_settings_honoured(env: &CriEnv, run: &PodRun) {
    let l = label();
    let log = env.binary_name_log();
    for id in [&run.sandbox_id, &run.container_id] {
        let created = log
            .lines()
            .any(|c| c.contains(" create ") && c.contains(id.as_str()));
        assert!(
            created,
            "[{l}] BinaryName not honoured: the wrapper {} logged no `create` of {id}; it \
             logged:\n{log}",
            env.binary_name.display()
        );
        // The runc root is `<Root>/<namespace>`, as the stock shim makes it.
        let root = env.env.runc_root.join("k8s.io").display().to_string();
        assert!(
            log.lines()
                .any(|c| c.contains(&format!("--root {root} ")) && c.contains(id.as_str())),
            "[{l}] Root not honoured: no runc call for {id} used --root {root}; calls:\n{log}"
        );
    }
    assert!(
        log.lines().any(|c| c.contains(" exec ")),
        "[{l}] BinaryName not honoured for ExecSync: no `exec` call in:\n{log}"
    );
    // containerd 2.x introspects every CRI handler at startup (`<shim> -info`, which makes the
    // stock shim run `runc features`), including its built-in `runc` handler that has no
    // BinaryName: that call concerns no container and is left out.
    let fault_log = env.env.fault_log();
    let default_runc: Vec<&str> = fault_log
        .lines()
        .filter(|c| !c.contains("verb=features"))
        .collect();
    assert!(
        default_runc.is_empty(),
        "[{l}] runc on containerd's PATH was called although BinaryName names another:\n\
         {default_runc:#?}"
    );
}

/// The shim that served the pod is the sluice binary (or the stock one, for the reference).
fn assert_served_by(env: &CriEnv, run: &PodRun) {
    let l = label();
    let shim = &run.shims[0];
    let sluice = system::sluice_shim_bin();
    let stock = fs::canonicalize(&system::tools().stock_shim).expect("canonical stock shim");
    let exe: PathBuf = shim.exe.clone();
    if env.install.is_sluice() {
        assert_eq!(
            exe,
            sluice,
            "[{l}] {:?}: the pod's shim (pid {}, `{}`) is not the sluice binary",
            env.install,
            shim.pid,
            shim.cmdline()
        );
        // sluice's own log lines, through containerd's log, name the pod's containers.
        let log = env.containerd_log();
        for id in [&run.sandbox_id, &run.container_id] {
            assert!(
                log.lines()
                    .any(|line| line.contains("runtime=io.containerd.sluice.v2")
                        && line.contains(id.as_str())),
                "[{l}] no sluice log line (runtime=io.containerd.sluice.v2) for {id} in \
                 containerd's log:\n{}",
                env.env.log_tail(80)
            );
        }
    } else {
        assert_eq!(
            exe, stock,
            "[{l}] the reference pod's shim is not the stock one"
        );
    }
}

#[test]
#[ignore = "needs root, containerd with CRI and runc; run with --ignored"]
fn sluice_runtime_type_with_config_path() {
    let env = CriEnv::start("cri-cfgpath", Install::SluiceRuntimeType);
    let run = run_pod(&env, "pod-cfgpath");
    assert_runc_settings_honoured(&env, &run);
    assert_served_by(&env, &run);
    // containerd ran the binary by the name the runtime type gives it.
    assert!(
        run.shims[0]
            .argv
            .first()
            .map(|a| a.ends_with("/containerd-shim-sluice-v2"))
            .unwrap_or(false),
        "[{}] shim argv: {:?}",
        label(),
        run.shims[0].argv
    );
}

/// `runtime_path` works from containerd 1.7 on. containerd 1.6 (1.6.20) parses it but starts the
/// shim its runtime type names: the test asserts that too, so the packaging notes stay true.
#[test]
#[ignore = "needs root, containerd with CRI and runc; run with --ignored"]
fn runc_v2_runtime_type_with_runtime_path_to_sluice() {
    let env = CriEnv::start("cri-rtpath", Install::RuntimePath);
    let run = run_pod(&env, "pod-rtpath");
    assert_runc_settings_honoured(&env, &run);
    if versions::selected().line == versions::Line::V1_6 {
        let stock = fs::canonicalize(&system::tools().stock_shim).expect("canonical stock shim");
        assert_eq!(
            run.shims[0].exe,
            stock,
            "[{}] containerd 1.6 now honours runtime_path: update this test and \
             packaging/README.md",
            label()
        );
        eprintln!(
            "[{}] note: runtime_path ignored, the stock shim served (as known for 1.6)",
            label()
        );
        return;
    }
    assert_served_by(&env, &run);
}

#[test]
#[ignore = "needs root, containerd with CRI and runc; run with --ignored"]
fn sluice_installed_as_containerd_shim_runc_v2() {
    let env = CriEnv::start("cri-asrunc", Install::AsRuncV2Binary);
    let run = run_pod(&env, "pod-asrunc");
    assert_runc_settings_honoured(&env, &run);
    assert_served_by(&env, &run);
    // The handler names io.containerd.runc.v2 and no path: containerd looked the stock name
    // up on its PATH, where sluice comes first (assert_served_by checked the running shim is the
    // sluice binary), and that name answers `-v` as sluice.
    let v = std::process::Command::new(env.env.dir.join("shims/containerd-shim-runc-v2"))
        .arg("-v")
        .output()
        .expect("run containerd-shim-runc-v2 -v");
    let text = String::from_utf8_lossy(&v.stdout);
    assert!(
        text.starts_with("containerd-shim-sluice-v2"),
        "[{}] `containerd-shim-runc-v2 -v` on containerd's PATH is not sluice: {text:?}",
        label()
    );
}

/// The snippet `packaging/` ships for this containerd, imported as is, gives a working handler
/// served by sluice (with runc's defaults: no options).
#[test]
#[ignore = "needs root, containerd with CRI and runc; run with --ignored"]
fn packaged_config_snippet() {
    let env = CriEnv::start("cri-snippet", Install::PackagedSnippet);
    let run = run_pod(&env, "pod-snippet");
    assert_served_by(&env, &run);
    // No BinaryName: runc came from containerd's PATH (the pass-through wrapper logs it).
    let log = env.env.fault_log();
    assert!(
        log.lines()
            .any(|l| l.contains("verb=create") && l.contains(run.container_id.as_str())),
        "[{}] expected runc create of {} through the runc on containerd's PATH:\n{log}",
        label(),
        run.container_id
    );
}

/// The same pod under containerd's own shim: proves the harness (image, config, client, log
/// parsing, settings checks) is right, so a failure above is sluice's.
#[test]
#[ignore = "needs root, containerd with CRI and runc; run with --ignored"]
fn stock_runc_v2_reference() {
    let env = CriEnv::start("cri-stock", Install::Stock);
    let run = run_pod(&env, "pod-stock");
    assert_runc_settings_honoured(&env, &run);
    assert_served_by(&env, &run);
    // The sandbox image is the locally built one.
    let _ = PAUSE_ARGV;
}
