//! CRI end to end: a private containerd with its CRI plugin on, a runtime handler for one of the
//! ways a vendor installs sluice, and an OCI image built here from busybox (no registry).
//!
//! The CRI client itself (tonic, in `tests/cri/client.rs`) is a test-only dependency; this module
//! prepares everything it talks to:
//!
//! - [`CriEnv::start`]: a [`TestEnv`] whose config turns CRI on (own root, state and sockets,
//!   `restrict_oom_score_adj = true`, overlayfs, stream server on a random loopback port, no CNI
//!   config: pods use the host network), with the runtime handler [`HANDLER`] made as the
//!   [`Install`] says, in the config version of the containerd under test (2 for 1.6/1.7, 3
//!   for 2.x);
//! - the image [`IMAGE_REF`] (busybox, entrypoint `sleep`), built by [`build_oci_archive`] and
//!   imported with `ctr -n k8s.io images import`; it is also the pod sandbox ("pause") image;
//! - a `runc` wrapper named by the handler's `BinaryName`, which logs every call to
//!   [`CriEnv::binary_name_log`] before exec'ing the real runc, so a test can prove the option
//!   reached runc;
//! - runc state under the test's own runc root (`Root` option), and pod cgroups under `/<ns>`,
//!   so the harness's teardown finds everything. [`CriEnv`]'s `Drop` first removes what CRI
//!   made in the `k8s.io` namespace.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cmd::{self, poll, CmdOutput};
use crate::harness::{EnvOpts, TestEnv};
use crate::procs::{self, ProcInfo};
use crate::system;
use crate::versions::{self, Line};
use crate::Runtime;

/// The namespace the CRI plugin works in.
pub const K8S_NS: &str = "k8s.io";
/// The runtime handler name pods ask for (`RunPodSandboxRequest.runtime_handler`).
pub const HANDLER: &str = "sluice";
/// The image built by [`build_oci_archive`]; also the sandbox image.
pub const IMAGE_REF: &str = "docker.io/library/sluice-busybox:it";
/// The image's entrypoint: what a pod sandbox ("pause") container runs.
pub const PAUSE_ARGV: [&str; 2] = ["/bin/sleep", "2147483647"];
/// File name of the `BinaryName` wrapper's call log, in the test dir.
const BINARY_NAME_LOG: &str = "binary-name-runc.log";
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// runc's root when a handler sets none (the shims' default).
const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";

/// How the runtime handler [`HANDLER`] reaches a shim: the three ways a vendor installs sluice,
/// and the stock shim as the reference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Install {
    /// `runtime_type = "io.containerd.sluice.v2"`; runc settings in a TOML file named by the
    /// handler's `ConfigPath` (CRI sends `runtimeoptions.v1.Options{TypeUrl, ConfigPath}`).
    SluiceRuntimeType,
    /// `runtime_type = "io.containerd.runc.v2"`, `runtime_path` = the sluice binary; CRI sends
    /// runc `Options`.
    RuntimePath,
    /// `runtime_type = "io.containerd.runc.v2"`, sluice installed as `containerd-shim-runc-v2`
    /// first on containerd's PATH; CRI sends runc `Options`.
    AsRuncV2Binary,
    /// The snippet shipped in `packaging/` for the containerd under test, as is: runtime type
    /// `io.containerd.sluice.v2`, no options (runc and its root are the defaults). containerd
    /// 2.x: `containerd-config-v3.toml` as a drop-in (`imports`). 1.6/1.7:
    /// `containerd-config-v2.toml`'s tables added to the main config, because their `imports`
    /// replace a plugin's whole table (the main config's CRI settings would be lost).
    PackagedSnippet,
    /// containerd's own `containerd-shim-runc-v2` (validates the harness).
    Stock,
}

impl Install {
    /// Whether sluice serves the handler's pods.
    pub fn is_sluice(self) -> bool {
        self != Install::Stock
    }
}

