//! What a container can leave on the host after it is gone: runc state, mounts, cgroups, runc
//! processes. The tests that remove containers check all of it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, poll};
use crate::containers;
use crate::harness::TestEnv;

pub fn runc_list(env: &TestEnv) -> Vec<String> {
    let mut c = Command::new(&crate::system::tools().runc);
    c.arg("--root").arg(&env.runc_root).arg("list").arg("-q");
    cmd::run(c, None, Duration::from_secs(30))
        .stdout_str()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|p| p.starts_with(&d))
        .map(str::to_string)
        .collect()
}

/// The container's cgroup dirs in every hierarchy (ctr's default path `/<ns>/<id>`).
pub fn cgroups_of(env: &TestEnv, id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut hierarchies = vec![root.to_path_buf()];
    if let Ok(d) = fs::read_dir(root) {
        hierarchies.extend(d.flatten().map(|e| e.path()));
    }
    hierarchies
        .into_iter()
        .map(|h| h.join(&env.ns).join(id))
        .filter(|p| p.is_dir())
        .collect()
}

pub fn pids_cgroup(env: &TestEnv, id: &str) -> PathBuf {
    Path::new("/sys/fs/cgroup/pids").join(&env.ns).join(id)
}

/// No runc state, no mount under the bundle, no cgroup dir in any hierarchy, no runc process of
/// `id` left.
pub fn assert_no_leftovers(env: &TestEnv, id: &str) {
    let bundle = containers::bundle_dir(env, id);
    let ok = poll(Duration::from_secs(15), || {
        (!runc_list(env).iter().any(|l| l == id)
            && mounts_under(&bundle).is_empty()
            && cgroups_of(env, id).is_empty()
            && env.wrapper_procs().is_empty())
        .then_some(())
    });
    assert!(
        ok.is_some(),
        "leftovers of {id}: runc list {:?}, mounts {:?}, cgroups {:?}, wrappers {:?}",
        runc_list(env),
        mounts_under(&bundle),
        cgroups_of(env, id),
        env.wrapper_procs()
            .iter()
            .map(|p| p.cmdline())
            .collect::<Vec<_>>()
    );
}
