//! What the shim writes on stdout at `start`, chosen per daemon: the newest task API the daemon
//! speaks, in a form it reads. The facts behind each choice (file and release of containerd's
//! source for each) are in `docs/bootstrap.md`.
//!
//! | daemon      | how the shim tells                                | reply                         |
//! |-------------|---------------------------------------------------|-------------------------------|
//! | 1.6         | no `MAX_SHIM_VERSION` (or its version, if known)  | plain address (task v2)       |
//! | 1.7         | its version, if known                             | plain address (task v2)       |
//! | 2.0–2.2     | its version, if known                             | JSON `version` 3 (task v3)    |
//! | 1.7 or 2.x  | `MAX_SHIM_VERSION=2`, version unknown             | plain address (task v2)       |
//! | 2.3         | `BootstrapParams` on stdin, `containerd_version`  | protobuf result, 3 (task v3)  |
//! | 2.4 and on  | same                                              | protobuf, 3, mount extension  |
//!
//! Nothing on stdin, or a bare `Any`, tells 1.7 from 2.0–2.2: both set the same flags and the same
//! environment (`MAX_SHIM_VERSION` is 2 in both). Only the daemon's version (its Version API on
//! `GRPC_ADDRESS`, or `containerd --version` of the publish binary) does; without it the reply
//! is the plain address, which both read as task v2. A 1.7 daemon refuses version 3 outright
//! (containerd#10984), so it is never guessed.

use std::fmt;

use super::{wire, BootstrapParams, StartInput};

/// A task API the daemon can use on the shim's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskApi {
    /// `containerd.task.v2.Task`.
    V2,
    /// `containerd.task.v3.Task`.
    V3,
}

impl TaskApi {
    /// The number the bootstrap reply carries for it.
    pub fn number(self) -> i32 {
        match self {
            TaskApi::V2 => 2,
            TaskApi::V3 => 3,
        }
    }
}

/// A containerd release, as far as the bootstrap cares: major and minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32) -> Self {
        Version { major, minor }
    }

    /// `2.1.4`, `v2.3.0`, `2.3.0+unknown`, `1.7.27-1`, `1.6.20~ds1`, `2.2.0-rc.1`: the leading
    /// `v` and everything after the minor number are ignored.
    pub fn parse(s: &str) -> Option<Version> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let mut parts = s.splitn(3, '.');
        let major = parts.next()?;
        let minor = parts.next()?;
        let digits = |p: &str| -> Option<u32> {
            let end = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
            if end == 0 {
                return None;
            }
            p[..end].parse().ok()
        };
        // The major number must be all digits; the minor may carry a suffix (`0-rc`).
        if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Version {
            major: major.parse().ok()?,
            minor: digits(minor)?,
        })
    }

    /// The version in what `containerd --version` prints (`containerd
    /// github.com/containerd/containerd/v2 v2.1.4 <commit>`, `containerd containerd.io 1.7.27
    /// <commit>`): the first word that reads as a version, module paths skipped. Output that
    /// does not start with `containerd` (a publish binary that is another program) gives none.
    pub fn from_version_output(s: &str) -> Option<Version> {
        let mut words = s.split_whitespace();
        if words.next() != Some("containerd") {
            return None;
        }
        words.filter(|w| !w.contains('/')).find_map(Version::parse)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// Which daemon the shim is talking to, as far as it can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DaemonLine {
    /// containerd 1.6 (or older): reads the reply as an address, nothing else.
    V1_6,
    /// containerd 1.7: reads JSON up to version 2, or an address.
    V1_7,
    /// containerd 2.0, 2.1 or 2.2: reads JSON up to version 3, or an address.
    V2_0To2_2,
    /// A pre-2.3 daemon that sets `MAX_SHIM_VERSION` (1.7 or 2.0–2.2) whose version is unknown.
    V1_7OrV2_0To2_2,
    /// containerd 2.3: sends `BootstrapParams`, reads a protobuf `BootstrapResult` first.
    V2_3,
    /// containerd 2.4 or later, or a bootstrap-protocol daemon of unknown version: as 2.3, and
    /// reads the result's extensions (mount capabilities).
    V2_4OrLater,
}

impl DaemonLine {
    /// The newest task API this daemon accepts.
    pub fn newest_task_api(self) -> TaskApi {
        match self {
            DaemonLine::V1_6 | DaemonLine::V1_7 | DaemonLine::V1_7OrV2_0To2_2 => TaskApi::V2,
            DaemonLine::V2_0To2_2 | DaemonLine::V2_3 | DaemonLine::V2_4OrLater => TaskApi::V3,
        }
    }

