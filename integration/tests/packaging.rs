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
        _ => "2",
    }
}

/// install.sh with its manifest under `s` (never the system's /var/lib/sluice).
fn install(s: &Scratch, args: &[&str]) -> CmdOutput {
    let mut c = Command::new("bash");
    c.arg(install_sh())
        .args(["--containerd-version", version_arg()])
        .arg("--state-dir")
        .arg(s.0.join("state"))
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
        l if l.is_v2() => {
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
    let out = install(&s, &args).expect_success("install.sh --add-to-config");
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
    let again = install(&s, &args).expect_success("install.sh --add-to-config, again");
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
    let out = install(&s, &args);
    if versions::selected().line.is_v2() {
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
    let out = install(&s, &args).expect_success("install.sh --as-runc-v2");
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

/// The shim run by hand with `args`, in an environment without containerd's variables.
fn by_hand(bin: &Path, args: &[&str]) -> CmdOutput {
    let mut c = Command::new(bin);
    c.args(args)
        .env_clear()
        .env("PATH", system::SYSTEM_PATH)
        .current_dir(std::env::temp_dir());
    cmd::run(c, None, Duration::from_secs(10))
}

#[test]
#[ignore = "needs the built shim and the stock shim; run with --ignored"]
fn command_line_by_hand_helps_in_sentences_with_the_stock_exit_codes() {
    let sluice = system::sluice_shim_bin();
    let stock = system::which("containerd-shim-runc-v2").expect("stock containerd-shim-runc-v2");
    // (args, exit code of both shims, what sluice's stderr starts with)
    let usage_head = format!("Usage of {}:\n  -address string\n", sluice.display());
    let cases: [(&[&str], i32, String); 5] = [
        (&["-h"], 0, usage_head.clone()),
        (&["--help"], 0, usage_head.clone()),
        (
            &["-nope"],
            2,
            format!("flag provided but not defined: -nope\n{usage_head}"),
        ),
        (
            &["-id"],
            2,
            format!("flag needs an argument: -id\n{usage_head}"),
        ),
        (
            &[
                "-namespace",
                "sluice-pkg-byhand",
                "-id",
                "no-such-task",
                "delete",
            ],
            1,
            "io.containerd.sluice.v2: `delete` needs the environment variable TTRPC_ADDRESS, \
             which is not set. containerd sets it when it runs this command"
                .to_string(),
        ),
    ];
    for (args, code, head) in cases {
        let out = by_hand(&sluice, args);
        assert_eq!(out.code(), Some(code), "sluice {args:?}:\n{out}");
        assert!(
            out.stderr_str().starts_with(&head),
            "sluice {args:?} stderr:\n{out}"
        );
        assert!(
            out.stdout_str().is_empty(),
            "sluice {args:?} stdout:\n{out}"
        );
        // The stock shim's code for the same command line (its delete fails for want of a
        // bundle rather than of the variable, but with the same code).
        let st = by_hand(&stock, args);
        assert_eq!(st.code(), Some(code), "stock {args:?}:\n{st}");
    }
    let help = by_hand(&sluice, &["-h"]).stderr_str();
    for line in [
        "\n  -v\tshow the shim version and exit\n",
        "\n  start ",
        "\n  delete ",
        "\n  doctor ",
    ] {
        assert!(help.contains(line), "-h lacks {line:?}:\n{help}");
    }
    let start = by_hand(
        &sluice,
        &[
            "-namespace",
            "sluice-pkg-byhand",
            "-id",
            "no-such-task",
            "start",
        ],
    );
    assert_eq!(start.code(), Some(1), "{start}");
    assert!(
        start
            .stderr_str()
            .contains("`start` needs the environment variable TTRPC_ADDRESS")
            && !start.stderr_str().contains("NotPresent"),
        "{start}"
    );
}

/// The dynamic section's DT_NEEDED entries and whether there is a PT_INTERP (64-bit LE ELF).
fn elf_needed_and_interp(path: &Path) -> (usize, bool) {
    let b = fs::read(path).expect("read the shim");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes")) as usize;
    assert_eq!(&b[..5], b"\x7fELF\x02", "not a 64-bit ELF");
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    let (mut interp, mut needed) = (false, 0);
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        match u32_at(ph) {
            3 => interp = true,
            2 => {
                // PT_DYNAMIC: (tag, value) pairs up to DT_NULL; DT_NEEDED is 1.
                let (off, size) = (u64_at(ph + 8), u64_at(ph + 32));
                needed += (off..off + size)
                    .step_by(16)
                    .map(u64_at)
                    .take_while(|&t| t != 0)
                    .filter(|&t| t == 1)
                    .count();
            }
            _ => {}
        }
    }
    (needed, interp)
}

#[test]
#[ignore = "needs the built shim; run with --ignored"]
fn version_names_the_build_flavour_the_binary_has() {
    let sluice = system::sluice_shim_bin();
    let out = by_hand(&sluice, &["-v"]).expect_success("-v");
    let v = out.stdout_str();
    assert!(
        v.starts_with("containerd-shim-sluice-v2:\n  Version:  "),
        "{v}"
    );
    let build = v
        .lines()
        .find(|l| l.starts_with("  Build:"))
        .unwrap_or_else(|| panic!("no Build line:\n{v}"));
    let (needed, interp) = elf_needed_and_interp(&sluice);
    if build.contains("static") {
        assert_eq!(
            (needed, interp),
            (0, false),
            "{} says {build:?} but has {needed} NEEDED entries / PT_INTERP {interp}",
            sluice.display()
        );
    } else {
        assert!(build.contains("dynamic"), "{build}");
        assert!(
            interp,
            "{} says dynamic but has no PT_INTERP",
            sluice.display()
        );
    }
    // scripts/test.sh runs the suite on the static build: say so when it is not.
    if std::env::var_os("SLUICE_REQUIRE_STATIC").is_some() {
        assert!(
            build.contains("static"),
            "the suite must run the static shim: {build}"
        );
    }
}

/// Every file under `dir` with its bytes (links as their target), for before/after comparisons.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let meta = fs::symlink_metadata(&p).expect("stat");
            if meta.file_type().is_symlink() {
                let t = fs::read_link(&p).expect("readlink");
                out.push((p, format!("-> {}", t.display()).into_bytes()));
            } else if meta.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

#[test]
#[ignore = "needs the containerd under test and the built shim; run with --ignored"]
fn uninstall_undoes_install_byte_for_byte() {
    let s = Scratch::new("uninstall");
    let bin = s.0.join("bin");
    let etc = s.0.join("etc/containerd");
    let config = etc.join("config.toml");
    existing_config(&config);
    // A stock shim already in the bin dir, which --as-runc-v2 replaces and uninstall restores.
    fs::create_dir_all(&bin).expect("mkdir bin");
    fs::write(
        bin.join("containerd-shim-runc-v2"),
        b"#!/bin/sh\necho stock\n",
    )
    .expect("stock");
    let before_etc = tree(&etc);
    let before_bin = tree(&bin);
    let mut args = vec![
        "--binary".to_string(),
        system::sluice_shim_bin().display().to_string(),
        "--bindir".to_string(),
        bin.display().to_string(),
        "--as-runc-v2".to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    // 2.x: the drop-in and the imports line; 1.x: the table appended to the main config.
    if versions::selected().line.is_v2() {
        args.extend([
            "--conf-d".to_string(),
            etc.join("conf.d").display().to_string(),
        ]);
    } else {
        args.push("--add-to-config".to_string());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = install(&s, &argv).expect_success("install.sh");
    assert_handler_and_settings_kept(&config);
    assert_ne!(tree(&etc), before_etc, "install changed no config:\n{out}");
    // A second install (an upgrade) must not make the first install's result the "original".
    install(&s, &argv).expect_success("install.sh, again");

    let un = install(&s, &["--uninstall"]).expect_success("install.sh --uninstall");
    assert_eq!(
        tree(&etc),
        before_etc,
        "the containerd config dir is not as before install:\n{out}\n{un}"
    );
    assert_eq!(
        tree(&bin),
        before_bin,
        "the bin dir is not as before install:\n{un}"
    );
    assert!(
        !s.0.join("state").exists(),
        "the manifest outlived uninstall:\n{un}"
    );
    // Nothing left to undo: said, and a failure.
    let again = install(&s, &["--uninstall"]);
    assert_eq!(again.code(), Some(1), "{again}");
    assert!(again.stderr_str().contains("nothing to undo"), "{again}");
}

#[test]
#[ignore = "needs the containerd under test and the built shim; run with --ignored"]
fn uninstall_refuses_a_binary_it_did_not_install() {
    let s = Scratch::new("refuse");
    let bin = s.0.join("bin");
    let config = s.0.join("etc/containerd/config.toml");
    existing_config(&config);
    let before = fs::read(&config).expect("config");
    let args = [
        "--binary".to_string(),
        system::sluice_shim_bin().display().to_string(),
        "--bindir".to_string(),
        bin.display().to_string(),
        "--add-to-config".to_string(),
        "--config".to_string(),
        config.display().to_string(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    install(&s, &argv).expect_success("install.sh");
    // Someone else's build put in its place since.
    let installed = bin.join(system::SLUICE_SHIM_NAME);
    fs::write(&installed, b"#!/bin/sh\necho other build\n").expect("overwrite");
    let un = install(&s, &["--uninstall"]);
    assert_eq!(un.code(), Some(1), "{un}");
    assert!(
        un.stderr_str()
            .contains(&format!("refusing to remove {}", installed.display())),
        "{un}"
    );
    assert_eq!(
        fs::read(&installed).expect("still there"),
        b"#!/bin/sh\necho other build\n",
        "uninstall removed a binary it did not install:\n{un}"
    );
    // The rest is undone all the same.
    assert_eq!(fs::read(&config).expect("config"), before, "{un}");
}
