//! The Task service driven as containerd drives it, against a fake runc: the error code of
//! every bad request, the order of events, and one stuck container not stalling another.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use containerd_shim::{
    protos::{
        api,
        protobuf::{well_known_types::any::Any, Message, MessageField},
        shim::oci::Options,
        ttrpc::{self, Code},
    },
    ExitSignal,
};
use sluice_shim_proto::events::TaskEvent;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::{container::Env, events::Publisher};

/// A runc that runs `<bundle>/init.sh` as the container and `<bundle>/exec.sh` as an exec,
/// and blocks in `start` while `<bundle>/hang-start` exists.
const FAKE_RUNC: &str = r#"#!/bin/sh
argv="$*"
root=""; verb=""
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2;;
    --log|--log-format) shift 2;;
    --*) shift;;
    *) verb=$1; shift; break;;
  esac
done
pidfile=""; bundle=""; all=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pid-file) pidfile=$2; shift 2;;
    --bundle) bundle=$2; shift 2;;
    --process|--format|--image-path|--work-path) shift 2;;
    --all) all=1; shift;;
    --*) shift;;
    *) break;;
  esac
done
id=$1
mkdir -p "$root"
case "$verb" in
  create)
    echo "$bundle" > "$root/$id.bundle"
    sh "$bundle/init.sh" </dev/null >/dev/null 2>&1 &
    echo $! > "$pidfile"; echo $! > "$root/$id.pid"; echo $! >> "$root/leftovers";;
  start)
    b=$(cat "$root/$id.bundle")
    while [ -e "$b/hang-start" ]; do sleep 0.05; done;;
  exec)
    b=$(cat "$root/$id.bundle")
    sh "$b/exec.sh" </dev/null >/dev/null 2>&1 &
    echo $! > "$pidfile"; echo $! >> "$root/leftovers";;
  kill)
    kill -"$2" "$(cat "$root/$id.pid")" 2>/dev/null || { echo '{"level":"error","msg":"container not running"}' >&2; exit 1; };;
  delete)
    kill -9 "$(cat "$root/$id.pid")" 2>/dev/null; rm -f "$root/$id.pid" "$root/$id.bundle";;
  ps)
    echo "[$(cat "$root/$id.pid")]";;
  checkpoint)
    echo "$argv" > "$root/checkpoint.args";;
  restore)
    echo "$argv" > "$root/restore.args"
    echo "$bundle" > "$root/$id.bundle"
    sh "$bundle/init.sh" </dev/null >/dev/null 2>&1 &
    echo $! > "$pidfile"; echo $! > "$root/$id.pid"; echo $! >> "$root/leftovers";;
esac
"#;

struct Fixture {
    dir: tempfile::TempDir,
    service: Arc<Service>,
    events: UnboundedReceiver<(TaskEvent, std::time::Instant)>,
    runc: PathBuf,
}

