//! Small tools the rows share: Task requests straight to a shim's socket with a client-side
//! deadline, timing, removal of a container with the list of what it left behind, and
//! counters of what a shim holds.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::sync::Client;

use sluice_integration::cmd::poll;
use sluice_integration::harness::TestEnv;
use sluice_integration::traces::{cgroups_of, mounts_under, runc_list};
use sluice_integration::{cells, containers, procs, Runtime};

/// The answer to one request: the message, or (code, text); `NO_ANSWER` when the client's
/// deadline passed first.
pub type Reply<R> = Result<R, (String, String)>;

/// Sends `method` of the Task service to the shim of `id`, giving up after `timeout` (the
/// deadline travels with the request, as containerd's does).
pub fn rpc<Q: Message, R: Message>(
    env: &TestEnv,
    id: &str,
    method: &str,
    req: &Q,
    timeout: Duration,
) -> (Reply<R>, Duration) {
    let address = containers::shim_address(env, id);
    let started = Instant::now();
    let mut r = ttrpc::Request::new();
    r.service = cells::task_service(env, id).to_string();
    r.method = method.to_string();
    r.payload = req.write_to_bytes().expect("encode request");
    r.timeout_nano = timeout.as_nanos() as i64;
    // A connection per request: one that timed out is of no further use.
    let reply = match Client::connect(&address) {
        Err(e) => Err(("CONNECT".into(), format!("{e:?}"))),
        Ok(client) => match client.request(r) {
            Ok(resp) => R::parse_from_bytes(&resp.payload)
                .map_err(|e| ("DECODE".into(), format!("{method}: {e}"))),
            Err(ttrpc::Error::RpcStatus(s)) => {
                Err((format!("{:?}", s.code()), s.message().to_string()))
            }
            Err(e) if format!("{e:?}").to_lowercase().contains("timeout") => {
                Err(("NO_ANSWER".into(), format!("none within {timeout:?}")))
            }
            Err(e) => Err(("TRANSPORT".into(), format!("{e:?}"))),
        },
    };
    (reply, started.elapsed())
}

/// Kills `id` (SIGKILL), waits for STOPPED, deletes task and container, each with a short
/// deadline, then lists what is left of it after up to `settle`: runc state, cgroups, mounts
/// under its bundle, runc processes. Empty when nothing is left.
pub fn remove(env: &TestEnv, id: &str, settle: Duration) -> Vec<String> {
    let t = Duration::from_secs(15);
    let mut notes = Vec::new();
    if let Some(task) = env.task(id) {
        let k = env.ctr(&["task", "kill", "--signal", "SIGKILL", id], t);
        // A task that stopped meanwhile: NotFound, worded per line and shim.
        let finished = task.status == "STOPPED"
            || k.stderr_str().contains("not found")
            || k.stderr_str().contains("already finished");
        if !k.success() && !finished {
            notes.push(format!("kill {id}: {}", k.stderr_str().trim()));
        }
        let stopped = poll(Duration::from_secs(15), || {
            env.task(id)
                .map(|t| t.status == "STOPPED")
                .unwrap_or(true)
                .then_some(())
        });
        if stopped.is_none() {
            notes.push(format!("{id} not STOPPED 15 s after SIGKILL"));
        }
        let d = env.ctr(&["task", "delete", "--force", id], t);
        if !d.success() && !d.stderr_str().contains("not found") {
            notes.push(format!("task delete {id}: {}", d.stderr_str().trim()));
        }
    }
    let c = env.ctr(&["container", "delete", id], t);
    if !c.success() && !c.stderr_str().contains("not found") {
        notes.push(format!("container delete {id}: {}", c.stderr_str().trim()));
    }
    let left = poll(settle, || {
        let l = leftovers(env, id);
        l.is_empty().then_some(())
    });
    if left.is_none() {
        notes.extend(leftovers(env, id));
    }
    notes
}

/// What is left of `id`: runc state, cgroups, mounts under its bundle, runc processes of the
/// test.
pub fn leftovers(env: &TestEnv, id: &str) -> Vec<String> {
    let mut left = Vec::new();
    if runc_list(env).iter().any(|l| l == id) {
        left.push(format!("runc state of {id}"));
    }
    for cg in cgroups_of(env, id) {
        left.push(format!("cgroup {}", cg.display()));
    }
    for m in mounts_under(&containers::bundle_dir(env, id)) {
        left.push(format!("mount {m}"));
    }
    for p in env.runc_procs() {
        left.push(format!("runc process {} ({})", p.pid, p.cmdline()));
    }
    left
}

/// The one shim of `rt` serving this containerd.
pub fn one_shim(env: &TestEnv, rt: Runtime) -> i32 {
    let shims = env.shims(rt);
    assert_eq!(
        shims.len(),
        1,
        "[{rt}] expected one shim: {:?}",
        shims.iter().map(|p| p.pid).collect::<Vec<_>>()
    );
    shims[0].pid
}

/// The shim's descriptors once they stop changing (a closing connection or a copier that is
/// finishing must not count): the lowest of a few readings 200 ms apart.
pub fn settled_fds(pid: i32) -> usize {
    (0..5)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(200));
            procs::fd_count(pid)
        })
        .min()
        .unwrap_or(0)
}

/// Zombie processes (state Z) that are children of `parent`.
pub fn zombie_children(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let mut f = rest.split_whitespace();
        let state = f.next();
        let ppid = f.next().and_then(|p| p.parse::<i32>().ok());
        if state == Some("Z") && ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

/// Processes whose cgroup (any hierarchy) is the container's (`/<ns>/<id>`), with their state.
pub fn container_procs(env: &TestEnv, id: &str) -> Vec<(i32, String, String)> {
    let cg = format!("/{}/{}", env.ns, id);
    procs::find(|p| p.cgroups.iter().any(|c| c == &cg))
        .into_iter()
        .map(|p| {
            let state = fs::read_to_string(format!("/proc/{}/stat", p.pid))
                .ok()
                .and_then(|s| {
                    s.rfind(')')
                        .and_then(|i| s[i + 2..].split_whitespace().next().map(str::to_string))
                })
                .unwrap_or_default();
            (p.pid, state, p.cmdline())
        })
        .collect()
}

/// A tmpfs of `size` mounted at `dir`, unmounted (lazily: a shim may still hold a file on it)
/// when dropped.
pub struct SmallFs {
    dir: std::path::PathBuf,
}

impl SmallFs {
    pub fn mount(dir: &Path, size: &str) -> SmallFs {
        fs::create_dir_all(dir).expect("mkdir for the small fs");
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs on {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}