    fn of_version(v: Version) -> DaemonLine {
        match (v.major, v.minor) {
            (0, _) | (1, 0..=6) => DaemonLine::V1_6,
            (1, _) => DaemonLine::V1_7,
            (2, 0..=2) => DaemonLine::V2_0To2_2,
            (2, 3) => DaemonLine::V2_3,
            _ => DaemonLine::V2_4OrLater,
        }
    }
}

/// The form of the reply on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyForm {
    /// The socket address alone (every daemon reads it, as task v2).
    Address,
    /// `{"version":N,"address":"...","protocol":"ttrpc"}` (containerd 1.7 and later).
    Json,
    /// A protobuf `containerd.runtime.bootstrap.v1.BootstrapResult` (containerd 2.3 and later).
    Protobuf,
}

/// `containerd.types.MountCapabilities`: the mount types and transforms the shim performs
/// itself, so that containerd's mount manager leaves them to it (containerd 2.4, #14002).
/// Empty lists claim nothing beyond ordinary system mounts, which is what runc's shim does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountCapabilities {
    pub types: Vec<String>,
    pub transforms: Vec<String>,
}

/// Type URL of [`MountCapabilities`] in a result's extensions (`anypb.New` spelling).
pub const MOUNT_CAPABILITIES_TYPE: &str = "type.googleapis.com/containerd.types.MountCapabilities";

impl MountCapabilities {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for t in &self.types {
            wire::put_bytes(&mut b, 1, t.as_bytes());
        }
        for t in &self.transforms {
            wire::put_bytes(&mut b, 2, t.as_bytes());
        }
        b
    }
}

/// What the shim knows at `start` besides the socket it serves.
#[derive(Debug, Clone, Copy)]
pub struct StartFacts<'a> {
    /// What arrived on stdin ([`super::parse_checked`]).
    pub stdin: &'a StartInput,
    /// The `-id` flag.
    pub cli_id: &'a str,
    /// The `-namespace` flag.
    pub cli_namespace: &'a str,
    /// `MAX_SHIM_VERSION` from the environment (set to 2 by containerd 1.7 and later).
    pub max_shim_version: Option<&'a str>,
    /// The daemon's version learned some other way (its Version API, `containerd --version`
    /// of the `-publish-binary`), if any. Only this tells 1.7 from 2.0–2.2.
    pub daemon_version: Option<Version>,
}

/// The socket the shim serves and what it offers there.
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The address containerd is to dial (`unix:///run/containerd/s/<hash>`).
    pub address: &'a str,
    /// Whether the server on that socket serves `containerd.task.v3.Task` (false for a server
    /// started by a sluice that served only v2, which a group may still be using).
    pub serves_v3: bool,
    /// Mount capabilities to advertise in a protobuf result (ignored by 2.3, read by 2.4).
    pub mount_capabilities: Option<&'a MountCapabilities>,
}

/// The reply: the exact bytes for stdout and what they mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub bytes: Vec<u8>,
    pub form: ReplyForm,
    /// The task API the daemon will use on the socket.
    pub task_api: TaskApi,
    pub daemon: DaemonLine,
}

/// Why no reply can be chosen: the caller prints it on stderr and exits non-zero (every
/// daemon puts the shim's output into its start error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    #[error("containerd sent BootstrapParams for container {sent_id:?} in namespace {sent_namespace:?}, but the command line says {cli_id:?} in {cli_namespace:?}")]
    IdentityMismatch {
        sent_id: String,
        sent_namespace: String,
        cli_id: String,
        cli_namespace: String,
    },
    #[error("containerd sent BootstrapParams (a 2.3+ protocol) but says it is version {0}")]
    ContradictoryVersion(String),
    #[error("MAX_SHIM_VERSION={0:?} is not a shim version this shim knows (2 or more)")]
    UnknownMaxShimVersion(String),
    #[error("no socket address to announce")]
    EmptyAddress,
    #[error("socket address {0:?} contains whitespace, which containerd would cut")]
    UnsafeAddress(String),
}

