//! The only way the shim runs runc: command lines for each verb, run through [`invoke::run`].
//!
//! Knows nothing of ttrpc or containerd's requests; callers pass plain values and get runc's
//! output or a [`RuncError`] that names the verb, the container, the time and runc's words.

pub mod error;
pub mod files;
pub mod invoke;
pub mod locate;

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use log::warn;

pub use error::RuncError;
pub use invoke::CallStdio;
pub use locate::{runc_for, LocateError};

use crate::tail::Tail;

/// Default deadline of a runc call. runc itself finishes in well under a second; hooks, image
/// mounts on a loaded node and cgroup setup can take tens of seconds. Two minutes is long enough
/// never to cut a healthy call and short enough that a wedged one frees its container.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Environment variable (seconds) that overrides [`DEFAULT_DEADLINE`]; containerd passes its
/// environment to the shim.
pub const DEADLINE_ENV: &str = "SLUICE_RUNC_TIMEOUT";

/// How to run runc for the containers of one namespace.
#[derive(Debug, Clone)]
pub struct Runc {
    pub binary: PathBuf,
    /// `--criu`: the CRIU binary for checkpoint and restore, if not the default.
    pub criu: Option<PathBuf>,
    /// `--root`: runc's state directory.
    pub root: PathBuf,
    pub systemd_cgroup: bool,
    pub deadline: Duration,
}

/// Options of `runc checkpoint` and `runc restore`.
#[derive(Debug, Clone, Default)]
pub struct CheckpointArgs {
    pub image_path: PathBuf,
    pub work_path: PathBuf,
    /// Checkpoint only: keep the container running (`--leave-running`).
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub empty_ns: Vec<String>,
    pub cgroups_mode: String,
}

/// `<bundle>/<name of the process spec, less .json>-exec.log`: one per exec, like the spec.
fn exec_log(bundle: &Path, process_json: &Path) -> PathBuf {
    let stem = process_json
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "exec".into());
    bundle.join(format!("{stem}-exec.log"))
}

impl CheckpointArgs {
    fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "--image-path".into(),
            self.image_path.clone().into(),
            "--work-path".into(),
            self.work_path.clone().into(),
        ];
        let flags = [
            (self.tcp_established, "--tcp-established"),
            (self.ext_unix_sk, "--ext-unix-sk"),
            (self.shell_job, "--shell-job"),
            (self.file_locks, "--file-locks"),
        ];
        a.extend(
            flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| OsString::from(*f)),
        );
        for ns in &self.empty_ns {
            a.extend(["--empty-ns".into(), ns.into()]);
        }
        if !self.cgroups_mode.is_empty() {
            a.extend([
                "--manage-cgroups-mode".into(),
                self.cgroups_mode.clone().into(),
            ]);
        }
        a
    }
}

/// Options of `runc create`.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

/// How the process of a create or exec gets its stdio.
pub enum RuncIo {
    /// Pipes (runc's own stdio too).
    Pipes(ProcessStdio),
    /// A terminal: runc sends the pty master to this console socket.
    Console(PathBuf),
}

/// The stdio of a create or exec: the process's pipes, and the record of its stderr.
pub struct ProcessStdio {
    pub stdin: Option<std::os::fd::OwnedFd>,
    pub stdout: std::os::fd::OwnedFd,
    pub stderr: std::os::fd::OwnedFd,
    pub tail: Arc<Tail>,
}

impl Runc {
    /// The deadline from the environment, or the default.
    pub fn deadline_from_env() -> Duration {
        std::env::var(DEADLINE_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_DEADLINE)
    }

