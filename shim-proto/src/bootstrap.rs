//! What containerd writes to the shim's stdin at `start`, and what the shim answers on stdout.
//!
//! containerd 1.x and 2.0–2.2 write the runc options as a protobuf `Any` (or nothing).
//! containerd 2.3 and later write `containerd.runtime.bootstrap.v1.BootstrapParams` (schema:
//! containerd's `api/runtime/bootstrap/v1/bootstrap.proto`), with the runc options inside
//! `extensions`; its comments once described JSON, so the JSON form is read too.
//!
//! The answer depends on the daemon ([`reply::choose_reply`]): the plain socket address (which
//! every version accepts, as task API v2), JSON with version 3 for 2.0–2.2, or a protobuf
//! `BootstrapResult` for 2.3 and later. [`daemon::reads`] models how each daemon reads it back.
//! The facts, with their sources, are in `docs/bootstrap.md`.

pub mod daemon;
pub mod reply;
#[cfg(test)]
mod table_tests;
mod wire;

use containerd_shim_protos::protobuf::{well_known_types::any::Any, CodedInputStream};
use serde::Deserialize;

use crate::options::{
    self, OptionsError, RuncOptions, CREATE_OPTIONS_TYPE, RUNC_OPTIONS_TYPE, RUNTIME_OPTIONS_TYPE,
};

/// `BootstrapParams`, the fields the shim uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BootstrapParams {
    pub instance_id: String,
    pub namespace: String,
    /// INFO = 0; negative is more verbose (DEBUG = -4, TRACE = -8).
    pub log_level: i32,
    pub containerd_version: String,
    pub ttrpc_address: String,
    pub grpc_address: String,
    pub containerd_binary: String,
    pub extensions: Vec<Any>,
    /// Where to put the socket (`optional string socket_dir = 9`, containerd 2.3 and later).
    pub socket_dir: Option<String>,
}

/// What arrived on stdin.
#[derive(Debug, Clone, PartialEq)]
pub enum StartInput {
    Nothing,
    /// containerd before 2.3: the runtime options themselves.
    Options(Any),
    Bootstrap(BootstrapParams),
}

impl StartInput {
    /// The runc settings carried, or the defaults.
    pub fn runc_options(&self) -> Result<RuncOptions, OptionsError> {
        match self {
            StartInput::Nothing => Ok(RuncOptions::default()),
            StartInput::Options(any) => options::decode(Some(any)),
            StartInput::Bootstrap(p) => {
                let known = p.extensions.iter().find(|a| {
                    let name = a.type_url.rsplit('/').next().unwrap_or_default();
                    name == RUNC_OPTIONS_TYPE || name == RUNTIME_OPTIONS_TYPE
                });
                options::decode(known)
            }
        }
    }

    /// Whether containerd asked for debug logs.
    pub fn wants_debug(&self) -> bool {
        matches!(self, StartInput::Bootstrap(p) if p.log_level < 0)
    }
}

fn malformed(reason: impl ToString) -> OptionsError {
    OptionsError::Malformed {
        type_url: "containerd.runtime.bootstrap.v1.BootstrapParams".into(),
        reason: reason.to_string(),
    }
}