/// A private CRI-enabled containerd with the image imported and the handler configured.
pub struct CriEnv {
    pub install: Install,
    /// The `BinaryName` wrapper runc every handler is configured with.
    pub binary_name: PathBuf,
    /// Where pods' container logs go (`PodSandboxConfig.log_directory` of [`CriEnv::pod_log_dir`]).
    pub log_root: PathBuf,
    /// Dropped last: its teardown removes the containerd, shims, mounts, cgroups and dir.
    pub env: TestEnv,
}

impl CriEnv {
    /// Starts the containerd selected by `SLUICE_CONTAINERD` with CRI on and the handler
    /// [`HANDLER`] installed as `install` says, and imports [`IMAGE_REF`]. Panics with the
    /// reason (and, through the harness, the containerd log) if any step fails.
    pub fn start(label: &str, install: Install) -> CriEnv {
        let sluice = system::sluice_shim_bin();
        let mut opts = EnvOpts {
            config: Some(Box::new(move |env: &TestEnv| cri_config(env, install))),
            shims: Vec::new(),
            ..EnvOpts::default()
        };
        if install == Install::AsRuncV2Binary {
            opts.shims
                .push(("containerd-shim-runc-v2".to_string(), sluice.clone()));
        }
        // The env's runtime decides whether `containerd-shim-sluice-v2` is on containerd's PATH:
        // only the installs by runtime type use that name. runtime_path must work without it.
        let runtime = match install {
            Install::SluiceRuntimeType | Install::PackagedSnippet => Runtime::Sluice,
            _ => Runtime::RuncV2,
        };
        // The config refers to files the environment must hold before containerd starts; they
        // are written by cri_config() (it runs after the layout exists, before containerd).
        let env = TestEnv::start_with(label, runtime, opts);
        let cri = CriEnv {
            install,
            binary_name: env.dir.join("binary-name-runc"),
            log_root: env.dir.join("pod-logs"),
            env,
        };
        cri.wait_cri_ready();
        cri.import_image();
        cri
    }

    /// The test's containerd socket (CRI is served on it too).
    pub fn socket(&self) -> &Path {
        &self.env.sock
    }

    /// `PodSandboxConfig.log_directory` for pod `name`.
    pub fn pod_log_dir(&self, name: &str) -> PathBuf {
        self.log_root.join(name)
    }

    /// `LinuxPodSandboxConfig.cgroup_parent`: under `/<ns>`, which teardown removes; with the
    /// systemd driver a slice, as a kubelet gives it (the CRI plugin then asks runc for the
    /// scope `system.slice:cri-containerd:<id>`, which systemd removes when it empties).
    pub fn cgroup_parent(&self) -> String {
        if systemd_driver() {
            "system.slice".to_string()
        } else {
            format!("/{}", self.env.ns)
        }
    }

    /// What the `BinaryName` wrapper logged: one line per runc call, its arguments.
    pub fn binary_name_log(&self) -> String {
        fs::read_to_string(self.env.dir.join(BINARY_NAME_LOG)).unwrap_or_default()
    }

    /// `ctr -a <sock> -n k8s.io <args>` with this containerd's own ctr.
    pub fn ctr_k8s(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut c = Command::new(&system::tools().ctr);
        c.env(crate::harness::CTR_QUIET_ENV, "1");
        c.arg("-a")
            .arg(&self.env.sock)
            .arg("-n")
            .arg(K8S_NS)
            .args(args);
        cmd::run(c, None, timeout)
    }

    /// Live shim processes serving this containerd, whatever their name.
    pub fn shim_procs(&self) -> Vec<ProcInfo> {
        let sock = self.env.sock.display().to_string();
        procs::find(|p| {
            p.has_arg_pair("-address", &sock)
                && p.argv.iter().any(|a| a == "-id")
                && !p.argv.iter().any(|a| a == "start" || a == "delete")
                && procs::alive(p.pid)
        })
    }