fn fixture() -> Fixture {
    crate::reaper::start().expect("reaper");
    // Our fake containers are grandchildren: as in the real shim, they must come back to us.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let dir = tempfile::tempdir().expect("tempdir");
    let runc = dir.path().join("runc");
    std::fs::write(&runc, FAKE_RUNC).expect("write fake runc");
    std::fs::set_permissions(&runc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let (publisher, events) = Publisher::channel();
    let env = Env {
        namespace: "test".into(),
        publisher,
        deadline: Duration::from_secs(20),
        bundle_root: None,
    };
    Fixture {
        dir,
        service: Arc::new(Service::new(env, Arc::new(ExitSignal::default()))),
        events,
        runc,
    }
}

impl Drop for Fixture {
    /// Kills every process the fake runc started, whatever the test left running.
    fn drop(&mut self) {
        // The shim gives runc `<root>/<namespace>` as its root.
        let list = self.dir.path().join("state/test/leftovers");
        for pid in std::fs::read_to_string(list)
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

impl Fixture {
    /// A bundle whose container runs `init` and whose execs run `exec`.
    fn bundle(&self, id: &str, init: &str, exec: &str) -> PathBuf {
        let b = self.dir.path().join(id);
        std::fs::create_dir_all(&b).expect("bundle");
        std::fs::write(b.join("init.sh"), init).expect("init.sh");
        std::fs::write(b.join("exec.sh"), exec).expect("exec.sh");
        b
    }

    fn create_request(&self, id: &str, bundle: &Path) -> api::CreateTaskRequest {
        let opts = Options {
            binary_name: self.runc.display().to_string(),
            root: self.dir.path().join("state").display().to_string(),
            ..Default::default()
        };
        api::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.display().to_string(),
            options: MessageField::some(Any {
                type_url: "containerd.runc.v1.Options".into(),
                value: opts.write_to_bytes().expect("encode options"),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn create(&self, id: &str, init: &str, exec: &str) -> PathBuf {
        let b = self.bundle(id, init, exec);
        self.service
            .create(self.create_request(id, &b))
            .await
            .expect("create");
        b
    }

    async fn next_event(&mut self) -> TaskEvent {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("no event within 10s")
            .expect("event channel closed")
            .0
    }
}

fn exec_req(id: &str, exec_id: &str) -> api::ExecProcessRequest {
    api::ExecProcessRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        spec: MessageField::some(Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Process".into(),
            value: br#"{"args":["/bin/true"],"cwd":"/"}"#.to_vec(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn start_req(id: &str, exec_id: &str) -> api::StartRequest {
    api::StartRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn events_arrive_in_containerds_order_with_the_init_exit_last() {
    let mut f = fixture();
    f.create("c1", "sleep 0.3; exit 7", "sleep 1; exit 3").await;
    let pid = f
        .service
        .start(start_req("c1", ""))
        .await
        .expect("start")
        .pid;
    f.service.exec(exec_req("c1", "e1")).await.expect("exec");
    let epid = f
        .service
        .start(start_req("c1", "e1"))
        .await
        .expect("start exec")
        .pid;

    assert!(matches!(f.next_event().await, TaskEvent::Create { pid: p, .. } if p == pid));
    assert!(matches!(f.next_event().await, TaskEvent::Start { pid: p, .. } if p == pid));
    assert!(
        matches!(f.next_event().await, TaskEvent::ExecAdded { exec_id, .. } if exec_id == "e1")
    );
    assert!(matches!(f.next_event().await, TaskEvent::ExecStarted { pid: p, .. } if p == epid));
    // init exits first (0.3 s) but is told after the exec it outlived.
    match f.next_event().await {
        TaskEvent::Exit {
            id, exit_status, ..
        } => assert_eq!((id.as_str(), exit_status), ("e1", 3)),
        other => panic!("expected the exec's exit, got {other:?}"),
    }
    match f.next_event().await {
        TaskEvent::Exit {
            id, exit_status, ..
        } => assert_eq!((id.as_str(), exit_status), ("c1", 7)),
        other => panic!("expected the init's exit, got {other:?}"),
    }
    let waited = f
        .service
        .wait(api::WaitRequest {
            id: "c1".into(),
            ..Default::default()
        })
        .await
        .expect("wait");
    assert_eq!(waited.exit_status, 7);

    let del = |exec_id: &str| api::DeleteRequest {
        id: "c1".into(),
        exec_id: exec_id.into(),
        ..Default::default()
    };
    assert_eq!(
        f.service
            .delete(del("e1"))
            .await
            .expect("delete exec")
            .exit_status,
        3
    );
    assert_eq!(
        f.service.delete(del("")).await.expect("delete").exit_status,
        7
    );
    match f.next_event().await {
        TaskEvent::Delete {
            container_id,
            exit_status,
            ..
        } => {
            assert_eq!((container_id.as_str(), exit_status), ("c1", 7))
        }
        other => panic!("expected TaskDelete, got {other:?}"),
    }
    assert_eq!(
        code(
            f.service
                .state(api::StateRequest {
                    id: "c1".into(),
                    ..Default::default()
                })
                .await
        ),
        Code::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_requests_get_their_codes() {
    let f = fixture();
    let b = f.create("c2", "exec sleep 1000", "exec sleep 1000").await;
    let s = &f.service;

    // Unknown IDs.
    let state = |id: &str, exec_id: &str| api::StateRequest {
        id: id.into(),
        exec_id: exec_id.into(),
        ..Default::default()
    };
    assert_eq!(code(s.state(state("nope", "")).await), Code::NOT_FOUND);
    assert_eq!(code(s.state(state("c2", "nope")).await), Code::NOT_FOUND);
    assert_eq!(code(s.start(start_req("nope", "")).await), Code::NOT_FOUND);
    assert_eq!(code(s.exec(exec_req("nope", "e")).await), Code::NOT_FOUND);

    // IDs that could escape, anywhere an ID is taken.
    for bad in ["../x", "a/b", "a\0b"] {
        assert_eq!(
            code(s.state(state(bad, "")).await),
            Code::INVALID_ARGUMENT,
            "{bad:?}"
        );
        assert_eq!(
            code(s.exec(exec_req("c2", bad)).await),
            Code::INVALID_ARGUMENT,
            "{bad:?}"
        );
        let mut req = f.create_request(bad, &b);
        req.id = bad.into();
        assert_eq!(code(s.create(req).await), Code::INVALID_ARGUMENT, "{bad:?}");
    }

    // Signals outside 1..=SIGRTMAX.
    for signal in [0, 65, u32::MAX] {
        let req = api::KillRequest {
            id: "c2".into(),
            signal,
            ..Default::default()
        };
        assert_eq!(
            code(s.kill(req).await),
            Code::INVALID_ARGUMENT,
            "signal {signal}"
        );
    }

    // Bundles outside containerd's layout.
    for (bundle, root) in [
        ("relative/c9", None),
        ("/a/../etc/c9", None),
        ("/elsewhere/c9", Some(Path::new("/run/ctd/ns"))),
        ("/run/ctd/ns/other", Some(Path::new("/run/ctd/ns"))),
    ] {
        let e = check_bundle("c9", bundle, root).expect_err(bundle);
        assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{bundle}");
    }
    check_bundle("c9", "/run/ctd/ns/c9", Some(Path::new("/run/ctd/ns"))).expect("in place");

    // Unknown options type.
    let mut req = f.create_request("c3", &f.bundle("c3", "true", "true"));
    req.options = MessageField::some(Any {
        type_url: "example.Unknown".into(),
        ..Default::default()
    });
    assert_eq!(code(s.create(req).await), Code::INVALID_ARGUMENT);

    // Create twice, exec ID twice, start twice, delete while running.
    assert_eq!(
        code(s.create(f.create_request("c2", &b)).await),
        Code::ALREADY_EXISTS
    );
    s.start(start_req("c2", "")).await.expect("start");
    assert_eq!(
        code(s.start(start_req("c2", "")).await),
        Code::FAILED_PRECONDITION
    );
    s.exec(exec_req("c2", "e1")).await.expect("exec");
    assert_eq!(
        code(s.exec(exec_req("c2", "e1")).await),
        Code::ALREADY_EXISTS
    );
    let del = api::DeleteRequest {
        id: "c2".into(),
        ..Default::default()
    };
    assert_eq!(code(s.delete(del.clone()).await), Code::FAILED_PRECONDITION);

    // argv and env that execve would refuse inside runc init: refused here, before runc.
    let mut big = exec_req("c2", "big");
    if let Some(spec) = big.spec.as_mut() {
        let env = format!("BIG={}", "A".repeat(1 << 20));
        spec.value = format!(r#"{{"args":["/bin/true"],"env":["{env}"],"cwd":"/"}}"#).into_bytes();
    }
    let e = s.exec(big).await.expect_err("exec with a 1 MiB env");
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert!(
        e.to_string()
            .starts_with("exec big in container c2: env[0] is 1048581 bytes"),
        "{e}"
    );
    // A spec that is not a JSON object is refused at Exec, as the Go shim's json.Unmarshal does.
    for bad in [&b"not json"[..], b"[]", b"null"] {
        let mut req = exec_req("c2", "nojson");
        if let Some(spec) = req.spec.as_mut() {
            spec.value = bad.to_vec();
        }
        let e = s
            .exec(req)
            .await
            .expect_err("exec with a spec that is no object");
        assert_eq!(e.code(), Code::INVALID_ARGUMENT, "{e}");
        assert!(e.to_string().contains("the process spec is not"), "{e}");
    }
    let b4 = f.bundle("c4", "exec sleep 1000", "true");
    let config = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "args": ["sh"],
            "env": ["PATH=/bin", format!("BIG={}", "A".repeat(1 << 20))],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        },
        "root": {"path": "rootfs"},
    });
    std::fs::write(b4.join("config.json"), config.to_string()).expect("config.json");
    let e = s
        .create(f.create_request("c4", &b4))
        .await
        .expect_err("create with a 1 MiB env");
    assert_eq!(e.code(), Code::INVALID_ARGUMENT);
    assert!(
        e.to_string()
            .starts_with("create container c4: env[1] is 1048581 bytes"),
        "{e}"
    );

    // Stop it: Kill then is NotFound, Exec is FailedPrecondition.
    let kill = api::KillRequest {
        id: "c2".into(),
        signal: 9,
        ..Default::default()
    };
    s.kill(kill.clone()).await.expect("kill");
    s.wait(api::WaitRequest {
        id: "c2".into(),
        ..Default::default()
    })
    .await
    .expect("wait");
    assert_eq!(code(s.kill(kill).await), Code::NOT_FOUND);
    assert_eq!(
        code(s.exec(exec_req("c2", "e2")).await),
        Code::FAILED_PRECONDITION
    );
    assert_eq!(
        code(s.start(start_req("c2", "e1")).await),
        Code::FAILED_PRECONDITION
    );
    s.delete(del).await.expect("delete stopped container");
}

#[tokio::test]
async fn a_stuck_runc_in_one_container_does_not_stall_another() {
    let f = fixture();
    let stuck = f
        .create("stuck", "exec sleep 1000", "exec sleep 1000")
        .await;
    f.create("free", "exec sleep 1000", "exec sleep 1000").await;
    std::fs::write(stuck.join("hang-start"), "").expect("hang marker");
    let service = f.service.clone();
    let s = service.clone();
    let pending = tokio::spawn(async move { s.start(start_req("stuck", "")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !pending.is_finished(),
        "the stuck start should still be running"
    );

    let quick = async {
        let st = service
            .state(api::StateRequest {
                id: "stuck".into(),
                ..Default::default()
            })
            .await
            .expect("state of the stuck container");
        assert_eq!(st.status(), api::Status::CREATED);
        service
            .start(start_req("free", ""))
            .await
            .expect("start free");
        service
            .exec(exec_req("free", "e1"))
            .await
            .expect("exec free");
        service
            .start(start_req("free", "e1"))
            .await
            .expect("start exec");
        service
            .kill(api::KillRequest {
                id: "free".into(),
                signal: 9,
                ..Default::default()
            })
            .await
            .expect("kill free");
    };
    tokio::time::timeout(Duration::from_secs(5), quick)
        .await
        .expect("calls on other containers waited for the stuck runc");

    std::fs::remove_file(stuck.join("hang-start")).expect("release");
    pending
        .await
        .expect("join")
        .expect("stuck start completes once released");
}

#[tokio::test]
async fn checkpoint_then_restore_through_runc() {
    let mut f = fixture();
    f.create("cp", "exec sleep 1000", "true").await;
    f.service.start(start_req("cp", "")).await.expect("start");
    let state = f.dir.path().join("state/test");
    let opts = containerd_shim::protos::shim::oci::CheckpointOptions {
        open_tcp: true,
        ..Default::default()
    };
    f.service
        .checkpoint(api::CheckpointTaskRequest {
            id: "cp".into(),
            path: "/images/cp1".into(),
            options: MessageField::some(Any {
                type_url: "containerd.runc.v1.CheckpointOptions".into(),
                value: opts.write_to_bytes().expect("encode"),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("checkpoint");
    let args = std::fs::read_to_string(state.join("checkpoint.args")).expect("args");
    for want in [
        " checkpoint --image-path /images/cp1 --work-path ",
        " --tcp-established --leave-running cp",
    ] {
        assert!(args.contains(want), "{want:?} not in {args:?}");
    }
    let mut saw = false;
    for _ in 0..4 {
        if let TaskEvent::Checkpointed { checkpoint, .. } = f.next_event().await {
            assert_eq!(checkpoint, "/images/cp1");
            saw = true;
            break;
        }
    }
    assert!(saw, "no TaskCheckpointed event");

    // A container created from that checkpoint runs only once Start restores it.
    let b = f.bundle("rs", "exec sleep 1000", "true");
    let mut req = f.create_request("rs", &b);
    req.checkpoint = "/images/cp1".into();
    let created = f.service.create(req).await.expect("create from checkpoint");
    assert_eq!(created.pid, 0);
    let pid = f
        .service
        .start(start_req("rs", ""))
        .await
        .expect("restore")
        .pid;
    assert_ne!(pid, 0);
    let args = std::fs::read_to_string(state.join("restore.args")).expect("restore called");
    assert!(args.contains(" restore --detach --bundle "), "{args}");
    assert!(args.contains(" --image-path /images/cp1 "), "{args}");
    let st = f
        .service
        .state(api::StateRequest {
            id: "rs".into(),
            ..Default::default()
        })
        .await
        .expect("state");
    assert_eq!((st.status(), st.pid), (api::Status::RUNNING, pid));
}

#[tokio::test]
async fn a_container_annotation_sets_the_runc_deadline_and_the_container_stays_manageable() {
    let f = fixture();
    let b = f.bundle("slow", "exec sleep 1000", "true");
    std::fs::write(
        b.join("config.json"),
        r#"{"ociVersion":"1.0.2","annotations":{"io.sluice.runc-timeout-seconds":"0.5"}}"#,
    )
    .expect("config.json");
    std::fs::write(b.join("hang-start"), "").expect("hang marker");
    f.service
        .create(f.create_request("slow", &b))
        .await
        .expect("create");
    let started = std::time::Instant::now();
    let err = f
        .service
        .start(start_req("slow", ""))
        .await
        .expect_err("runc start hangs");
    let elapsed = started.elapsed();
    assert_eq!(err.code(), Code::DEADLINE_EXCEEDED);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "start container slow: runc start for container slow did not finish within 0."
        ),
        "{text}"
    );
    // Still manageable: state, kill, delete.
    let st = f
        .service
        .state(api::StateRequest {
            id: "slow".into(),
            ..Default::default()
        })
        .await
        .expect("state");
    assert_eq!(st.status(), api::Status::CREATED);
    f.service
        .kill(api::KillRequest {
            id: "slow".into(),
            signal: 9,
            ..Default::default()
        })
        .await
        .expect("kill");
    f.service
        .wait(api::WaitRequest {
            id: "slow".into(),
            ..Default::default()
        })
        .await
        .expect("wait");
    f.service
        .delete(api::DeleteRequest {
            id: "slow".into(),
            ..Default::default()
        })
        .await
        .expect("delete");

    let bad = f.bundle("badann", "true", "true");
    std::fs::write(
        bad.join("config.json"),
        r#"{"ociVersion":"1.0.2","annotations":{"io.sluice.runc-timeout-seconds":"soon"}}"#,
    )
    .expect("config.json");
    assert_eq!(
        code(f.service.create(f.create_request("badann", &bad)).await),
        Code::INVALID_ARGUMENT
    );
}

/// A ttrpc server on a socket in the fixture's directory, serving [`services`] as the shim
/// does, and a client of it.
async fn serve_on_socket(f: &Fixture) -> (ttrpc::r#async::Server, ttrpc::r#async::Client) {
    let path = f.dir.path().join("shim.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    let listener = ttrpc::r#async::transport::Listener::try_from(listener).expect("listener");
    let mut server = ttrpc::r#async::Server::new()
        .add_listener(listener)
        .register_service(services(f.service.clone()));
    server.start().await.expect("start the ttrpc server");
    let client = ttrpc::r#async::Client::connect(&format!("unix://{}", path.display()))
        .await
        .expect("connect");
    (server, client)
}

/// The payload of the answer to `service/method`, or the status it was refused with.
async fn call(
    client: &ttrpc::r#async::Client,
    service: &str,
    method: &str,
    payload: Vec<u8>,
) -> std::result::Result<Vec<u8>, (Code, String)> {
    let req = ttrpc::Request {
        service: service.into(),
        method: method.into(),
        payload,
        timeout_nano: Duration::from_secs(10).as_nanos() as i64,
        ..Default::default()
    };
    match client.request(req).await {
        Ok(resp) => Ok(resp.payload),
        Err(ttrpc::Error::RpcStatus(s)) => Err((s.code(), s.message().to_string())),
        Err(e) => panic!("{service}/{method}: transport error {e}"),
    }
}

#[tokio::test]
async fn task_api_v2_and_v3_give_the_same_answers_over_the_socket() {
    let f = fixture();
    f.create("wire", "exec sleep 1000", "true").await;
    f.service.start(start_req("wire", "")).await.expect("start");
    let (mut server, client) = serve_on_socket(&f).await;
    let state = |id: &str| {
        api::StateRequest {
            id: id.into(),
            ..Default::default()
        }
        .write_to_bytes()
        .expect("encode")
    };
    let connect = api::ConnectRequest {
        id: "wire".into(),
        ..Default::default()
    }
    .write_to_bytes()
    .expect("encode");
    let cases: [(&str, Vec<u8>); 4] = [
        ("State", state("wire")),
        ("State", state("nope")),
        ("State", state("../x")),
        ("Connect", connect),
    ];
    for (method, payload) in cases {
        let v2 = call(&client, TASK_SERVICE, method, payload.clone()).await;
        let v3 = call(&client, TASK_SERVICE_V3, method, payload).await;
        assert_eq!(v2, v3, "{method}");
    }
    let running = api::StateResponse::parse_from_bytes(
        &call(&client, TASK_SERVICE_V3, "State", state("wire"))
            .await
            .expect("v3 State"),
    )
    .expect("decode");
    assert_eq!(running.status(), api::Status::RUNNING);
    assert_eq!(
        call(&client, TASK_SERVICE_V3, "State", state("nope"))
            .await
            .map_err(|(c, _)| c),
        Err(Code::NOT_FOUND)
    );
    // The guard stands in front of both, and names the service the call came in on.
    let not_utf8 = vec![0x0a, 0x02, 0xff, 0xfe];
    for service in TASK_SERVICES {
        let (code, message) = call(&client, service, "Kill", not_utf8.clone())
            .await
            .expect_err("garbage payload");
        assert_eq!(code, Code::INVALID_ARGUMENT, "{service}");
        assert!(
            message.starts_with(&format!("cannot decode {service}/Kill request: ")),
            "{message}"
        );
    }
    server.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn an_unknown_service_or_method_is_refused_as_before() {
    let f = fixture();
    let (mut server, client) = serve_on_socket(&f).await;
    assert_eq!(
        call(&client, "containerd.task.v4.Task", "State", Vec::new()).await,
        Err((
            Code::INVALID_ARGUMENT,
            "containerd.task.v4.Task service does not exist".into()
        ))
    );
    for service in TASK_SERVICES {
        assert_eq!(
            call(&client, service, "Nope", Vec::new()).await,
            Err((Code::UNIMPLEMENTED, "Nope method".into())),
            "{service}"
        );
    }
    server.shutdown().await.expect("shutdown");
}