/// Reads stdin's bytes in whichever form containerd wrote them.
pub fn parse(bytes: &[u8]) -> Result<StartInput, OptionsError> {
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Ok(StartInput::Nothing);
    }
    if trimmed.starts_with(b"{") {
        return parse_json(trimmed).map(StartInput::Bootstrap);
    }
    // An `Any` and a BootstrapParams share tags 1 and 2 (type_url/value, instance_id/namespace):
    // an `Any` names a type in field 1 and has nothing past field 2.
    let fields = read_fields(bytes).map_err(malformed)?;
    // Container IDs contain no '/', type URLs of options usually do or name a known type.
    let is_any = fields.iter().all(|(n, _)| *n <= 2)
        && fields.iter().any(|(n, v)| {
            let url = String::from_utf8_lossy(v);
            let name = url.rsplit('/').next().unwrap_or_default();
            *n == 1
                && (url.contains('/')
                    || [RUNC_OPTIONS_TYPE, RUNTIME_OPTIONS_TYPE, CREATE_OPTIONS_TYPE]
                        .contains(&name))
        });
    if is_any {
        let mut any = Any::default();
        for (n, v) in fields {
            match n {
                1 => any.type_url = String::from_utf8_lossy(&v).into_owned(),
                2 => any.value = v,
                _ => {}
            }
        }
        return Ok(StartInput::Options(any));
    }
    let mut p = BootstrapParams::default();
    for (n, v) in fields {
        let s = || String::from_utf8_lossy(&v).into_owned();
        match n {
            1 => p.instance_id = s(),
            2 => p.namespace = s(),
            3 => p.log_level = varint_i32(&v),
            4 => p.containerd_version = s(),
            5 => p.ttrpc_address = s(),
            6 => p.grpc_address = s(),
            7 => p.containerd_binary = s(),
            9 => p.socket_dir = Some(s()),
            8 => {
                // Extension { Any value = 1 }
                for (en, ev) in read_fields(&v).map_err(malformed)? {
                    if en == 1 {
                        let mut any = Any::default();
                        for (an, av) in read_fields(&ev).map_err(malformed)? {
                            match an {
                                1 => any.type_url = String::from_utf8_lossy(&av).into_owned(),
                                2 => any.value = av,
                                _ => {}
                            }
                        }
                        p.extensions.push(any);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(StartInput::Bootstrap(p))
}

/// [`parse`], with the identity check containerd's own shims make (containerd#13764, #13910):
/// a pre-2.3 runtime-options `Any` shares field numbers 1 and 2 with `BootstrapParams`, so
/// stdin is taken as `BootstrapParams` only when it names the container and namespace of the
/// `-id` and `-namespace` flags. Stdin that decodes as `BootstrapParams` with only those two
/// fields but names something else is read as the `Any` it then is; one with more fields is
/// left to [`reply::identify`], which refuses it.
pub fn parse_checked(
    bytes: &[u8],
    cli_id: &str,
    cli_namespace: &str,
) -> Result<StartInput, OptionsError> {
    let input = parse(bytes)?;
    let StartInput::Bootstrap(p) = &input else {
        return Ok(input);
    };
    let matches = (cli_id.is_empty() || p.instance_id == cli_id)
        && (cli_namespace.is_empty() || p.namespace == cli_namespace);
    let only_identity = BootstrapParams {
        instance_id: p.instance_id.clone(),
        namespace: p.namespace.clone(),
        ..Default::default()
    } == *p;
    if matches || !only_identity || bytes.trim_ascii().starts_with(b"{") {
        return Ok(input);
    }
    let mut any = Any::default();
    for (n, v) in read_fields(bytes).map_err(malformed)? {
        match n {
            1 => any.type_url = String::from_utf8_lossy(&v).into_owned(),
            2 => any.value = v,
            _ => {}
        }
    }
    Ok(StartInput::Options(any))
}

/// The fields of a message: number and payload (a varint's payload is its 10-byte encoding).
fn read_fields(bytes: &[u8]) -> Result<Vec<(u32, Vec<u8>)>, String> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut out = Vec::new();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
        let (number, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => {
                let v = input.read_raw_varint64().map_err(|e| e.to_string())?;
                out.push((number, v.to_le_bytes().to_vec()));
            }
            2 => out.push((number, input.read_bytes().map_err(|e| e.to_string())?)),
            1 => {
                input
                    .read_raw_little_endian64()
                    .map_err(|e| e.to_string())?;
            }
            5 => {
                input
                    .read_raw_little_endian32()
                    .map_err(|e| e.to_string())?;
            }
            _ => return Err(format!("unsupported wire type {wire} in field {number}")),
        }
    }
    Ok(out)
}

fn varint_i32(v: &[u8]) -> i32 {
    let mut b = [0u8; 8];
    b[..v.len().min(8)].copy_from_slice(&v[..v.len().min(8)]);
    u64::from_le_bytes(b) as i32
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonParams {
    #[serde(default, alias = "instance_id")]
    instance_id: String,
    #[serde(default)]
    namespace: String,
    #[serde(default, alias = "log_level")]
    log_level: serde_json::Value,
    #[serde(default, alias = "containerd_version")]
    containerd_version: String,
    #[serde(default, alias = "containerd_ttrpc_address")]
    containerd_ttrpc_address: String,
    #[serde(default, alias = "containerd_grpc_address")]
    containerd_grpc_address: String,
    #[serde(default, alias = "containerd_binary")]
    containerd_binary: String,
    #[serde(default)]
    extensions: Vec<JsonExtension>,
    #[serde(default, alias = "socket_dir")]
    socket_dir: Option<String>,
}

#[derive(Deserialize)]
struct JsonExtension {
    value: serde_json::Map<String, serde_json::Value>,
}

fn parse_json(bytes: &[u8]) -> Result<BootstrapParams, OptionsError> {
    let j: JsonParams = serde_json::from_slice(bytes).map_err(malformed)?;
    let log_level = match &j.log_level {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0) as i32,
        serde_json::Value::String(s) => match s.as_str() {
            "LOG_LEVEL_TRACE" => -8,
            "LOG_LEVEL_DEBUG" => -4,
            "LOG_LEVEL_WARN" => 4,
            "LOG_LEVEL_ERROR" => 8,
            "LOG_LEVEL_FATAL" => 10,
            "LOG_LEVEL_PANIC" => 12,
            _ => 0,
        },
        _ => 0,
    };
    let mut extensions = Vec::new();
    for e in j.extensions {
        extensions.push(json_any(e.value)?);
    }
    Ok(BootstrapParams {
        instance_id: j.instance_id,
        namespace: j.namespace,
        log_level,
        containerd_version: j.containerd_version,
        ttrpc_address: j.containerd_ttrpc_address,
        grpc_address: j.containerd_grpc_address,
        containerd_binary: j.containerd_binary,
        extensions,
        socket_dir: j.socket_dir,
    })
}

/// A protojson `Any` (`{"@type": ..., fields}`) of runc options, re-encoded as protobuf.
fn json_any(mut v: serde_json::Map<String, serde_json::Value>) -> Result<Any, OptionsError> {
    use containerd_shim_protos::{protobuf::Message, shim::oci::Options};
    let type_url = match v.remove("@type") {
        Some(serde_json::Value::String(s)) => s,
        _ => return Err(malformed("extension without @type")),
    };
    let name = type_url.rsplit('/').next().unwrap_or_default();
    if name != RUNC_OPTIONS_TYPE {
        // Other extensions (CRI, NRI, sandbox) do not concern a runc shim.
        return Ok(Any {
            type_url,
            ..Default::default()
        });
    }
    let get_s = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let get_b = |k: &str| v.get(k).and_then(|x| x.as_bool()).unwrap_or_default();
    let get_u = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or_default() as u32;
    let o = Options {
        binary_name: get_s("binaryName"),
        root: get_s("root"),
        systemd_cgroup: get_b("systemdCgroup"),
        no_pivot_root: get_b("noPivotRoot"),
        no_new_keyring: get_b("noNewKeyring"),
        shim_cgroup: get_s("shimCgroup"),
        io_uid: get_u("ioUid"),
        io_gid: get_u("ioGid"),
        criu_image_path: get_s("criuImagePath"),
        criu_work_path: get_s("criuWorkPath"),
        ..Default::default()
    };
    Ok(Any {
        type_url,
        value: o.write_to_bytes().map_err(malformed)?,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use containerd_shim_protos::{
        protobuf::{CodedOutputStream, Message},
        shim::oci::Options,
    };

    use super::*;

    fn runc_options_any() -> Any {
        let o = Options {
            binary_name: "/opt/bin/runc".into(),
            shim_cgroup: "/podruntime".into(),
            ..Default::default()
        };
        Any {
            type_url: RUNC_OPTIONS_TYPE.into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    /// BootstrapParams encoded field by field from bootstrap.proto, as containerd 2.3 would.
    fn encoded_params(log_level: i32) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut buf);
            out.write_string(1, "c1").unwrap();
            out.write_string(2, "k8s.io").unwrap();
            out.write_int32(3, log_level).unwrap();
            out.write_string(4, "2.3.0").unwrap();
            out.write_string(5, "unix:///run/containerd/containerd.sock.ttrpc")
                .unwrap();
            out.write_string(6, "unix:///run/containerd/containerd.sock")
                .unwrap();
            out.write_string(7, "/usr/bin/containerd").unwrap();
            // an unrelated extension first, then the runc options
            for any in [
                Any {
                    type_url: "containerd.io/cri.v1.PodSandboxConfig".into(),
                    value: vec![1, 2, 3],
                    ..Default::default()
                },
                runc_options_any(),
            ] {
                let ext = {
                    let mut e = Vec::new();
                    let mut o = CodedOutputStream::vec(&mut e);
                    o.write_bytes(1, &any.write_to_bytes().unwrap()).unwrap();
                    o.flush().unwrap();
                    drop(o);
                    e
                };
                out.write_bytes(8, &ext).unwrap();
            }
            out.flush().unwrap();
        }
        buf
    }

    #[test]
    fn protobuf_bootstrap_params_carry_the_runc_options() {
        let input = parse(&encoded_params(-4)).unwrap();
        let StartInput::Bootstrap(p) = &input else {
            panic!("expected BootstrapParams, got {input:?}");
        };
        assert_eq!(p.instance_id, "c1");
        assert_eq!(p.namespace, "k8s.io");
        assert_eq!(p.log_level, -4);
        assert_eq!(
            p.ttrpc_address,
            "unix:///run/containerd/containerd.sock.ttrpc"
        );
        assert_eq!(p.extensions.len(), 2);
        assert!(input.wants_debug());
        let o = input.runc_options().unwrap();
        assert_eq!(o.binary_name, "/opt/bin/runc");
        assert_eq!(o.shim_cgroup, "/podruntime");
    }

    #[test]
    fn info_level_is_not_debug() {
        assert!(!parse(&encoded_params(0)).unwrap().wants_debug());
    }

    #[test]
    fn the_1x_any_form_still_works() {
        let bytes = runc_options_any().write_to_bytes().unwrap();
        let input = parse(&bytes).unwrap();
        assert!(matches!(input, StartInput::Options(_)), "{input:?}");
        assert_eq!(input.runc_options().unwrap().shim_cgroup, "/podruntime");
    }

    /// ctr 1.6 with `--uidmap` sends the legacy CreateOptions with a bare type URL (no host):
    /// still an `Any`, also without the flags to check it against.
    #[test]
    fn the_bare_create_options_any_is_options() {
        let any = Any {
            type_url: CREATE_OPTIONS_TYPE.into(),
            value: vec![0x50, 0xe8, 0x07, 0x58, 0xe8, 0x07],
            ..Default::default()
        };
        let bytes = any.write_to_bytes().unwrap();
        for input in [
            parse(&bytes).unwrap(),
            parse_checked(&bytes, "c1", "ns").unwrap(),
            parse_checked(&bytes, "", "").unwrap(),
        ] {
            assert!(matches!(input, StartInput::Options(_)), "{input:?}");
            assert!(input.runc_options().is_ok(), "{input:?}");
        }
    }

    #[test]
    fn json_bootstrap_params_are_read() {
        let json = br#"{"instanceId":"c2","namespace":"default","logLevel":"LOG_LEVEL_DEBUG",
            "containerdTtrpcAddress":"unix:///x.ttrpc",
            "extensions":[{"value":{"@type":"type.googleapis.com/containerd.runc.v1.Options",
            "binaryName":"/usr/local/bin/runc","systemdCgroup":true}}]}"#;
        let input = parse(json).unwrap();
        let StartInput::Bootstrap(p) = &input else {
            panic!("expected BootstrapParams, got {input:?}");
        };
        assert_eq!((p.instance_id.as_str(), p.log_level), ("c2", -4));
        let o = input.runc_options().unwrap();
        assert_eq!(o.binary_name, "/usr/local/bin/runc");
        assert!(o.systemd_cgroup);
    }

    #[test]
    fn nothing_and_garbage() {
        assert_eq!(parse(b"").unwrap(), StartInput::Nothing);
        assert!(parse(b"{not json").is_err());
        assert!(parse(&[0x0f, 0xff]).is_err());
    }
}
