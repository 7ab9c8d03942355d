//! What each containerd concludes from the shim's stdout at `start`: a model of its parsing,
//! step by step, so that tests can pin that every reply [`super::reply::choose_reply`] picks is
//! read back as intended, and that the replies other shims send break the daemons they break.
//!
//! Sources (all in containerd's tree; see `docs/bootstrap.md`):
//! - 1.6: `runtime/v2/binary.go` `Start`: the combined output, trimmed, is the address.
//! - 1.7: `runtime/v2/shim.go` `parseStartResponse`: JSON `{version,address,protocol}`, else the
//!   text as a ttrpc address; a version above 2 is refused.
//! - 2.0–2.2: `core/runtime/v2/shim.go` `parseStartResponse`: the same, up to version 3, and the
//!   version picks the task client.
//! - 2.3 and later: protobuf `BootstrapResult` first (untrimmed), then the 2.x fallbacks; 2.4
//!   keeps the result's extensions and reads `MountCapabilities` from them
//!   (`core/runtime/v2/task_mounts.go`).

use super::{
    reply::{DaemonLine, MountCapabilities, TaskApi, MOUNT_CAPABILITIES_TYPE},
    wire::{self, Value},
};

/// What a daemon will do with the shim after reading its reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conclusion {
    /// The address it dials.
    pub address: String,
    /// `ttrpc` or `grpc`, as the daemon spells it after lowercasing.
    pub protocol: String,
    /// The task client it builds on the connection.
    pub task_api: TaskApi,
    /// What its mount manager leaves to the shim (2.4 and later; none before).
    pub mount_capabilities: Option<MountCapabilities>,
}

/// What `daemon` concludes from `stdout`, or the error it fails the start with.
pub fn reads(daemon: DaemonLine, stdout: &[u8]) -> Result<Conclusion, String> {
    match daemon {
        DaemonLine::V1_6 => v1_6(stdout),
        DaemonLine::V1_7 => legacy_json(stdout, 2),
        DaemonLine::V2_0To2_2 => legacy_json(stdout, 3),
        DaemonLine::V1_7OrV2_0To2_2 => {
            // Unknown which: the reply must mean the same to both.
            let (a, b) = (legacy_json(stdout, 2), legacy_json(stdout, 3));
            if a == b {
                a
            } else {
                Err(format!("1.7 reads {a:?} but 2.0-2.2 read {b:?}"))
            }
        }
        DaemonLine::V2_3 => bootstrap(stdout, false),
        DaemonLine::V2_4OrLater => bootstrap(stdout, true),
    }
}

/// Go's `bytes.TrimSpace`, for the ASCII whitespace a shim could print.
fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn v1_6(stdout: &[u8]) -> Result<Conclusion, String> {
    let address = text(trim(stdout));
    if address.is_empty() {
        return Err("dial \"\": no shim address".into());
    }
    Ok(Conclusion {
        address,
        protocol: "ttrpc".into(),
        task_api: TaskApi::V2,
        mount_capabilities: None,
    })
}

/// The `{version, address, protocol}` struct as Go's `encoding/json` fills it: keys match
/// case-insensitively, a value of the wrong type is an error, `null` leaves the zero value.
fn go_json(b: &[u8]) -> Option<(i64, String, String)> {
    let v: serde_json::Value = serde_json::from_slice(b).ok()?;
    let obj = match v {
        serde_json::Value::Null => return Some((0, String::new(), String::new())),
        serde_json::Value::Object(m) => m,
        _ => return None,
    };
    let (mut version, mut address, mut protocol) = (0, String::new(), String::new());
    for (k, v) in obj {
        let key = k.to_ascii_lowercase();
        match (key.as_str(), v) {
            (_, serde_json::Value::Null) => {}
            ("version", serde_json::Value::Number(n)) => {
                version = n.as_i64()?;
            }
            ("address", serde_json::Value::String(s)) => address = s,
            ("protocol", serde_json::Value::String(s)) => protocol = s,
            ("version" | "address" | "protocol", _) => return None,
            _ => {}
        }
    }
    Some((version, address, protocol))
}

