//! Decoding the runtime options containerd sends at `Create` (and on stdin at `start`).
//!
//! Three shapes arrive: the runc `Options` (`containerd.runc.v1.Options`, sent when the runtime
//! type is `io.containerd.runc.v2`, or by `ctr --runc-*` flags), the generic CRI
//! `runtimeoptions.v1.Options` (a `TypeUrl` and a `ConfigPath`) sent for any other runtime type,
//! and the legacy `containerd.linux.runc.CreateOptions`, which containerd's client builds for a
//! runtime type it does not know as runc when a task option is set (`ctr run --no-pivot`,
//! `--uidmap`). Anything else is an error: a silent default would run the container with
//! settings the user did not ask for.

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, CodedInputStream, Message},
    shim::oci::{CheckpointOptions, Options},
};
use serde::{Deserialize, Serialize};

/// Type URL of the runc options, as containerd's typeurl registry names them.
pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
/// Type URL of the options of a checkpoint request.
pub const CHECKPOINT_OPTIONS_TYPE: &str = "containerd.runc.v1.CheckpointOptions";
/// Type URL of the CRI plugin's generic runtime options.
pub const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";
/// Type URL of the task options containerd's client sends to a runtime it does not know as runc.
pub const CREATE_OPTIONS_TYPE: &str = "containerd.linux.runc.CreateOptions";

/// The runc settings of one container, with the Go shim's meaning for each field.
///
/// Serialized with snake_case keys (the bundle's `options.json`, as the Go shim writes it);
/// read from a `ConfigPath` TOML with the keys of containerd's runc `options` table
/// (`BinaryName`, `SystemdCgroup`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuncOptions {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    pub shim_cgroup: String,
    pub io_uid: u32,
    pub io_gid: u32,
    pub criu_path: String,
    pub criu_image_path: String,
    pub criu_work_path: String,
    /// Deadline of every runc call for containers with these options, in milliseconds
    /// (0: the shim's default). Set by `RuncTimeoutSeconds` in a `ConfigPath` TOML.
    pub runc_timeout_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("unsupported runtime options type {0:?} (expected {RUNC_OPTIONS_TYPE}, {RUNTIME_OPTIONS_TYPE} or {CREATE_OPTIONS_TYPE})")]
    UnknownType(String),
    #[error("malformed {type_url} runtime options: {reason}")]
    Malformed { type_url: String, reason: String },
    #[error("cannot read runtime config {path}: {reason}")]
    ConfigFile { path: String, reason: String },
}

/// How to checkpoint a container (runc `CheckpointOptions`, the Go shim's meaning).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointSettings {
    /// Stop the container after the checkpoint (otherwise `--leave-running`).
    pub exit: bool,
    pub open_tcp: bool,
    pub external_unix_sockets: bool,
    pub terminal: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: String,
    pub image_path: String,
    pub work_path: String,
}

/// Decodes the options of a `Checkpoint` request; none means the defaults.
pub fn decode_checkpoint(any: Option<&Any>) -> Result<CheckpointSettings, OptionsError> {
    let Some(any) = any.filter(|a| !(a.type_url.is_empty() && a.value.is_empty())) else {
        return Ok(CheckpointSettings::default());
    };
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != CHECKPOINT_OPTIONS_TYPE {
        return Err(OptionsError::UnknownType(any.type_url.clone()));
    }
    let o =
        CheckpointOptions::parse_from_bytes(&any.value).map_err(|e| OptionsError::Malformed {
            type_url: any.type_url.clone(),
            reason: e.to_string(),
        })?;
    Ok(CheckpointSettings {
        exit: o.exit,
        open_tcp: o.open_tcp,
        external_unix_sockets: o.external_unix_sockets,
        terminal: o.terminal,
        file_locks: o.file_locks,
        empty_namespaces: o.empty_namespaces,
        cgroups_mode: o.cgroups_mode,
        image_path: o.image_path,
        work_path: o.work_path,
    })
}

