//! One row per daemon line: what it sends at `start`, the reply chosen, and what that daemon
//! (per [`daemon::reads`]) concludes from it. Then malformed inputs, and the replies of other
//! shims that break a daemon (containerd#10984, #13763), pinned with the same model.

use containerd_shim_protos::{
    protobuf::{well_known_types::any::Any, Message},
    shim::oci::Options,
};

use super::{
    daemon::{self, Conclusion},
    parse_checked,
    reply::{
        choose_reply, encode_json, encode_result, BootstrapError, DaemonLine, MountCapabilities,
        ReplyForm, Served, StartFacts, TaskApi, Version,
    },
    wire, StartInput,
};
use crate::options::RUNC_OPTIONS_TYPE;

const ID: &str = "c1";
const NS: &str = "k8s.io";
const ADDR: &str = "unix:///run/containerd/s/5b1f0c7d3c9e";

/// The runc options as containerd puts them on stdin before 2.3 (when the runtime has any).
fn runc_any() -> Any {
    let o = Options {
        binary_name: "/usr/bin/runc".into(),
        systemd_cgroup: true,
        ..Default::default()
    };
    Any {
        type_url: RUNC_OPTIONS_TYPE.into(),
        value: o.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

/// `BootstrapParams` as containerd 2.3+ `command()` marshals it for `start`.
fn bootstrap_params(id: &str, ns: &str, containerd_version: &str) -> Vec<u8> {
    let mut b = Vec::new();
    wire::put_string(&mut b, 1, id);
    wire::put_string(&mut b, 2, ns);
    wire::put_int32(&mut b, 3, -4); // debug
    wire::put_string(&mut b, 4, containerd_version);
    wire::put_string(&mut b, 5, "/run/containerd/containerd.sock.ttrpc");
    wire::put_string(&mut b, 6, "/run/containerd/containerd.sock");
    wire::put_string(&mut b, 7, "/usr/bin/containerd");
    let any = runc_any().write_to_bytes().unwrap();
    let mut ext = Vec::new();
    wire::put_bytes(&mut ext, 1, &any);
    wire::put_bytes(&mut b, 8, &ext);
    wire::put_string(&mut b, 9, "/run/containerd/s");
    b
}

fn caps() -> MountCapabilities {
    MountCapabilities::default()
}

struct Row {
    name: &'static str,
    stdin: Vec<u8>,
    max_shim_version: Option<&'static str>,
    daemon_version: Option<Version>,
    serves_v3: bool,
    /// The daemons that could really be at the other end: each must read the reply as meant.
    truth: &'static [DaemonLine],
    daemon: DaemonLine,
    form: ReplyForm,
    task_api: TaskApi,
}

fn row(name: &'static str, stdin: Vec<u8>, truth: &'static [DaemonLine]) -> Row {
    Row {
        name,
        stdin,
        max_shim_version: Some("2"),
        daemon_version: None,
        serves_v3: true,
        truth,
        daemon: truth[0],
        form: ReplyForm::Address,
        task_api: TaskApi::V2,
    }
}

#[test]
fn the_reply_per_daemon_line() {
    use DaemonLine::*;
    let any = runc_any().write_to_bytes().unwrap();
    let rows = [
        Row {
            max_shim_version: None,
            ..row("1.6: options Any, TTRPC_ADDRESS only", any.clone(), &[V1_6])
        },
        Row {
            max_shim_version: None,
            ..row("1.6: no options", Vec::new(), &[V1_6])
        },
        Row {
            daemon_version: Version::parse("1.7.27"),
            ..row("1.7, version known", any.clone(), &[V1_7])
        },
        Row {
            daemon_version: Version::parse("v2.0.5"),
            form: ReplyForm::Json,
            task_api: TaskApi::V3,
            ..row("2.0, version known", any.clone(), &[V2_0To2_2])
        },
        Row {
            daemon_version: Version::parse("2.1.4"),
            form: ReplyForm::Json,
            task_api: TaskApi::V3,
            ..row("2.1, version known, no options", Vec::new(), &[V2_0To2_2])
        },
        Row {
            daemon_version: Version::from_version_output(
                "containerd github.com/containerd/containerd/v2 v2.2.5 e53c7c1516c3",
            ),
            form: ReplyForm::Json,
            task_api: TaskApi::V3,
            ..row("2.2, version from --version", any.clone(), &[V2_0To2_2])
        },
        Row {
            daemon: V1_7OrV2_0To2_2,
            ..row(
                "1.7 or 2.0-2.2, version unknown: the address both read",
                any.clone(),
                &[V1_7, V2_0To2_2],
            )
        },
        Row {
            daemon_version: Version::parse("2.2.0"),
            serves_v3: false,
            ..row("2.2, server serving v2 only", any.clone(), &[V2_0To2_2])
        },
        Row {
            form: ReplyForm::Protobuf,
            task_api: TaskApi::V3,
            ..row(
                "2.3: BootstrapParams",
                bootstrap_params(ID, NS, "v2.3.3"),
                &[V2_3],
            )
        },
        Row {
            form: ReplyForm::Protobuf,
            task_api: TaskApi::V3,
            ..row(
                "2.4: BootstrapParams, mount capabilities read",
                bootstrap_params(ID, NS, "2.4.0+unknown"),
                &[V2_4OrLater],
            )
        },
        Row {
            form: ReplyForm::Protobuf,
            serves_v3: false,
            ..row(
                "2.4, server serving v2 only",
                bootstrap_params(ID, NS, "2.4.1"),
                &[V2_4OrLater],
            )
        },
        Row {
            form: ReplyForm::Protobuf,
            task_api: TaskApi::V3,
            ..row(
                "future: 3.0 BootstrapParams",
                bootstrap_params(ID, NS, "v3.0.0"),
                &[V2_4OrLater],
            )
        },
        Row {
            form: ReplyForm::Protobuf,
            task_api: TaskApi::V3,
            ..row(
                "unknown: BootstrapParams, unreadable version",
                bootstrap_params(ID, NS, "main"),
                &[V2_4OrLater, V2_3],
            )
        },
        Row {
            max_shim_version: Some("3"),
            form: ReplyForm::Json,
            task_api: TaskApi::V3,
            ..row(
                "future legacy: MAX_SHIM_VERSION=3",
                any.clone(),
                &[V2_0To2_2],
            )
        },
    ];
    let mounts = caps();
    for r in rows {
        let stdin = parse_checked(&r.stdin, ID, NS).unwrap();
        let facts = StartFacts {
            stdin: &stdin,
            cli_id: ID,
            cli_namespace: NS,
            max_shim_version: r.max_shim_version,
            daemon_version: r.daemon_version,
        };
        let served = Served {
            address: ADDR,
            serves_v3: r.serves_v3,
            mount_capabilities: Some(&mounts),
        };
        let reply = choose_reply(&facts, &served).unwrap_or_else(|e| panic!("{}: {e}", r.name));
        assert_eq!(
            (reply.daemon, reply.form, reply.task_api),
            (r.daemon, r.form, r.task_api),
            "{}",
            r.name
        );
        let want_bytes = match r.form {
            ReplyForm::Address => ADDR.as_bytes().to_vec(),
            ReplyForm::Json => encode_json(ADDR, r.task_api),
            ReplyForm::Protobuf => encode_result(ADDR, r.task_api, Some(&mounts)),
        };
        assert_eq!(reply.bytes, want_bytes, "{}", r.name);
        for &truth in r.truth {
            let got = daemon::reads(truth, &reply.bytes);
            let want = Conclusion {
                address: ADDR.into(),
                protocol: "ttrpc".into(),
                task_api: r.task_api,
                mount_capabilities: (truth == V2_4OrLater).then(caps),
            };
            assert_eq!(got, Ok(want), "{}: as read by {truth:?}", r.name);
        }
    }
}

#[test]
fn the_reply_bytes_are_the_documented_forms() {
    assert_eq!(
        encode_json(ADDR, TaskApi::V3),
        format!(r#"{{"version":3,"address":"{ADDR}","protocol":"ttrpc"}}"#).into_bytes()
    );
    // version 3, the address, "ttrpc", then one extension: an Any of MountCapabilities
    let mut want = vec![0x08, 0x03, 0x12, ADDR.len() as u8];
    want.extend_from_slice(ADDR.as_bytes());
    want.extend_from_slice(b"\x1a\x05ttrpc");
    let url = b"type.googleapis.com/containerd.types.MountCapabilities";
    let caps = MountCapabilities {
        types: vec!["erofs".into()],
        transforms: vec![],
    };
    let any_len = 2 + url.len() + 2 + 7;
    want.extend_from_slice(&[0x32, (any_len + 2) as u8, 0x0a, any_len as u8]);
    want.extend_from_slice(&[0x0a, url.len() as u8]);
    want.extend_from_slice(url);
    want.extend_from_slice(b"\x12\x07\x0a\x05erofs");
    assert_eq!(encode_result(ADDR, TaskApi::V3, Some(&caps)), want);
    // 2.4 reads the claim back, 2.3 ignores it
    let c = daemon::reads(DaemonLine::V2_4OrLater, &want).unwrap();
    assert_eq!(c.mount_capabilities, Some(caps));
    let c = daemon::reads(DaemonLine::V2_3, &want).unwrap();
    assert_eq!((c.task_api, c.mount_capabilities), (TaskApi::V3, None));
}

/// Name, stdin, `MAX_SHIM_VERSION`, address, and the error expected.
type BadCase<'a> = (
    &'a str,
    &'a [u8],
    Option<&'a str>,
    &'a str,
    fn(&BootstrapError) -> bool,
);

#[test]
fn malformed_and_unknown_inputs_are_errors() {
    let mismatched = bootstrap_params("other", NS, "2.3.0");
    let old_version = bootstrap_params(ID, NS, "2.2.0");
    let any = runc_any().write_to_bytes().unwrap();
    let cases: [BadCase; 6] = [
        (
            "BootstrapParams for another container",
            &mismatched,
            Some("2"),
            ADDR,
            |e| matches!(e, BootstrapError::IdentityMismatch { sent_id, .. } if sent_id == "other"),
        ),
        (
            "BootstrapParams claiming 2.2",
            &old_version,
            Some("2"),
            ADDR,
            |e| matches!(e, BootstrapError::ContradictoryVersion(v) if v == "2.2.0"),
        ),
        (
            "MAX_SHIM_VERSION not a number",
            &any,
            Some("two"),
            ADDR,
            |e| matches!(e, BootstrapError::UnknownMaxShimVersion(_)),
        ),
        ("MAX_SHIM_VERSION=1", &any, Some("1"), ADDR, |e| {
            matches!(e, BootstrapError::UnknownMaxShimVersion(_))
        }),
        ("empty address", &any, Some("2"), "", |e| {
            matches!(e, BootstrapError::EmptyAddress)
        }),
        (
            "address with a newline",
            &any,
            Some("2"),
            "unix:///a\n",
            |e| matches!(e, BootstrapError::UnsafeAddress(_)),
        ),
    ];
    for (name, stdin, max, address, is) in cases {
        let stdin = parse_checked(stdin, ID, NS).unwrap();
        let facts = StartFacts {
            stdin: &stdin,
            cli_id: ID,
            cli_namespace: NS,
            max_shim_version: max,
            daemon_version: None,
        };
        let served = Served {
            address,
            serves_v3: true,
            mount_capabilities: None,
        };
        let err = choose_reply(&facts, &served).expect_err(name);
        assert!(is(&err), "{name}: {err}");
        assert!(!err.to_string().is_empty());
    }
    // stdin that is neither an Any nor BootstrapParams never gets that far
    for garbage in [&b"\x0f\xff"[..], b"{not json", b"\x12\x10short"] {
        assert!(parse_checked(garbage, ID, NS).is_err(), "{garbage:?}");
    }
}

#[test]
fn an_any_that_looks_like_bootstrap_params_is_read_as_the_any() {
    // A type URL without '/' and of an unknown type: the heuristic of `parse` takes it for
    // BootstrapParams, the identity check gives it back (and its value, byte for byte).
    let any = Any {
        type_url: "example.Options".into(),
        value: vec![0xff, 0x00, 0x01],
        ..Default::default()
    };
    let bytes = any.write_to_bytes().unwrap();
    assert!(matches!(super::parse(&bytes), Ok(StartInput::Bootstrap(_))));
    let StartInput::Options(back) = parse_checked(&bytes, ID, NS).unwrap() else {
        panic!("expected the Any");
    };
    assert_eq!((back.type_url, back.value), (any.type_url, any.value));
    // 2.3's real params keep their socket directory
    let StartInput::Bootstrap(p) =
        parse_checked(&bootstrap_params(ID, NS, "2.3.0"), ID, NS).unwrap()
    else {
        panic!("expected BootstrapParams");
    };
    assert_eq!(p.socket_dir.as_deref(), Some("/run/containerd/s"));
}

/// Other shims' replies, through the same model: what breaks whom.
#[test]
fn replies_that_break_a_daemon() {
    let proto_v3 = encode_result(ADDR, TaskApi::V3, None);
    let json_v3 = encode_json(ADDR, TaskApi::V3);
    // containerd#13763: the 2.3 runc shim's protobuf result, read by 2.2 as an address.
    let c = daemon::reads(DaemonLine::V2_0To2_2, &proto_v3).unwrap();
    assert!(c.address.starts_with("\u{8}\u{3}\u{12}"), "{:?}", c.address);
    // containerd#10984: the 2.0 runc shim's JSON version 3, refused by 1.7.
    let e = daemon::reads(DaemonLine::V1_7, &json_v3).unwrap_err();
    assert!(e.contains("unsupported shim version (3)"), "{e}");
    // 1.6 takes any JSON for the address itself.
    assert_eq!(
        daemon::reads(DaemonLine::V1_6, &json_v3).unwrap().address,
        String::from_utf8(json_v3.clone()).unwrap()
    );
    // Unknown which of 1.7 and 2.0-2.2: JSON v3 is not safe, the address is.
    assert!(daemon::reads(DaemonLine::V1_7OrV2_0To2_2, &json_v3).is_err());
    assert!(daemon::reads(DaemonLine::V1_7OrV2_0To2_2, ADDR.as_bytes()).is_ok());
    // Every daemon from 2.3 reads all three forms.
    for form in [ADDR.as_bytes().to_vec(), json_v3, proto_v3] {
        for d in [DaemonLine::V2_3, DaemonLine::V2_4OrLater] {
            let c = daemon::reads(d, &form).unwrap();
            assert_eq!(c.address, ADDR, "{d:?} {form:?}");
        }
    }
    // A version above 3 is refused from 2.0 on, in JSON and in protobuf alike.
    let json_v4 = br#"{"version":4,"address":"/x","protocol":"ttrpc"}"#;
    assert!(daemon::reads(DaemonLine::V2_0To2_2, json_v4).is_err());
    let mut proto_v4 = Vec::new();
    wire::put_int32(&mut proto_v4, 1, 4);
    wire::put_string(&mut proto_v4, 2, "/x");
    wire::put_string(&mut proto_v4, 3, "ttrpc");
    assert!(daemon::reads(DaemonLine::V2_4OrLater, &proto_v4).is_err());
    // From 2.3 the protobuf is parsed untrimmed: a newline after it spoils it (the fallback
    // then takes the bytes for an address), so the reply must be written exactly.
    let mut with_newline = encode_result(ADDR, TaskApi::V3, None);
    with_newline.push(b'\n');
    let c = daemon::reads(DaemonLine::V2_3, &with_newline).unwrap();
    assert_ne!(c.address, ADDR);
    // Nothing at all on stdout: an error, not a hang.
    assert!(daemon::reads(DaemonLine::V1_6, b"").is_err());
    assert_eq!(
        daemon::reads(DaemonLine::V2_0To2_2, b"\n").unwrap().address,
        ""
    );
    assert!(daemon::reads(DaemonLine::V2_3, b"").is_err());
}

#[test]
fn versions() {
    for (s, want) in [
        ("2.1.4", Some((2, 1))),
        ("v2.3.0", Some((2, 3))),
        ("2.3.0+unknown", Some((2, 3))),
        ("1.7.27-1", Some((1, 7))),
        ("1.6.20~ds1", Some((1, 6))),
        ("2.2.0-rc.1", Some((2, 2))),
        ("main", None),
        ("2", None),
        ("", None),
        ("x2.1", None),
    ] {
        assert_eq!(Version::parse(s).map(|v| (v.major, v.minor)), want, "{s:?}");
    }
    assert_eq!(
        Version::from_version_output("containerd containerd.io 1.7.27 05044ec0a9a7"),
        Some(Version::new(1, 7))
    );
    assert_eq!(Version::from_version_output("Docker version 29.0.1"), None);
}