/// 1.7 (`max` 2) and 2.0–2.2 (`max` 3); also the fallback of 2.3 and later.
fn legacy_json(stdout: &[u8], max: i64) -> Result<Conclusion, String> {
    let trimmed = trim(stdout);
    let (version, address, protocol) = match go_json(trimmed) {
        Some((v, a, p)) if v >= 2 => (v, a, p),
        // Use TTRPC for legacy shims: the whole text is the address.
        _ => (2, text(trimmed), "ttrpc".to_string()),
    };
    if version > max {
        return Err(format!(
            "unsupported shim version ({version}): not implemented"
        ));
    }
    connect(version, address, protocol, None)
}

/// `makeConnection` and `NewTaskClient`: the protocol and the version must be known.
fn connect(
    version: i64,
    address: String,
    protocol: String,
    mount_capabilities: Option<MountCapabilities>,
) -> Result<Conclusion, String> {
    let protocol = protocol.to_ascii_lowercase();
    if protocol != "ttrpc" && protocol != "grpc" {
        return Err(format!("unexpected protocol: {protocol:?}"));
    }
    let task_api = match version {
        2 => TaskApi::V2,
        3 => TaskApi::V3,
        v => return Err(format!("unsupported shim version ({v}): not implemented")),
    };
    Ok(Conclusion {
        address,
        protocol,
        task_api,
        mount_capabilities,
    })
}

/// What Go's `proto.Unmarshal` makes of `BootstrapResult` (the fields a daemon uses), or none
/// where it fails. `with_extensions`: the 2.4 message, whose field 6 is decoded (and so
/// validated) as `Extension`s; to 2.3 it is an unknown field.
struct Decoded {
    version: i64,
    address: String,
    protocol: String,
    extensions: Vec<(String, Vec<u8>)>,
}

fn decode_result(b: &[u8], with_extensions: bool) -> Result<Decoded, String> {
    let mut d = Decoded {
        version: 0,
        address: String::new(),
        protocol: String::new(),
        extensions: Vec::new(),
    };
    for (field, value) in wire::fields(b)? {
        match (field, value) {
            // int32: the low 32 bits of the varint
            (1, Value::Varint(v)) => d.version = i64::from(v as u32 as i32),
            (2, Value::Bytes(s)) => d.address = wire::string(s, "address")?,
            (3, Value::Bytes(s)) => d.protocol = wire::string(s, "protocol")?,
            (6, Value::Bytes(ext)) if with_extensions => {
                for (f, v) in wire::fields(ext)? {
                    let (1, Value::Bytes(any)) = (f, v) else {
                        continue;
                    };
                    let (mut url, mut val) = (String::new(), Vec::new());
                    for (af, av) in wire::fields(any)? {
                        match (af, av) {
                            (1, Value::Bytes(s)) => url = wire::string(s, "type_url")?,
                            (2, Value::Bytes(s)) => val = s.to_vec(),
                            _ => {}
                        }
                    }
                    d.extensions.push((url, val));
                }
            }
            // A known field of another wire type is kept as unknown, like any other field.
            _ => {}
        }
    }
    Ok(d)
}

/// `anypb.MessageIs`: the URL ends in the full name, after a `/` or as the whole URL.
fn names(url: &str, full_name: &str) -> bool {
    url == full_name
        || url
            .strip_suffix(full_name)
            .is_some_and(|prefix| prefix.ends_with('/'))
}

/// `BootstrapResult.FindExtension(&MountCapabilities{})`; an unreadable one claims nothing.
fn mount_capabilities(extensions: &[(String, Vec<u8>)]) -> Option<MountCapabilities> {
    let full_name = MOUNT_CAPABILITIES_TYPE
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let (_, value) = extensions.iter().find(|(url, _)| names(url, full_name))?;
    let mut m = MountCapabilities::default();
    for (f, v) in wire::fields(value).ok()? {
        match (f, v) {
            (1, Value::Bytes(s)) => m.types.push(wire::string(s, "types").ok()?),
            (2, Value::Bytes(s)) => m.transforms.push(wire::string(s, "transforms").ok()?),
            _ => {}
        }
    }
    Some(m)
}

fn bootstrap(stdout: &[u8], v2_4: bool) -> Result<Conclusion, String> {
    match decode_result(stdout, v2_4) {
        Ok(d) => {
            let caps = if v2_4 {
                mount_capabilities(&d.extensions)
            } else {
                None
            };
            connect(d.version, d.address, d.protocol, caps)
        }
        Err(_) => legacy_json(stdout, 3),
    }
}