/// Which daemon sent these facts.
pub fn identify(facts: &StartFacts<'_>) -> Result<DaemonLine, BootstrapError> {
    match facts.stdin {
        StartInput::Bootstrap(p) => identify_bootstrap(p, facts),
        StartInput::Nothing | StartInput::Options(_) => {
            if let Some(v) = facts.daemon_version {
                return Ok(DaemonLine::of_version(v));
            }
            match facts.max_shim_version {
                // 1.6 sets TTRPC_ADDRESS (and SCHED_CORE) only.
                None => Ok(DaemonLine::V1_6),
                Some(s) => match s.trim().parse::<u32>() {
                    Ok(2) => Ok(DaemonLine::V1_7OrV2_0To2_2),
                    // No daemon sets more than 2 today; one that did would be saying it reads
                    // JSON of that version, as 2.0–2.2 read 3.
                    Ok(n) if n > 2 => Ok(DaemonLine::V2_0To2_2),
                    _ => Err(BootstrapError::UnknownMaxShimVersion(s.to_string())),
                },
            }
        }
    }
}

fn identify_bootstrap(
    p: &BootstrapParams,
    facts: &StartFacts<'_>,
) -> Result<DaemonLine, BootstrapError> {
    let id_differs = !facts.cli_id.is_empty() && p.instance_id != facts.cli_id;
    let ns_differs = !facts.cli_namespace.is_empty() && p.namespace != facts.cli_namespace;
    if id_differs || ns_differs {
        return Err(BootstrapError::IdentityMismatch {
            sent_id: p.instance_id.clone(),
            sent_namespace: p.namespace.clone(),
            cli_id: facts.cli_id.to_string(),
            cli_namespace: facts.cli_namespace.to_string(),
        });
    }
    // Every daemon that sends BootstrapParams reads a protobuf result first, so a version that
    // does not parse (a development build) is still answered; one before 2.3 cannot be true.
    match Version::parse(&p.containerd_version) {
        Some(v) if v < Version::new(2, 3) => Err(BootstrapError::ContradictoryVersion(
            p.containerd_version.clone(),
        )),
        Some(v) => Ok(DaemonLine::of_version(v)),
        None => Ok(DaemonLine::V2_4OrLater),
    }
}

/// The reply for this daemon: the newest task API both it and the server speak, in a form it
/// reads.
pub fn choose_reply(facts: &StartFacts<'_>, served: &Served<'_>) -> Result<Reply, BootstrapError> {
    if served.address.is_empty() {
        return Err(BootstrapError::EmptyAddress);
    }
    if served.address.chars().any(char::is_whitespace) {
        return Err(BootstrapError::UnsafeAddress(served.address.to_string()));
    }
    let daemon = identify(facts)?;
    let task_api = match (daemon.newest_task_api(), served.serves_v3) {
        (TaskApi::V3, true) => TaskApi::V3,
        _ => TaskApi::V2,
    };
    let (form, bytes) = match daemon {
        DaemonLine::V2_3 | DaemonLine::V2_4OrLater => (
            ReplyForm::Protobuf,
            encode_result(served.address, task_api, served.mount_capabilities),
        ),
        _ if task_api == TaskApi::V3 => (ReplyForm::Json, encode_json(served.address, task_api)),
        // The bare address: the one form 1.6 reads, and task v2 to every later daemon.
        _ => (ReplyForm::Address, served.address.as_bytes().to_vec()),
    };
    Ok(Reply {
        bytes,
        form,
        task_api,
        daemon,
    })
}

/// `BootstrapResult { version = 1; address = 2; protocol = 3; extensions = 6 }`, the
/// extension being `Extension { google.protobuf.Any value = 1 }`.
pub fn encode_result(
    address: &str,
    task_api: TaskApi,
    mounts: Option<&MountCapabilities>,
) -> Vec<u8> {
    let mut b = Vec::new();
    wire::put_int32(&mut b, 1, task_api.number());
    wire::put_string(&mut b, 2, address);
    wire::put_string(&mut b, 3, "ttrpc");
    if let Some(m) = mounts {
        let mut any = Vec::new();
        wire::put_string(&mut any, 1, MOUNT_CAPABILITIES_TYPE);
        wire::put_bytes(&mut any, 2, &m.encode());
        let mut ext = Vec::new();
        wire::put_bytes(&mut ext, 1, &any);
        wire::put_bytes(&mut b, 6, &ext);
    }
    b
}

/// The JSON reply containerd 1.7–2.2 decode into their `BootstrapParams`.
pub fn encode_json(address: &str, task_api: TaskApi) -> Vec<u8> {
    // The address is quoted and escaped as JSON (`Value`'s `Display` cannot fail).
    let quoted = serde_json::Value::String(address.to_string());
    format!(
        r#"{{"version":{},"address":{quoted},"protocol":"ttrpc"}}"#,
        task_api.number()
    )
    .into_bytes()
}
