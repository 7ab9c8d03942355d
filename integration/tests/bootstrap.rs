//! The bootstrap (issue 13): each containerd gets from `shim start` the newest task API it
//! speaks, recorded where that daemon records it, and the shim answers on that API.
//!
//! containerd 1.6 and 1.7 read task API v2 (1.7 refuses a shim that announces 3); containerd
//! 2.x records version 3 in the bundle's `bootstrap.json` and then calls
//! `containerd.task.v3.Task`. sluice serves v2 and v3 on one socket, so a client of the other
//! API (a tool, an older daemon after a downgrade) is answered too; the stock shim of each line
//! serves its own API only, which the stock rows pin.
//!
//! Run: `cargo test -p sluice-integration --test bootstrap -- --ignored` (as root).

use std::time::Duration;

use containerd_shim_protos::api::{StateRequest, StateResponse, Status};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;

use sluice_integration::harness::TestEnv;
use sluice_integration::versions::{self, Line};
use sluice_integration::{containers, Runtime};

const CTR_TIMEOUT: Duration = Duration::from_secs(30);
const V2: &str = "containerd.task.v2.Task";
const V3: &str = "containerd.task.v3.Task";

/// The version `bootstrap.json` records, if the daemon wrote one.
fn recorded_version(env: &TestEnv, id: &str) -> Option<u64> {
    let path = containers::bundle_dir(env, id).join("bootstrap.json");
    let text = std::fs::read_to_string(&path).ok()?;
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()));
    v.get("version").and_then(serde_json::Value::as_u64)
}

/// `State` of `id` under `service`, straight to the shim's socket.
fn state(address: &str, service: &str, id: &str) -> Result<StateResponse, String> {
    let mut req = StateRequest::new();
    req.id = id.to_string();
    let mut r = ttrpc::Request::new();
    r.service = service.to_string();
    r.method = "State".to_string();
    r.payload = req.write_to_bytes().map_err(|e| e.to_string())?;
    r.timeout_nano = Duration::from_secs(10).as_nanos() as i64;
    let client = Client::connect(address).map_err(|e| format!("connect {address}: {e:?}"))?;
    let resp = client.request(r).map_err(|e| format!("{e:?}"))?;
    StateResponse::parse_from_bytes(&resp.payload).map_err(|e| e.to_string())
}

fn answers_each_daemon_in_its_task_api(rt: Runtime) {
    let line = versions::selected_line();
    let tag = format!("[bootstrap {rt} containerd {}]", line.label());
    let env = TestEnv::start(&format!("bootstrap {rt}"), rt);
    env.run_detached("c1", &[], &["sleep", "1000"]);

    // 1.x records nothing or version 2; 2.x records 3 (its stock shim too).
    let recorded = recorded_version(&env, "c1");
    let announced = if line.is_v2() { 3 } else { 2 };
    assert_eq!(
        recorded.unwrap_or(2),
        announced,
        "{tag} bootstrap.json records {recorded:?}"
    );

    let address = containers::shim_address(&env, "c1");
    let served = |service| match state(&address, service, "c1") {
        Ok(s) => {
            assert_eq!(
                s.status.enum_value(),
                Ok(Status::RUNNING),
                "{tag} {service}: {s:?}"
            );
            true
        }
        Err(e) => {
            eprintln!("{tag} {service}: {e}");
            false
        }
    };
    let (v2, v3) = (served(V2), served(V3));
    match rt {
        Runtime::Sluice => assert!(v2 && v3, "{tag} sluice serves v2 {v2}, v3 {v3}"),
        Runtime::RuncV2 => assert_eq!(
            (v2, v3),
            (!line.is_v2(), line.is_v2()),
            "{tag} the stock shim serves its line's task API only"
        ),
    }

    // containerd talks to the shim in the API it recorded: exec, kill and delete work.
    let ex = env.exec(
        "c1",
        "e1",
        &["echo", "over", "the", "announced", "api"],
        CTR_TIMEOUT,
    );
    assert!(
        ex.success() && ex.stdout_str() == "over the announced api\n",
        "{tag} exec:\n{ex}"
    );
    containers::kill_and_delete(&env, "c1");
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn sluice_answers_each_daemon_in_its_task_api() {
    answers_each_daemon_in_its_task_api(Runtime::Sluice);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stock_answers_in_its_lines_task_api() {
    answers_each_daemon_in_its_task_api(Runtime::RuncV2);
}

/// From 2.3 on the daemon sends `BootstrapParams` on stdin and reads a protobuf
/// `BootstrapResult` back (docs/bootstrap.md). 2.4 keeps the result's extensions in
/// `bootstrap.json`: sluice attaches an empty `MountCapabilities` there (it performs no mounts
/// beyond the system ones, as runc's shim), which only the protobuf form carries, so its
/// presence shows the daemon took that path; the stock shim attaches none. Under 2.3 the
/// record has no extensions field, and a JSON reply would read the same: there the test shows
/// only that the daemon accepted the reply as task API v3 over ttrpc.
fn the_result_is_protobuf_from_2_3_on(rt: Runtime) {
    let line = versions::selected_line();
    let tag = format!("[bootstrap result {rt} containerd {}]", line.label());
    if !line.bootstrap_params() {
        eprintln!("{tag} containerd before 2.3 sends no BootstrapParams; nothing to check");
        return;
    }
    let env = TestEnv::start(&format!("bootstrap-result {rt}"), rt);
    env.run_detached("c1", &[], &["sleep", "1000"]);
    let path = containers::bundle_dir(&env, "c1").join("bootstrap.json");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{tag} {}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{tag} {text:?}: {e}"));
    assert_eq!(v["version"], 3, "{tag} bootstrap.json: {text}");
    assert_eq!(v["protocol"], "ttrpc", "{tag} bootstrap.json: {text}");
    let mount_caps = text.contains(MOUNT_CAPABILITIES_TYPE);
    match (rt, line >= Line::V2_4) {
        (Runtime::Sluice, true) => assert!(
            mount_caps,
            "{tag} no MountCapabilities extension in bootstrap.json: {text}"
        ),
        _ => assert!(
            v.get("extensions").is_none() && !mount_caps,
            "{tag} bootstrap.json has extensions: {text}"
        ),
    }
    containers::kill_and_delete(&env, "c1");
}

const MOUNT_CAPABILITIES_TYPE: &str = "containerd.types.MountCapabilities";

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn sluice_result_is_protobuf_from_2_3_on() {
    the_result_is_protobuf_from_2_3_on(Runtime::Sluice);
}

#[test]
#[ignore = "needs root, containerd and runc; run with --ignored"]
fn stock_result_is_protobuf_from_2_3_on() {
    the_result_is_protobuf_from_2_3_on(Runtime::RuncV2);
}