    /// The containerd log (shim logs included).
    pub fn containerd_log(&self) -> String {
        fs::read_to_string(&self.env.log_path).unwrap_or_default()
    }

    fn wait_cri_ready(&self) {
        // `ctr plugins ls` shows whether the CRI plugin loaded; a failure (e.g. a bad config)
        // would otherwise show up only as "unknown service runtime.v1.RuntimeService".
        let plugin = versions::selected().line.cri_runtime_plugin();
        let (ty, id) = plugin.rsplit_once('.').expect("plugin names have a type");
        let out = self
            .env
            .ctr(&["plugins", "ls"], Duration::from_secs(30))
            .expect_success("ctr plugins ls");
        let text = out.stdout_str();
        let row = text.lines().find(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 3 && f[0] == ty && f[1] == id
        });
        assert!(
            row.map(|r| r.split_whitespace().last() == Some("ok"))
                .unwrap_or(false),
            "the CRI plugin {plugin} did not load (row {row:?}):\n{text}\ncontainerd log:\n{}",
            self.env.log_tail(80)
        );
    }

    fn import_image(&self) {
        let archive = self.env.dir.join("image.tar");
        build_oci_archive(
            &self.env.rootfs,
            &self.env.dir.join("image-build"),
            &archive,
        );
        let a = archive.display().to_string();
        // ctr 1.6/1.7 unpack into the default snapshotter (overlayfs) unless --no-unpack.
        let out = self.ctr_k8s(&["images", "import", &a], Duration::from_secs(120));
        let out = out.expect_success("ctr -n k8s.io images import");
        let ls = self
            .ctr_k8s(&["images", "ls", "-q"], Duration::from_secs(30))
            .expect_success("ctr -n k8s.io images ls");
        assert!(
            ls.stdout_str().lines().any(|l| l == IMAGE_REF),
            "{IMAGE_REF} not listed after import; import said:\n{out}\nimages:\n{}",
            ls.stdout_str()
        );
    }

    /// Removes what CRI made in `k8s.io`: tasks and containers (pods left by a failed test),
    /// each call bounded. The rest (shims, mounts, cgroups, runc state) is the harness's.
    fn teardown_k8s(&self) {
        let listed = self.ctr_k8s(&["containers", "ls", "-q"], TEARDOWN_TIMEOUT);
        if !listed.success() {
            return;
        }
        for id in listed.stdout_str().lines() {
            let _ = self.ctr_k8s(
                &["task", "kill", "-a", "-s", "SIGKILL", id],
                TEARDOWN_TIMEOUT,
            );
            let _ = poll(Duration::from_secs(3), || {
                let ls = self.ctr_k8s(&["task", "ls"], TEARDOWN_TIMEOUT);
                (!ls.stdout_str()
                    .lines()
                    .any(|l| l.starts_with(id) && l.contains("RUNNING")))
                .then_some(())
            });
            let _ = self.ctr_k8s(&["task", "delete", "-f", id], TEARDOWN_TIMEOUT);
            let _ = self.ctr_k8s(&["containers", "delete", id], TEARDOWN_TIMEOUT);
        }
        // runc state the shims left in `<Root>/k8s.io` (the harness removes the directory).
        let root = self.env.runc_root.join(K8S_NS);
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                self.runc_delete(&root, &e.file_name().to_string_lossy());
            }
        }
        // Handlers without a Root option use runc's default root, shared with anything else
        // in k8s.io on this machine: only the IDs of this containerd's bundles are touched.
        let shared = Path::new(DEFAULT_RUNC_ROOT).join(K8S_NS);
        let bundles = self
            .env
            .dir
            .join("state/io.containerd.runtime.v2.task")
            .join(K8S_NS);
        if let Ok(entries) = fs::read_dir(bundles) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                if shared.join(&id).exists() {
                    self.runc_delete(&shared, &id);
                }
            }
        }
        // runc made that root if it was missing; leave it only if someone else uses it.
        let _ = fs::remove_dir(&shared);
    }

    fn runc_delete(&self, root: &Path, id: &str) {
        let mut c = Command::new(&system::tools().runc);
        c.arg("--root").arg(root).args(["delete", "--force", id]);
        let _ = cmd::run(c, None, TEARDOWN_TIMEOUT);
    }
}

