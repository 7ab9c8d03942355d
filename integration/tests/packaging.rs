//! `packaging/install.sh` against the containerd under test (`SLUICE_CONTAINERD`): what it
//! installs, and what containerd itself makes of the config it writes (`containerd config
//! dump`). The snippets' runtime behaviour is proven by `tests/cri.rs` (packaged_config_snippet).
//!
//! Run: `cargo test -p sluice-integration --test packaging -- --ignored`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sluice_integration::cmd::{self, CmdOutput};
use sluice_integration::system;
use sluice_integration::versions::{self, Line};

fn install_sh() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/install.sh")
}

/// A scratch dir removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("sluice-pkg-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("mkdir scratch");
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn version_arg() -> &'static str {
    match versions::selected().line {
        Line::V1_6 => "1.6",
        Line::V1_7 => "1.7",
        Line::V2 => "2",
    }
}

fn install(args: &[&str]) -> CmdOutput {
    let mut c = Command::new("bash");
    c.arg(install_sh())
        .args(["--containerd-version", version_arg()])
        .args(args);
    cmd::run(c, None, Duration::from_secs(30))
}

/// `containerd --config <cfg> config dump`: the config containerd would run with.
fn dump(config: &Path) -> String {
    let mut c = Command::new(&versions::selected().containerd);
    c.arg("--config").arg(config).args(["config", "dump"]);
    cmd::run(c, None, Duration::from_secs(30))
        .expect_success("containerd config dump")
        .stdout_str()
}