/// Decodes the options of a `Create` request; no options at all means the defaults.
pub fn decode(any: Option<&Any>) -> Result<RuncOptions, OptionsError> {
    let Some(any) = any else {
        return Ok(RuncOptions::default());
    };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(RuncOptions::default());
    }
    // containerd may prefix the bare name with a host part; only the last path element names it.
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    match name {
        RUNC_OPTIONS_TYPE => {
            let o = Options::parse_from_bytes(&any.value).map_err(|e| OptionsError::Malformed {
                type_url: any.type_url.clone(),
                reason: e.to_string(),
            })?;
            Ok(RuncOptions {
                binary_name: o.binary_name,
                root: o.root,
                systemd_cgroup: o.systemd_cgroup,
                no_pivot_root: o.no_pivot_root,
                no_new_keyring: o.no_new_keyring,
                shim_cgroup: o.shim_cgroup,
                io_uid: o.io_uid,
                io_gid: o.io_gid,
                criu_path: String::new(),
                criu_image_path: o.criu_image_path,
                criu_work_path: o.criu_work_path,
                runc_timeout_ms: 0,
            })
        }
        RUNTIME_OPTIONS_TYPE => {
            let config_path = runtime_options_config_path(&any.value).map_err(|reason| {
                OptionsError::Malformed {
                    type_url: any.type_url.clone(),
                    reason,
                }
            })?;
            if config_path.is_empty() {
                Ok(RuncOptions::default())
            } else {
                from_config_file(&config_path)
            }
        }
        CREATE_OPTIONS_TYPE => {
            create_options(&any.value).map_err(|reason| OptionsError::Malformed {
                type_url: any.type_url.clone(),
                reason,
            })
        }
        _ => Err(OptionsError::UnknownType(any.type_url.clone())),
    }
}

/// `containerd.linux.runc.CreateOptions`; the crate ships no type for it. Its fields 2-7 (TCP,
/// unix sockets, terminal, file locks, namespaces, cgroups mode) only matter when restoring a
/// checkpoint through the v1 runtime: set, they are refused rather than ignored.
fn create_options(bytes: &[u8]) -> Result<RuncOptions, String> {
    const CHECKPOINT_ONLY: [&str; 6] = [
        "open_tcp",
        "external_unix_sockets",
        "terminal",
        "file_locks",
        "empty_namespaces",
        "cgroups_mode",
    ];
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut o = RuncOptions::default();
    let e = |e: containerd_shim_protos::protobuf::Error| e.to_string();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(e)? {
        match (tag >> 3, tag & 7) {
            (1, 0) => o.no_pivot_root = input.read_bool().map_err(e)?,
            (8, 0) => o.no_new_keyring = input.read_bool().map_err(e)?,
            (9, 2) => o.shim_cgroup = input.read_string().map_err(e)?,
            (10, 0) => o.io_uid = input.read_uint32().map_err(e)?,
            (11, 0) => o.io_gid = input.read_uint32().map_err(e)?,
            (12, 2) => o.criu_work_path = input.read_string().map_err(e)?,
            (13, 2) => o.criu_image_path = input.read_string().map_err(e)?,
            (field @ 2..=7, _) => {
                return Err(format!(
                    "{} is not supported outside a checkpoint restore",
                    CHECKPOINT_ONLY[field as usize - 2]
                ))
            }
            _ => {
                let wire = containerd_shim_protos::protobuf::rt::WireType::new(tag & 7)
                    .ok_or_else(|| format!("bad wire type in tag {tag}"))?;
                input.skip_field(wire).map_err(e)?;
            }
        }
    }
    Ok(o)
}