impl Drop for CriEnv {
    fn drop(&mut self) {
        self.teardown_k8s();
        // self.env drops next and tears down the rest.
    }
}

/// The config of a CRI-enabled private containerd for `install`. Also writes the files it names
/// (the `BinaryName` wrapper and the `ConfigPath` TOML) into the test dir.
pub fn cri_config(env: &TestEnv, install: Install) -> String {
    let line = versions::selected().line;
    let tools = system::tools();
    let d = &env.dir;
    let binary_name = d.join("binary-name-runc");
    write_binary_name_wrapper(&binary_name, &d.join(BINARY_NAME_LOG), &tools.runc);
    for sub in ["cni/bin", "cni/net.d", "pod-logs"] {
        fs::create_dir_all(d.join(sub)).expect("mkdir cni/pod-logs");
    }
    // Settings every handler gets: the marker runc and the test's own runc root; the systemd
    // driver when the run asks for it.
    let mut runc_settings = format!(
        "BinaryName = {}\nRoot = {}\n",
        toml_str(&binary_name),
        toml_str(&env.runc_root)
    );
    if systemd_driver() {
        runc_settings.push_str("SystemdCgroup = true\n");
    }
    runc_settings.push_str(&format!("ShimCgroup = \"{}\"\n", shim_cgroup(env)));
    make_shim_cgroup(env);
    let rt = line.cri_runtime_plugin();
    let table = format!("plugins.\"{rt}\".containerd.runtimes.{HANDLER}");
    let handler = match install {
        Install::SluiceRuntimeType => {
            let cfg = d.join("sluice-runc.toml");
            fs::write(
                &cfg,
                format!("# runc settings for the sluice CRI handler\n{runc_settings}"),
            )
            .expect("write sluice-runc.toml");
            format!(
                "[{table}]\n  runtime_type = \"io.containerd.sluice.v2\"\n\
                 [{table}.options]\n  TypeUrl = \"io.containerd.sluice.v2.options\"\n  \
                 ConfigPath = {}\n",
                toml_str(&cfg)
            )
        }
        Install::RuntimePath => format!(
            "[{table}]\n  runtime_type = \"io.containerd.runc.v2\"\n  runtime_path = {}\n\
             [{table}.options]\n{}",
            toml_str(&system::sluice_shim_bin()),
            indent(&runc_settings)
        ),
        Install::AsRuncV2Binary | Install::Stock => format!(
            "[{table}]\n  runtime_type = \"io.containerd.runc.v2\"\n[{table}.options]\n{}",
            indent(&runc_settings)
        ),
        // The handler comes from the imported snippet.
        Install::PackagedSnippet => String::new(),
    };
    let cni = format!(
        "  bin_dir = {}\n  conf_dir = {}\n",
        toml_str(&d.join("cni/bin")),
        toml_str(&d.join("cni/net.d"))
    );
    let cri = match line {
        Line::V1_6 | Line::V1_7 => format!(
            r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE_REF}"
  # Root here lacks CAP_SYS_RESOURCE: a sandbox's oom_score_adj of -998 would make runc fail.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  enable_cdi = false
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "{HANDLER}"
[plugins."io.containerd.grpc.v1.cri".cni]
{cni}{handler}"#
        ),
        Line::V2 | Line::V2_2 | Line::V2_3 | Line::V2_4 => format!(
            r#"
[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{IMAGE_REF}"
[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE: a sandbox's oom_score_adj of -998 would make runc fail.
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  enable_cdi = false
[plugins."io.containerd.cri.v1.runtime".containerd]
  default_runtime_name = "{HANDLER}"
[plugins."io.containerd.cri.v1.runtime".cni]
{cni}[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
{handler}"#
        ),
    };
    let mut out = env.base_config_toml(line.unneeded_plugins());
    out.push_str(&cri);
    if install == Install::PackagedSnippet {
        let snippet = packaged_snippet(line);
        let text = fs::read_to_string(&snippet)
            .unwrap_or_else(|e| panic!("packaged snippet {}: {e}", snippet.display()));
        if line.is_v2() {
            // A drop-in: `imports` is a top-level key, so it goes before the first table.
            let at = out.find("\n[").expect("the base config has tables") + 1;
            out.insert_str(at, &format!("imports = [{}]\n\n", toml_str(&snippet)));
        } else {
            // Pasted into the main config, as packaging/README.md says for 1.6/1.7.
            out.push_str(&format!("\n# ---- from {} ----\n", snippet.display()));
            for l in text.lines().filter(|l| !l.starts_with("version")) {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

/// The runc option `ShimCgroup` every handler but the packaged snippet gets: `/<ns>/shim`,
/// which the harness's teardown removes with the rest of `/<ns>`.
pub fn shim_cgroup(env: &TestEnv) -> String {
    format!("/{}/shim", env.ns)
}

/// Makes [`shim_cgroup`] before containerd starts: neither shim creates it (both only move
/// themselves into it). On cgroup v1 in every hierarchy but cpuset, whose new cgroups have no
/// CPUs or memory nodes to run on until someone gives them some.
fn make_shim_cgroup(env: &TestEnv) {
    let root = Path::new("/sys/fs/cgroup");
    let rel = shim_cgroup(env);
    let rel = rel.trim_start_matches('/');
    let dirs: Vec<PathBuf> = if root.join("cgroup.controllers").exists() {
        vec![root.join(rel)]
    } else {
        fs::read_dir(root)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|h| h.join("cgroup.procs").exists())
                    .filter(|h| h.file_name().is_none_or(|n| n != "cpuset"))
                    .map(|h| h.join(rel))
                    .collect()
            })
            .unwrap_or_default()
    };
    for d in dirs {
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
    }
}

/// The containerd config snippet `packaging/` ships for `line`.
pub fn packaged_snippet(line: Line) -> PathBuf {
    let name = match line.config_version() {
        3 => "containerd-config-v3.toml",
        _ => "containerd-config-v2.toml",
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../packaging")
        .join(name)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

/// A TOML basic string.
fn toml_str(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).expect("string to JSON")
}

/// `BinaryName` target: logs its arguments, then becomes the real runc.
fn write_binary_name_wrapper(path: &Path, log: &Path, runc: &Path) {
    let script = format!(
        "#!/bin/sh\n# BinaryName wrapper of a sluice CRI test: log the call, run the real runc.\n\
         echo \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        runc.display()
    );
    fs::write(path, script).expect("write BinaryName wrapper");
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).expect("chmod wrapper");
}

// ---- the OCI image ---------------------------------------------------------------------------

const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// The OCI name of this machine's architecture.
pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => panic!("no OCI architecture name for {other}"),
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `bytes` as a blob of the layout at `layout`; returns its descriptor fields.
fn put_blob(layout: &Path, bytes: &[u8]) -> (String, usize) {
    let hex = sha256_hex(bytes);
    let p = layout.join("blobs/sha256").join(&hex);
    fs::write(&p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    (format!("sha256:{hex}"), bytes.len())
}

/// Builds an OCI image archive (an OCI image layout in a tar) of `rootfs` as one uncompressed
/// layer, named [`IMAGE_REF`], entrypoint [`PAUSE_ARGV`], at `archive`, working in `work`.
/// Digests are sha256 of the exact bytes; media types are the OCI ones.
pub fn build_oci_archive(rootfs: &Path, work: &Path, archive: &Path) {
    let layout = work.join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir layout");
    let layer_tar = work.join("layer.tar");
    let mut tar = Command::new("tar");
    tar.arg("--create")
        .arg("--file")
        .arg(&layer_tar)
        .args(["--sort=name", "--numeric-owner", "--owner=0", "--group=0"])
        .arg("--mtime=@0")
        .arg("--directory")
        .arg(rootfs)
        .arg(".");
    cmd::run(tar, None, Duration::from_secs(60)).expect_success("tar of the image layer");
    let layer = fs::read(&layer_tar).expect("read layer.tar");
    fs::remove_file(&layer_tar).expect("rm layer.tar");
    let (layer_digest, layer_size) = put_blob(&layout, &layer);

    let config = json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": oci_arch(),
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin"],
            "Entrypoint": PAUSE_ARGV,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "sluice-integration" }],
    });
    let config = serde_json::to_vec(&config).expect("config JSON");
    let (config_digest, config_size) = put_blob(&layout, &config);

    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": { "mediaType": MT_CONFIG, "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": MT_LAYER, "digest": layer_digest, "size": layer_size }],
    });
    let manifest = serde_json::to_vec(&manifest).expect("manifest JSON");
    let (manifest_digest, manifest_size) = put_blob(&layout, &manifest);

    let index = json!({
        "schemaVersion": 2,
        "mediaType": MT_INDEX,
        "manifests": [{
            "mediaType": MT_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": { "architecture": oci_arch(), "os": "linux" },
            "annotations": {
                "io.containerd.image.name": IMAGE_REF,
                "org.opencontainers.image.ref.name": IMAGE_REF.rsplit(':').next(),
            },
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index JSON"),
    )
    .expect("write index.json");
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("write oci-layout");

    let mut tar = Command::new("tar");
    tar.arg("--create")
        .arg("--file")
        .arg(archive)
        .args(["--numeric-owner", "--owner=0", "--group=0"])
        .arg("--directory")
        .arg(&layout)
        .args(["oci-layout", "index.json", "blobs"]);
    cmd::run(tar, None, Duration::from_secs(60)).expect_success("tar of the OCI layout");
    fs::remove_dir_all(&layout).expect("rm layout");
}

/// Parses a CRI container log (`<RFC 3339 time> <stream> <P|F> <text>` per line) into the
/// `(stream, line)` pairs a reader sees, joining partial (`P`) lines.
pub fn parse_cri_log(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut partial: Option<(String, String)> = None;
    for l in text.lines() {
        let mut f = l.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag), rest) = (f.next(), f.next(), f.next(), f.next())
        else {
            continue;
        };
        let rest = rest.unwrap_or("");
        let (s, mut acc) = partial
            .take()
            .unwrap_or_else(|| (stream.to_string(), String::new()));
        acc.push_str(rest);
        if tag == "P" {
            partial = Some((s, acc));
        } else {
            out.push((s, acc));
        }
    }
    out
}

/// `SLUICE_IT_CGROUP_DRIVER=systemd`: every CRI handler runs runc with the systemd cgroup driver
/// (`SystemdCgroup = true`) and pods get a slice as cgroup parent, as on a kubelet node with
/// `cgroupDriver: systemd`. Needs systemd as PID 1 (the guest lane).
pub fn systemd_driver() -> bool {
    std::env::var("SLUICE_IT_CGROUP_DRIVER").is_ok_and(|v| v == "systemd")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_log_lines_join_partials() {
        let log = "2024-01-01T00:00:00.1Z stdout F hello\n\
                   2024-01-01T00:00:00.2Z stderr P par\n\
                   2024-01-01T00:00:00.3Z stderr F tial\n\
                   2024-01-01T00:00:00.4Z stdout F \n";
        assert_eq!(
            parse_cri_log(log),
            vec![
                ("stdout".into(), "hello".into()),
                ("stderr".into(), "partial".into()),
                ("stdout".into(), "".into()),
            ]
        );
    }

    #[test]
    fn sha256_of_empty() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