/// The value of `key` in TOML table `table` of a `config dump` (either quote style).
fn dumped(dump: &str, table: &str, key: &str) -> Option<String> {
    let norm = dump.replace('\'', "\"");
    let start = norm.find(&format!("[{table}]"))?;
    let body = &norm[start..];
    let body = &body[body.find('\n')? + 1..];
    // The table ends at the next header (dumps indent nested tables; trim finds them).
    let end = body
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(usize::MAX);
    let body: Vec<&str> = body.lines().take(end).collect();
    body.iter().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

fn cri_runtimes_table(name: &str) -> String {
    format!(
        "plugins.\"{}\".containerd.runtimes.{name}",
        versions::selected().line.cri_runtime_plugin()
    )
}

/// A node's existing config: the runc runtime with SystemdCgroup, a custom sandbox/CNI dir.
fn existing_config(path: &Path) {
    let text = match versions::selected().line {
        Line::V2 => {
            "version = 3\n\
             [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\n  \
             SystemdCgroup = true\n\
             [plugins.\"io.containerd.cri.v1.runtime\".cni]\n  conf_dir = \"/etc/sluice-test/net.d\"\n"
        }
        _ => {
            "version = 2\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  \
             runtime_type = \"io.containerd.runc.v2\"\n\
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  \
             SystemdCgroup = true\n\
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n  conf_dir = \"/etc/sluice-test/net.d\"\n"
        }
    };
    fs::create_dir_all(path.parent().expect("config has a dir")).expect("mkdir etc");
    fs::write(path, text).expect("write config");
}

/// The handler is registered and the node's own CRI settings survive.
fn assert_handler_and_settings_kept(config: &Path) {
    let v = &versions::selected().version;
    let d = dump(config);
    assert_eq!(
        dumped(&d, &cri_runtimes_table("sluice"), "runtime_type").as_deref(),
        Some("io.containerd.sluice.v2"),
        "[containerd {v}] the sluice handler is not in the effective config:\n{d}"
    );
    assert_eq!(
        dumped(&d, &cri_runtimes_table("runc"), "runtime_type").as_deref(),
        Some("io.containerd.runc.v2"),
        "[containerd {v}] the node's runc handler was lost:\n{d}"
    );
    assert_eq!(
        dumped(
            &d,
            &format!("{}.options", cri_runtimes_table("runc")),
            "SystemdCgroup"
        )
        .as_deref(),
        Some("true"),
        "[containerd {v}] the node's runc SystemdCgroup was lost:\n{d}"
    );
}

#[test]
#[ignore = "needs the containerd under test and the built shim; run with --ignored"]
fn install_binary_and_add_to_main_config() {
    let s = Scratch::new("main");
    let bin = s.0.join("bin");
    let config = s.0.join("etc/containerd/config.toml");
    existing_config(&config);
    let sluice = system::sluice_shim_bin();
    let sluice_s = sluice.display().to_string();
    let args = [
        "--binary",
        &sluice_s,
        "--bindir",
        &bin.display().to_string(),
        "--add-to-config",
        "--config",
        &config.display().to_string(),
    ]
    .map(|a| a.to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = install(&args).expect_success("install.sh --add-to-config");
    let installed = bin.join(system::SLUICE_SHIM_NAME);
    assert_eq!(
        fs::read(&installed).expect("installed binary"),
        fs::read(&sluice).expect("built binary"),
        "install.sh did not install the given binary:\n{out}"
    );
    let v = Command::new(&installed).arg("-v").output().expect("-v");
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with(system::SLUICE_SHIM_NAME),
        "installed binary -v: {:?}",
        v
    );
    assert!(
        out.stdout_str().contains("not done: pass --restart"),
        "install.sh must say it did not restart containerd:\n{out}"
    );
    assert!(
        config.with_extension("toml.sluice-bak").exists(),
        "no backup kept"
    );
    assert_handler_and_settings_kept(&config);

    // Once only: a second run leaves the config alone.
    let before = fs::read_to_string(&config).expect("config");
    let again = install(&args).expect_success("install.sh --add-to-config, again");
    assert_eq!(
        fs::read_to_string(&config).expect("config"),
        before,
        "a second run changed the config:\n{again}"
    );
    assert!(again.stdout_str().contains("left alone"), "{again}");
}

#[test]
#[ignore = "needs the containerd under test and the built shim; run with --ignored"]
fn conf_d_drop_in_only_where_imports_merge() {
    let s = Scratch::new("confd");
    let config = s.0.join("etc/containerd/config.toml");
    let confd = s.0.join("etc/containerd/conf.d");
    existing_config(&config);
    let args = [
        "--no-binary".to_string(),
        "--conf-d".to_string(),
        confd.display().to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = install(&args);
    if versions::selected().line == Line::V2 {
        let out = out.expect_success("install.sh --conf-d");
        assert!(confd.join("sluice.toml").is_file(), "{out}");
        assert_handler_and_settings_kept(&config);
    } else {
        // 1.6/1.7 would lose the node's CRI table: refused, with the reason.
        assert_eq!(out.code(), Some(1), "install.sh --conf-d on 1.x:\n{out}");
        assert!(
            out.stderr_str().contains("use --add-to-config"),
            "install.sh --conf-d on 1.x must say why and what instead:\n{out}"
        );
        assert!(!confd.exists(), "nothing may be installed on refusal");
    }
}

#[test]
#[ignore = "needs the containerd under test and the built shim; run with --ignored"]
fn install_as_runc_v2_name() {
    let s = Scratch::new("asrunc");
    let bin = s.0.join("bin");
    let args = [
        "--binary".to_string(),
        system::sluice_shim_bin().display().to_string(),
        "--bindir".to_string(),
        bin.display().to_string(),
        "--as-runc-v2".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = install(&args).expect_success("install.sh --as-runc-v2");
    let v = Command::new(bin.join("containerd-shim-runc-v2"))
        .arg("-v")
        .output()
        .expect("containerd-shim-runc-v2 -v");
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with(system::SLUICE_SHIM_NAME),
        "containerd-shim-runc-v2 -v is not sluice: {v:?}\n{out}"
    );
    // Without a config flag it only prints what to add.
    assert!(
        out.stdout_str()
            .contains(&format!("[{}]", cri_runtimes_table("sluice"))),
        "install.sh should print the handler table:\n{out}"
    );
}