    fn global_args(&self, log: Option<&Path>) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec!["--root".into(), self.root.clone().into()];
        if let Some(log) = log {
            a.extend([
                "--log".into(),
                log.into(),
                "--log-format".into(),
                "json".into(),
            ]);
        }
        if self.systemd_cgroup {
            a.push("--systemd-cgroup".into());
        }
        if let Some(criu) = &self.criu {
            a.extend(["--criu".into(), criu.into()]);
        }
        a
    }

    fn call(
        &self,
        verb: &'static str,
        container: &str,
        log: Option<&Path>,
        verb_args: Vec<OsString>,
        stdio: CallStdio,
    ) -> invoke::Call {
        let mut args = self.global_args(log);
        args.push(verb.into());
        args.extend(verb_args);
        let id = container.to_string();
        invoke::Call {
            verb,
            container: container.to_string(),
            binary: self.binary.clone(),
            args,
            stdio,
            log: log.map(Path::to_path_buf),
            deadline: self.deadline,
            on_slow: Some(Box::new(move |elapsed| {
                warn!("runc {verb} for container {id} still running after {elapsed:?}, half its deadline")
            })),
        }
    }

    /// `runc create`: the init process gets `stdio`; its pid lands in `pid_file`.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        opts: &CreateOpts,
        io: RuncIo,
    ) -> Result<(), RuncError> {
        let mut a: Vec<OsString> = vec![
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        if opts.no_pivot {
            a.push("--no-pivot".into());
        }
        if opts.no_new_keyring {
            a.push("--no-new-keyring".into());
        }
        let stdio = with_io(&mut a, io);
        a.push(id.into());
        let log = bundle.join("log.json");
        invoke::run(self.call("create", id, Some(&log), a, stdio)).await?;
        Ok(())
    }

    pub async fn start(&self, id: &str, bundle: &Path) -> Result<(), RuncError> {
        self.simple("start", id, bundle, vec![id.into()]).await
    }

    /// `runc exec --detach`: the process described by `process_json` gets `stdio`.
    pub async fn exec(
        &self,
        id: &str,
        bundle: &Path,
        process_json: &Path,
        pid_file: &Path,
        io: RuncIo,
    ) -> Result<(), RuncError> {
        let mut a: Vec<OsString> = vec![
            "--detach".into(),
            "--pid-file".into(),
            pid_file.into(),
            "--process".into(),
            process_json.into(),
        ];
        let stdio = with_io(&mut a, io);
        a.push(id.into());
        // Each exec gets its own runc log, read for the error and then removed: with one shared
        // log.json, a probe that fails every few seconds grows /run without bound (containerd
        // #8972; the Go shim does the same since #11862).
        let log = files::Scratch::named(exec_log(bundle, process_json));
        invoke::run(self.call("exec", id, Some(log.path()), a, stdio)).await?;
        Ok(())
    }

    pub async fn kill(
        &self,
        id: &str,
        bundle: &Path,
        signal: u32,
        all: bool,
    ) -> Result<(), RuncError> {
        let mut a: Vec<OsString> = Vec::new();
        if all {
            a.push("--all".into());
        }
        a.push(id.into());
        a.push(signal.to_string().into());
        self.simple("kill", id, bundle, a).await
    }

    /// `runc delete`; `force` also kills a running container.
    pub async fn delete(
        &self,
        id: &str,
        bundle: Option<&Path>,
        force: bool,
    ) -> Result<(), RuncError> {
        let mut a: Vec<OsString> = Vec::new();
        if force {
            a.push("--force".into());
        }
        a.push(id.into());
        let log = bundle.map(|b| b.join("log.json"));
        invoke::run(self.call("delete", id, log.as_deref(), a, CallStdio::Capture)).await?;
        Ok(())
    }

    pub async fn pause(&self, id: &str, bundle: &Path) -> Result<(), RuncError> {
        self.simple("pause", id, bundle, vec![id.into()]).await
    }

    pub async fn resume(&self, id: &str, bundle: &Path) -> Result<(), RuncError> {
        self.simple("resume", id, bundle, vec![id.into()]).await
    }

    /// `runc update --resources <file>` with OCI `LinuxResources` JSON in `resources`.
    pub async fn update(&self, id: &str, bundle: &Path, resources: &Path) -> Result<(), RuncError> {
        self.simple(
            "update",
            id,
            bundle,
            vec!["--resources".into(), resources.into(), id.into()],
        )
        .await
    }

    async fn simple(
        &self,
        verb: &'static str,
        id: &str,
        bundle: &Path,
        args: Vec<OsString>,
    ) -> Result<(), RuncError> {
        let log = bundle.join("log.json");
        invoke::run(self.call(verb, id, Some(&log), args, CallStdio::Capture)).await?;
        Ok(())
    }

    /// `runc checkpoint` into `args.image_path`.
    pub async fn checkpoint(
        &self,
        id: &str,
        bundle: &Path,
        args: &CheckpointArgs,
    ) -> Result<(), RuncError> {
        let mut a = args.args();
        if args.leave_running {
            a.push("--leave-running".into());
        }
        a.push(id.into());
        self.simple("checkpoint", id, bundle, a).await
    }

    /// `runc restore --detach` from `args.image_path`; the process gets `io`.
    pub async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        opts: &CreateOpts,
        args: &CheckpointArgs,
        io: RuncIo,
    ) -> Result<(), RuncError> {
        let mut a: Vec<OsString> = vec![
            "--detach".into(),
            "--bundle".into(),
            bundle.into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        a.extend(args.args());
        if opts.no_pivot {
            a.push("--no-pivot".into());
        }
        let stdio = with_io(&mut a, io);
        a.push(id.into());
        let log = bundle.join("log.json");
        invoke::run(self.call("restore", id, Some(&log), a, stdio)).await?;
        Ok(())
    }

    /// `runc features`: what this runc supports, as its JSON.
    pub async fn features(&self) -> Result<Vec<u8>, RuncError> {
        invoke::run(self.call("features", "", None, Vec::new(), CallStdio::Capture)).await
    }

    /// `runc ps`: the pids in the container.
    pub async fn ps(&self, id: &str, bundle: &Path) -> Result<Vec<u32>, RuncError> {
        let log = bundle.join("log.json");
        let out = invoke::run(self.call(
            "ps",
            id,
            Some(&log),
            vec!["--format".into(), "json".into(), id.into()],
            CallStdio::Capture,
        ))
        .await?;
        parse_ps(&out).map_err(|reason| RuncError::BadOutput {
            verb: "ps",
            container: id.to_string(),
            reason,
        })
    }
}

/// runc's stdio for `io`, adding `--console-socket` to `args` for a terminal.
fn with_io(args: &mut Vec<OsString>, io: RuncIo) -> CallStdio {
    match io {
        RuncIo::Pipes(s) => CallStdio::Process {
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr,
            tail: s.tail,
        },
        RuncIo::Console(socket) => {
            args.extend(["--console-socket".into(), socket.into()]);
            CallStdio::Capture
        }
    }
}

fn parse_ps(out: &[u8]) -> Result<Vec<u32>, String> {
    let text = String::from_utf8_lossy(out);
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return Ok(Vec::new());
    }
    serde_json::from_str(text).map_err(|e| {
        // runc's answer can sit behind megabytes of noise: quote only its ends.
        let quoted = crate::tail::Tail::new(512, 512);
        quoted.push(text.as_bytes());
        format!("{e} in {} bytes: {:?}", text.len(), quoted.render())
    })
}

#[cfg(test)]
mod tests;