/// The keys of containerd's runc `options` table, as a runtime's `ConfigPath` TOML holds them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct ConfigFile {
    #[serde(default)]
    binary_name: String,
    #[serde(default)]
    root: String,
    #[serde(default)]
    systemd_cgroup: bool,
    #[serde(default)]
    no_pivot_root: bool,
    #[serde(default)]
    no_new_keyring: bool,
    #[serde(default)]
    shim_cgroup: String,
    #[serde(default)]
    io_uid: u32,
    #[serde(default)]
    io_gid: u32,
    #[serde(default)]
    criu_path: String,
    #[serde(default)]
    criu_image_path: String,
    #[serde(default)]
    criu_work_path: String,
    /// sluice's own key: the deadline of each runc call.
    #[serde(default)]
    runc_timeout_seconds: Option<f64>,
}

/// Reads runc settings from the TOML file a CRI runtime's `ConfigPath` names.
pub fn from_config_file(path: &str) -> Result<RuncOptions, OptionsError> {
    let err = |reason: String| OptionsError::ConfigFile {
        path: path.to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let c: ConfigFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let runc_timeout_ms = match c.runc_timeout_seconds {
        None => 0,
        Some(s) if s.is_finite() && s > 0.0 => (s * 1000.0).round() as u64,
        Some(s) => return Err(err(format!("RuncTimeoutSeconds must be positive, not {s}"))),
    };
    Ok(RuncOptions {
        binary_name: c.binary_name,
        root: c.root,
        systemd_cgroup: c.systemd_cgroup,
        no_pivot_root: c.no_pivot_root,
        no_new_keyring: c.no_new_keyring,
        shim_cgroup: c.shim_cgroup,
        io_uid: c.io_uid,
        io_gid: c.io_gid,
        criu_path: c.criu_path,
        criu_image_path: c.criu_image_path,
        criu_work_path: c.criu_work_path,
        runc_timeout_ms,
    })
}

/// Field 2 (`config_path`) of `runtimeoptions.v1.Options`; the crate ships no type for it.
fn runtime_options_config_path(bytes: &[u8]) -> Result<String, String> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut config_path = String::new();
    loop {
        let tag = input.read_raw_tag_or_eof().map_err(|e| e.to_string())?;
        let Some(tag) = tag else { break };
        match tag {
            // field 1 (type_url) and 2 (config_path), both length-delimited strings
            10 => {
                input.read_string().map_err(|e| e.to_string())?;
            }
            18 => config_path = input.read_string().map_err(|e| e.to_string())?,
            _ => {
                let wire = containerd_shim_protos::protobuf::rt::WireType::new(tag & 7)
                    .ok_or_else(|| format!("bad wire type in tag {tag}"))?;
                input.skip_field(wire).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(config_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        Any {
            type_url: type_url.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn checkpoint_options_carry_over() {
        let o = CheckpointOptions {
            exit: true,
            open_tcp: true,
            empty_namespaces: vec!["network".into()],
            work_path: "/w".into(),
            ..Default::default()
        };
        let got = decode_checkpoint(Some(&any(
            CHECKPOINT_OPTIONS_TYPE,
            o.write_to_bytes().unwrap(),
        )))
        .unwrap();
        assert!(got.exit && got.open_tcp);
        assert_eq!(got.empty_namespaces, vec!["network".to_string()]);
        assert_eq!(got.work_path, "/w");
        assert_eq!(decode_checkpoint(None), Ok(CheckpointSettings::default()));
        assert!(decode_checkpoint(Some(&any(RUNC_OPTIONS_TYPE, vec![]))).is_err());
    }

    #[test]
    fn none_is_defaults() {
        assert_eq!(decode(None), Ok(RuncOptions::default()));
    }

    #[test]
    fn runc_options_fields_carry_over() {
        let o = Options {
            binary_name: "/opt/runc".into(),
            root: "/run/x".into(),
            systemd_cgroup: true,
            no_pivot_root: true,
            io_uid: 7,
            ..Default::default()
        };
        let got = decode(Some(&any(RUNC_OPTIONS_TYPE, o.write_to_bytes().unwrap()))).unwrap();
        assert_eq!(got.binary_name, "/opt/runc");
        assert_eq!(got.root, "/run/x");
        assert!(got.systemd_cgroup && got.no_pivot_root);
        assert_eq!(got.io_uid, 7);
    }

    #[test]
    fn unknown_type_is_an_error() {
        let err = decode(Some(&any("example.Other", vec![]))).unwrap_err();
        assert!(err.to_string().contains("example.Other"), "{err}");
    }

    #[test]
    fn malformed_runc_options_are_an_error() {
        let err = decode(Some(&any(RUNC_OPTIONS_TYPE, vec![0xff, 0xff, 0xff]))).unwrap_err();
        assert!(matches!(err, OptionsError::Malformed { .. }), "{err:?}");
    }

    #[test]
    fn runtime_options_without_config_path_are_defaults() {
        // type_url = "x"
        let bytes = vec![10, 1, b'x'];
        assert_eq!(
            decode(Some(&any(RUNTIME_OPTIONS_TYPE, bytes))),
            Ok(RuncOptions::default())
        );
    }

    fn runtime_options(config_path: &str) -> Any {
        let mut bytes = vec![18, config_path.len() as u8];
        bytes.extend_from_slice(config_path.as_bytes());
        any(RUNTIME_OPTIONS_TYPE, bytes)
    }

    #[test]
    fn config_path_toml_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runc.toml");
        std::fs::write(
            &path,
            "BinaryName = \"/usr/local/bin/runc\"\nSystemdCgroup = true\nRoot = \"/run/r\"\nIoUid = 1000\nRuncTimeoutSeconds = 2.5\n",
        )
        .unwrap();
        let got = decode(Some(&runtime_options(path.to_str().unwrap()))).unwrap();
        assert_eq!(got.binary_name, "/usr/local/bin/runc");
        assert_eq!(got.root, "/run/r");
        assert!(got.systemd_cgroup);
        assert_eq!(got.io_uid, 1000);
        assert_eq!(got.runc_timeout_ms, 2500);
    }

    #[test]
    fn config_path_with_unknown_key_or_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runc.toml");
        std::fs::write(&path, "SystemdCgroups = true\n").unwrap();
        let err = decode(Some(&runtime_options(path.to_str().unwrap()))).unwrap_err();
        assert!(err.to_string().contains("SystemdCgroups"), "{err}");
        let missing = dir.path().join("absent.toml");
        let err = decode(Some(&runtime_options(missing.to_str().unwrap()))).unwrap_err();
        assert!(err.to_string().contains("absent.toml"), "{err}");
    }

    /// `containerd.linux.runc.CreateOptions` as ctr 1.6 sends it for `--no-pivot --uidmap
    /// 0:1000:1 --gidmap 0:1000:1` on a runtime type it does not know as runc.
    #[test]
    fn legacy_create_options_are_read() {
        let mut bytes = vec![0x08, 0x01]; // no_pivot_root = true
        bytes.extend([0x50, 0xe8, 0x07]); // io_uid = 1000
        bytes.extend([0x58, 0xe8, 0x07]); // io_gid = 1000
        bytes.extend([0x4a, 0x03, b'/', b's', b'c']); // shim_cgroup = "/sc"
        bytes.extend([0xf8, 0x7f, 0x01]); // an unknown varint field 2047: skipped
        let got = decode(Some(&any(
            "types.containerd.io/containerd.linux.runc.CreateOptions",
            bytes,
        )))
        .unwrap();
        assert!(got.no_pivot_root);
        assert_eq!((got.io_uid, got.io_gid), (1000, 1000));
        assert_eq!(got.shim_cgroup, "/sc");
        assert_eq!(got.binary_name, "", "runc from PATH, as the Go shim");

        // open_tcp = true: only meaningful for a v1 checkpoint restore.
        let err = decode(Some(&any(CREATE_OPTIONS_TYPE, vec![0x10, 0x01]))).unwrap_err();
        assert!(err.to_string().contains("open_tcp"), "{err}");
        let err = decode(Some(&any(CREATE_OPTIONS_TYPE, vec![0x50]))).unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
    }
}
