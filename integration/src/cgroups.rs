//! The container's cgroup files as ctr's default cgroups path (`/<ns>/<id>`) places them, on
//! cgroup v1 or v2.

use std::fs;
use std::path::{Path, PathBuf};

use crate::harness::TestEnv;

/// True on a host whose only hierarchy is cgroup v2 (`/sys/fs/cgroup/cgroup.controllers`).
pub fn cgroup_v2_only() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The container's cgroup dir for `controller` (ctr's default cgroups path is `/<ns>/<id>`).
pub fn cgroup_dir(env: &TestEnv, controller: &str, id: &str) -> PathBuf {
    let base = if cgroup_v2_only() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        Path::new("/sys/fs/cgroup").join(controller)
    };
    let dir = base.join(&env.ns).join(id);
    assert!(
        dir.is_dir(),
        "[{}] cgroup dir {} of container {id} does not exist",
        env.runtime,
        dir.display()
    );
    dir
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// The freezer state of container `id` as v1 spells it: `FROZEN`, `FREEZING` or `THAWED`.
pub fn freezer_state(env: &TestEnv, id: &str) -> String {
    let dir = cgroup_dir(env, "freezer", id);
    if cgroup_v2_only() {
        match read_trimmed(&dir.join("cgroup.freeze")).as_str() {
            "1" => "FROZEN".into(),
            _ => "THAWED".into(),
        }
    } else {
        read_trimmed(&dir.join("freezer.state"))
    }
}

/// The memory limit of container `id` in bytes (`u64::MAX` for v2's `max`).
pub fn memory_limit(env: &TestEnv, id: &str) -> u64 {
    let dir = cgroup_dir(env, "memory", id);
    let file = if cgroup_v2_only() {
        dir.join("memory.max")
    } else {
        dir.join("memory.limit_in_bytes")
    };
    let text = read_trimmed(&file);
    if text == "max" {
        return u64::MAX;
    }
    text.parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", file.display()))
}
