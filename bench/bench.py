#!/usr/bin/env python3
"""sluice vs containerd's stock runc shim, side by side in one private containerd.

Started by bench/run.sh (which builds what is missing and cleans up even after a crash).
See bench/README.md for what each metric means and how it is measured.
"""

import argparse
import datetime
import hashlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

STOCK = "stock"
SLUICE = "sluice"
RUNC = "runc"
RUNTIME_TYPE = {STOCK: "io.containerd.runc.v2", SLUICE: "io.containerd.sluice.v2"}
SHIM_NAME = "containerd-shim-sluice-v2"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHIM_SOCKET_DIR = "/run/containerd/s"
RUNC_STATE_BASE = "/run/containerd/runc"
GIB = 1 << 30
CGO_LINE = "runtime/cgo: pthread_create failed: Resource temporarily unavailable"
CLK_TCK = os.sysconf("SC_CLK_TCK")
CTR_TIMEOUT = 120
# The two 1 GiB workloads: busybox `head -c` (4 KiB writes, and CPU-bound in the container on
# a slow machine) and busybox `dd` with 64 KiB writes (leaves the shim and ctr as the bottleneck).
HEAD_CMD = f"head -c {GIB} /dev/zero"
DD_CMD = f"dd if=/dev/zero bs=65536 count={GIB // 65536} 2>/dev/null"

SIZES = {
    # quick: a few minutes, for development and a first look.
    "quick": dict(warmup=2, lifecycle=10, exec=10, gib=2, idle=10, conc=50, conc_reps=1,
                  streams=50, timeline=8),
    # full: the numbers to report.
    "full": dict(warmup=3, lifecycle=30, exec=200, gib=5, idle=10, conc=50, conc_reps=3,
                 streams=50, timeline=20),
}


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def p90(xs):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


# ---- processes -------------------------------------------------------------------------------

def proc_argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return None


def all_pids():
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def arg_after(argv, flag):
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def cpu_ticks(pid):
    """utime+stime of the whole process (all its threads, live and exited), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[11]) + int(rest[12])


def start_time(pid):
    """Start time of `pid` in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def is_shim(pid, cid, sock):
    try:
        with open(f"/proc/{pid}/comm") as f:
            if not f.read().startswith("containerd-shim"):
                return False
    except OSError:
        return False
    argv = proc_argv(pid)
    return bool(argv) and arg_after(argv, "-id") == cid and arg_after(argv, "-address") == sock


def mem_of(pid):
    """Rss, Pss, Uss (Private_Clean+Private_Dirty) in KiB from smaps_rollup; Threads."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":"):
                    out[parts[0][:-1]] = int(parts[1]) if parts[1].isdigit() else 0
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except OSError:
        return None
    return dict(rss=out.get("Rss", 0), pss=out.get("Pss", 0),
                uss=out.get("Private_Clean", 0) + out.get("Private_Dirty", 0),
                threads=threads)


def kill_pids(pids, grace=5.0):
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.time() + grace
    while time.time() < deadline and any(os.path.exists(f"/proc/{p}") and cpu_ticks(p) is not None
                                         for p in pids):
        time.sleep(0.1)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


class Proc:
    """A child whose CPU time we get from wait4 (ctr's own rusage)."""

    def __init__(self, argv, stdout=subprocess.DEVNULL, env=None):
        self.argv = argv
        # A file, not a pipe: a container started detached inherits runc's stderr and would
        # keep a pipe open.
        self.errf = tempfile.TemporaryFile()
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=self.errf,
                                  env=env, start_new_session=True)
        self.err = b""

    def wait(self, timeout=CTR_TIMEOUT):
        timer = threading.Timer(timeout, self._kill)
        timer.start()
        try:
            _, status, ru = os.wait4(self.p.pid, 0)
        finally:
            timer.cancel()
        self.wall = time.perf_counter() - self.t0
        self.p.returncode = os.waitstatus_to_exitcode(status)
        self.rc = self.p.returncode
        self.cpu = ru.ru_utime + ru.ru_stime
        self.errf.seek(0)
        self.err = self.errf.read()
        self.errf.close()
        return self

    def _kill(self):
        self.timed_out = True
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except OSError:
            pass

    def stderr(self):
        return self.err.decode(errors="replace").strip()


def run(argv, timeout=CTR_TIMEOUT, check=True, stdout=subprocess.DEVNULL, env=None):
    p = Proc(argv, stdout=stdout, env=env).wait(timeout)
    if check and p.rc != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {p.rc}: {p.stderr()[-2000:]}")
    return p


def parallel(fns, width=16):
    """Runs the callables with at most `width` at once; returns their results in order."""
    results = [None] * len(fns)
    errors = []
    idx = iter(range(len(fns)))
    lock = threading.Lock()

    def worker():
        while True:
            with lock:
                i = next(idx, None)
            if i is None:
                return
            try:
                results[i] = fns[i]()
            except Exception as e:  # noqa: BLE001 - reported after all ran
                errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(min(width, len(fns)))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return results


# ---- the environment -------------------------------------------------------------------------

class Env:
    def __init__(self, d, sluice_bin=None, fault_runc=None):
        self.dir = d
        self.ns = "sluice-bench-" + os.path.basename(d).replace("_", "-").lower()[-12:]
        self.sock = os.path.join(d, "c.sock")
        self.rootfs = os.path.join(d, "rootfs")
        self.fifo = os.path.join(d, "fifo")
        self.runc_root = os.path.join(d, "runc-root")
        self.wrap = os.path.join(d, "wrap")
        self.fault_dir = os.path.join(d, "fault")
        self.real_runc = shutil.which("runc", path=SYSTEM_PATH)
        self.ctr_bin = shutil.which("ctr", path=SYSTEM_PATH)
        self.containerd_bin = shutil.which("containerd", path=SYSTEM_PATH)
        self.sluice_bin = sluice_bin
        self.fault_runc = fault_runc
        self.containerd = None
        self.events = []
        self.events_proc = None
        self.templates = {}

    # -- layout and containerd --

    def setup(self):
        for sub in ("root", "state", "wrap", "shims", "bin", "fifo", "opt", "fault", "bundles",
                    "runc-root", "streams"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        with open(os.path.join(self.dir, "namespace"), "w") as f:
            f.write(self.ns + "\n")
        self.build_rootfs()
        # A private copy of the shim: a rebuild elsewhere cannot change it mid-run.
        snap = os.path.join(self.dir, "bin", SHIM_NAME)
        shutil.copy2(self.sluice_bin, snap)
        os.symlink(snap, os.path.join(self.dir, "shims", SHIM_NAME))
        # `runc` on containerd's PATH: the real one, swapped for the fault wrapper in the drain
        # test (both shims look runc up on PATH and exec it per call).
        os.symlink(self.real_runc, os.path.join(self.wrap, "runc"))
        if self.fault_runc:
            shutil.copy2(self.fault_runc, os.path.join(self.fault_dir, "runc"))
        for name, argv in (("true", ["/bin/true"]),
                           ("sleep", ["/bin/sleep", "1000000"]),
                           ("head", ["/bin/sh", "-c", HEAD_CMD]),
                           ("dd", ["/bin/sh", "-c", DD_CMD])):
            self.make_template(name, argv)
        self.write_config()
        self.start_containerd()

    def build_rootfs(self):
        busybox = shutil.which("busybox", path=SYSTEM_PATH)
        for sub in ("bin", "proc", "sys", "dev", "tmp", "etc", "root"):
            os.makedirs(os.path.join(self.rootfs, sub), exist_ok=True)
        shutil.copy2(busybox, os.path.join(self.rootfs, "bin", "busybox"))
        applets = subprocess.run([busybox, "--list"], capture_output=True, text=True,
                                 check=True).stdout.split()
        for a in applets:
            if a and a != "busybox" and "/" not in a:
                link = os.path.join(self.rootfs, "bin", a)
                if not os.path.lexists(link):
                    os.symlink("busybox", link)

    def make_template(self, name, argv):
        b = os.path.join(self.dir, "bundles", "_" + name)
        os.makedirs(b, exist_ok=True)
        subprocess.run([self.real_runc, "spec", "--bundle", b], check=True)
        path = os.path.join(b, "config.json")
        with open(path) as f:
            spec = json.load(f)
        spec["root"] = {"path": self.rootfs, "readonly": True}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = argv
        spec["process"]["env"] = ["PATH=/bin"]
        self.templates[name] = spec

    def bundle(self, kind, cid):
        """A bundle for one runc container: its own cgroup `/<ns>-runc/<cid>`, as ctr gives each
        container `/<ns>/<cid>`. Written before the timed part."""
        b = os.path.join(self.dir, "bundles", cid)
        os.makedirs(b, exist_ok=True)
        spec = json.loads(json.dumps(self.templates[kind]))
        spec["linux"]["cgroupsPath"] = f"/{self.ns}-runc/{cid}"
        with open(os.path.join(b, "config.json"), "w") as f:
            json.dump(spec, f)
        return b

    def write_config(self):
        d = self.dir
        cfg = f"""# private containerd for the sluice benchmark
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{self.sock}"

[ttrpc]
  address = "{self.sock}.ttrpc"

[debug]
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"""
        with open(os.path.join(d, "config.toml"), "w") as f:
            f.write(cfg)

    def containerd_path(self):
        return f"{self.wrap}:{os.path.join(self.dir, 'shims')}:{SYSTEM_PATH}"

    def start_containerd(self):
        logf = open(os.path.join(self.dir, "containerd.log"), "wb")
        env = {"PATH": self.containerd_path()}
        self.containerd = subprocess.Popen(
            [self.containerd_bin, "--config", os.path.join(self.dir, "config.toml")],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=env, start_new_session=True)
        with open(os.path.join(self.dir, "containerd.pid"), "w") as f:
            f.write(f"{self.containerd.pid}\n")
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.containerd.poll() is not None:
                raise RuntimeError("containerd exited at startup; see containerd.log")
            if os.path.exists(self.sock) and \
                    self.ctr(["version"], check=False, timeout=5).rc == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("containerd did not come up in 30 s")
        self.events_proc = subprocess.Popen(self.ctr_argv(["events"]), stdout=subprocess.PIPE,
                                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        threading.Thread(target=self._read_events, daemon=True).start()

    def _read_events(self):
        for line in self.events_proc.stdout:
            self.events.append(line.decode(errors="replace").rstrip("\n"))

    # -- ctr --

    def ctr_argv(self, args):
        return [self.ctr_bin, "-a", self.sock, "-n", self.ns] + args

    def ctr(self, args, check=True, timeout=CTR_TIMEOUT, stdout=subprocess.DEVNULL):
        return run(self.ctr_argv(args), timeout=timeout, check=check, stdout=stdout)

    def run_argv(self, rt, cid, argv, detach=False):
        a = ["run", "--detach" if detach else "--rm", "--runtime", RUNTIME_TYPE[rt],
             "--fifo-dir", self.fifo, "--env", "PATH=/bin", "--rootfs", self.rootfs, cid]
        return self.ctr_argv(a + argv)

    def runc(self, args):
        return [self.real_runc, "--root", self.runc_root] + args

    def task_ls(self):
        out = subprocess.run(self.ctr_argv(["task", "ls"]), capture_output=True, text=True,
                             timeout=CTR_TIMEOUT).stdout
        rows = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            if len(f) >= 3:
                rows[f[0]] = f[2]
        return rows

    def shims(self):
        """container id -> pid of the shim server serving it (one shim per container here).

        A child the server just forked (to exec runc) shows the server's command line until it
        execs: the oldest matching process is the server."""
        found, started = {}, {}
        for pid in all_pids():
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if not f.read().startswith("containerd-shim"):
                        continue
            except OSError:
                continue
            argv = proc_argv(pid)
            if not argv or arg_after(argv, "-address") != self.sock:
                continue
            if "start" in argv or "delete" in argv:
                continue
            cid = arg_after(argv, "-id")
            st = start_time(pid)
            if cid and st is not None and (cid not in found or st < started[cid]):
                found[cid], started[cid] = pid, st
        return found

    def find_shim(self, cid):
        return self.shims().get(cid)

    def remove(self, ids, width=10):
        """Kill and delete tasks and containers, then wait for their shims to exit."""
        def one(cid):
            self.ctr(["task", "kill", "--signal", "SIGKILL", cid], check=False, timeout=30)
            self.ctr(["task", "delete", "--force", cid], check=False, timeout=30)
            self.ctr(["container", "delete", cid], check=False, timeout=30)
        parallel([lambda c=c: one(c) for c in ids], width)
        self.wait_shims_gone(ids)

    def wait_shims_gone(self, ids, timeout=15):
        ids = set(ids)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not ids & set(self.shims()):
                return
            time.sleep(0.1)
        log(f"warning: shims of {sorted(ids & set(self.shims()))[:5]} still alive")

    def runc_remove(self, ids, width=10):
        parallel([lambda c=c: run(self.runc(["delete", "--force", c]), check=False, timeout=30)
                  for c in ids], width)

    # -- teardown --

    def teardown(self):
        if self.events_proc:
            try:
                os.killpg(self.events_proc.pid, signal.SIGKILL)
            except OSError:
                pass
        cleanup_dir(self.dir, self.containerd)


def cleanup_dir(d, containerd=None):
    """Removes everything a run in `d` made; safe to run twice, and after a crash."""
    try:
        with open(os.path.join(d, "namespace")) as f:
            ns = f.read().strip()
    except OSError:
        ns = None
    sock = os.path.join(d, "c.sock")
    ctr_bin = shutil.which("ctr", path=SYSTEM_PATH)
    real_runc = shutil.which("runc", path=SYSTEM_PATH)
    # The real runc again, in case the drain test was interrupted with the wrapper in place.
    wrap = os.path.join(d, "wrap", "runc")
    if os.path.lexists(wrap) and real_runc:
        try:
            os.unlink(wrap)
            os.symlink(real_runc, wrap)
        except OSError:
            pass
    # Our own children that name the dir (attached ctr runs, ctr events).
    ours = []
    for pid in all_pids():
        argv = proc_argv(pid)
        if argv and pid != os.getpid() and any(d in a for a in argv) and \
                not (argv and os.path.basename(argv[0]).startswith("containerd")):
            ours.append(pid)
    shim_sockets = []
    tasks_dir = os.path.join(d, "state", "io.containerd.runtime.v2.task")
    if os.path.isdir(tasks_dir):
        for n in os.listdir(tasks_dir):
            for b in os.listdir(os.path.join(tasks_dir, n)):
                try:
                    with open(os.path.join(tasks_dir, n, b, "address")) as f:
                        a = f.read().strip()
                    if a.startswith("unix://" + SHIM_SOCKET_DIR + "/"):
                        shim_sockets.append(a[len("unix://"):])
                except OSError:
                    pass
    alive = containerd is not None and containerd.poll() is None
    if containerd is None:
        try:
            with open(os.path.join(d, "containerd.pid")) as f:
                pid = int(f.read())
            argv = proc_argv(pid)
            alive = bool(argv) and any(d in a for a in argv)
            if alive:
                containerd_pid = pid
        except (OSError, ValueError):
            pass
    else:
        containerd_pid = containerd.pid
    if ours:
        kill_pids([p for p in ours if p != (containerd_pid if alive else -1)], grace=2)
    if alive and ns and ctr_bin:
        base = [ctr_bin, "-a", sock, "-n", ns]
        try:
            ids = subprocess.run(base + ["container", "ls", "-q"], capture_output=True,
                                 text=True, timeout=20).stdout.split()
        except subprocess.TimeoutExpired:
            ids = []

        def rm(cid):
            for a in (["task", "kill", "--signal", "SIGKILL", cid], ["task", "delete", "--force", cid],
                      ["container", "delete", cid]):
                try:
                    subprocess.run(base + a, capture_output=True, timeout=20)
                except subprocess.TimeoutExpired:
                    pass
        if ids:
            log(f"cleanup: removing {len(ids)} container(s)")
            parallel([lambda c=c: rm(c) for c in ids], 10)
    if alive:
        try:
            os.kill(containerd_pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + 10
        while time.time() < deadline and cpu_ticks(containerd_pid) is not None:
            time.sleep(0.1)
        try:
            os.kill(containerd_pid, signal.SIGKILL)
        except OSError:
            pass
        if containerd is not None:
            try:
                containerd.wait(5)
            except subprocess.TimeoutExpired:
                pass
    # Shims that outlived containerd, anything else naming our dir.
    left = []
    for pid in all_pids():
        argv = proc_argv(pid)
        if argv and pid != os.getpid() and (arg_after(argv, "-address") == sock or
                                             any(d in a for a in argv)):
            left.append(pid)
    if left:
        kill_pids(left)
    # runc containers of the floor measurements, and of the namespace.
    if real_runc:
        for root in (os.path.join(d, "runc-root"),
                     os.path.join(RUNC_STATE_BASE, ns) if ns else None):
            if root and os.path.isdir(root):
                for cid in os.listdir(root):
                    subprocess.run([real_runc, "--root", root, "delete", "--force", cid],
                                   capture_output=True, timeout=30)
                if root.startswith(RUNC_STATE_BASE):
                    shutil.rmtree(root, ignore_errors=True)
    # Container processes left in our cgroups, then the cgroups.
    if ns:
        cg_dirs = []
        for h in os.listdir("/sys/fs/cgroup"):
            for name in (ns, ns + "-runc"):
                p = os.path.join("/sys/fs/cgroup", h, name)
                if os.path.isdir(p) and not os.path.islink(os.path.join("/sys/fs/cgroup", h)):
                    cg_dirs.append(p)
        pids = set()
        for c in cg_dirs:
            for root, _dirs, files in os.walk(c):
                if "cgroup.procs" in files:
                    try:
                        with open(os.path.join(root, "cgroup.procs")) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
        if pids:
            kill_pids(sorted(pids), grace=1)
        for c in cg_dirs:
            for _ in range(50):
                subs = [r for r, _ds, _fs in os.walk(c)]
                for s in sorted(subs, key=lambda p: -p.count("/")):
                    try:
                        os.rmdir(s)
                    except OSError:
                        pass
                if not os.path.exists(c):
                    break
                time.sleep(0.1)
    # Mounts under the dir (none expected), deepest first.
    try:
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f]
        for m in sorted((m for m in mounts if m.startswith(d + "/")), key=lambda p: -len(p)):
            subprocess.run(["umount", "-l", m], capture_output=True)
    except OSError:
        pass
    for s in shim_sockets:
        try:
            os.unlink(s)
        except OSError:
            pass
    shutil.rmtree(d, ignore_errors=True)


# ---- the measurements ------------------------------------------------------------------------

def order(rnd, names):
    """Rotate the order every round so no runtime always goes first (A B C, B C A, C A B, ...)."""
    k = rnd % len(names)
    return names[k:] + names[:k]


EVENT_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.(\d+))? ([+-]\d{4}) \S+ (\S+) (\S+) (.*)$")


def parse_events(lines):
    """(topic, container id) -> event timestamp in seconds, from `ctr events` lines."""
    out = {}
    for line in lines:
        m = EVENT_RE.match(line)
        if not m:
            continue
        base, frac, tz, _ns, topic, payload = m.groups()
        t = datetime.datetime.strptime(base + " " + tz, "%Y-%m-%d %H:%M:%S %z").timestamp()
        t += int(frac) / 10 ** len(frac) if frac else 0.0
        try:
            ev = json.loads(payload)
        except ValueError:
            continue
        cid = ev.get("container_id") or ev.get("id")
        if cid and (topic, cid) not in out:
            out[(topic, cid)] = t
    return out


TL_RE = re.compile(r"^\s*(\d+)/(\d+)\s+(\d+\.\d+):\s+sched:(\w+):\s+(.*)$")
TL_PHASES = [
    ("ctr+containerd until shim start", "t0", "start_exec"),
    ("shim start (exec to exit)", "start_exec", "start_exit"),
    ("start exit -> runc create", "start_exit", "create_exec"),
    ("runc create", "create_exec", "create_exit"),
    ("create -> runc start", "create_exit", "start2_exec"),
    ("runc start", "start2_exec", "start2_exit"),
    ("container exit -> runc delete", "ctr_exit_proc", "delete_exec"),
    ("runc delete", "delete_exec", "delete_exit"),
    ("runc delete -> shim server exit", "delete_exit", "server_exit"),
    ("server exit -> shim delete exec", "server_exit", "sdel_exec"),
    ("`shim delete` (incl. runc delete --force)", "sdel_exec", "sdel_exit"),
    ("  of which its runc delete --force", "force_exec", "force_exit"),
    ("shim delete exit -> ctr exit", "sdel_exit", "t1"),
    ("total (ctr exec -> ctr exit)", "t0", "t1"),
]


def analyse_exec_timeline(text, containerd_pid, runs, wrap_dir):
    """`ctr task exec`: before runc exec, runc exec itself, after it; median ms per runtime."""
    ours, execs, exits, order_ = parse_sched(text, containerd_pid, runs)
    runc_path = os.path.join(wrap_dir, "runc")
    per_rt = {}
    for ctr_pid, rt in runs.items():
        if ctr_pid not in execs or ctr_pid not in exits:
            continue
        t0, t1 = execs[ctr_pid][0][0], exits[ctr_pid]
        rc = [(t, tgid) for t, kind, tgid, f in order_
              if kind == "exec" and t0 <= t <= t1 and f == runc_path]   # the path is ours alone
        if len(rc) != 1 or rc[0][1] not in exits:
            continue
        a, b = rc[0][0], exits[rc[0][1]]
        per_rt.setdefault(rt, []).append({
            "ctr exec -> runc exec (ctr, containerd, Exec+Start RPCs)": (a - t0) * 1e3,
            "runc exec": (b - a) * 1e3,
            "runc exit -> ctr exit (exit event, delete)": (t1 - b) * 1e3,
            "total": (t1 - t0) * 1e3})
    return {rt: dict({k: median([r[k] for r in rows]) for k in rows[0]}, runs=len(rows))
            for rt, rows in per_rt.items()}


def parse_sched(text, containerd_pid, runs):
    ours = {containerd_pid}
    execs = {}    # tgid -> [(t, filename)]
    exits = {}    # tgid -> t
    order_ = []   # (t, kind, tgid)
    for line in text.splitlines():
        m = TL_RE.match(line)
        if not m:
            continue
        tgid, _tid, t, ev, rest = int(m[1]), int(m[2]), float(m[3]), m[4], m[5]
        if ev == "sched_process_fork":
            c = re.search(r"child_pid=(\d+)", rest)
            if c and (tgid in ours or tgid in runs):
                ours.add(int(c[1]))
        elif ev == "sched_process_exec":
            f = re.search(r"filename=(\S+)", rest)
            if f:
                execs.setdefault(tgid, []).append((t, f[1]))
                order_.append((t, "exec", tgid, f[1]))
        elif ev == "sched_process_exit" and "group_dead=true" in rest:
            exits[tgid] = t
            order_.append((t, "exit", tgid, None))
    return ours, execs, exits, order_


def analyse_timeline(text, containerd_pid, runs, wrap_dir):
    """Per runtime, per phase: the median milliseconds (see TL_PHASES)."""
    ours, execs, exits, order_ = parse_sched(text, containerd_pid, runs)
    per_rt = {}
    runc_path = os.path.join(wrap_dir, "runc")
    for ctr_pid, rt in runs.items():
        if ctr_pid not in execs or ctr_pid not in exits:
            continue
        t0, t1 = execs[ctr_pid][0][0], exits[ctr_pid]
        shims, runcs, cont = [], [], None
        for t, kind, tgid, fname in order_:
            if kind != "exec" or not (t0 <= t <= t1) or tgid not in ours:
                continue
            if os.path.basename(fname).startswith("containerd-shim"):
                shims.append((t, tgid))
            elif fname == runc_path:
                runcs.append((t, tgid))
            elif fname == "/bin/true":
                cont = tgid
        if len(shims) < 3 or len(runcs) < 4 or cont is None:
            continue
        pt = dict(t0=t0, t1=t1,
                  start_exec=shims[0][0], start_exit=exits.get(shims[0][1]),
                  server_exit=exits.get(shims[1][1]),
                  sdel_exec=shims[2][0], sdel_exit=exits.get(shims[2][1]),
                  ctr_exit_proc=exits.get(cont))
        for name, (t, tgid) in zip(("create", "start2", "delete", "force"), runcs[:4]):
            pt[name + "_exec"], pt[name + "_exit"] = t, exits.get(tgid)
        row = {}
        for label, a, b in TL_PHASES:
            if pt.get(a) is not None and pt.get(b) is not None:
                row[label] = (pt[b] - pt[a]) * 1e3
        row["sum of the 4 runc calls"] = sum(
            (pt[k + "_exit"] - pt[k + "_exec"]) * 1e3 for k in ("create", "start2", "delete", "force")
            if pt.get(k + "_exit") is not None)
        row["total minus runc"] = row.get("total (ctr exec -> ctr exit)", 0) - \
            row["sum of the 4 runc calls"]
        per_rt.setdefault(rt, []).append(row)
    result = {}
    for rt, rows in per_rt.items():
        keys = [p[0] for p in TL_PHASES] + ["sum of the 4 runc calls", "total minus runc"]
        result[rt] = {k: median([r[k] for r in rows if k in r]) for k in keys}
        result[rt]["runs"] = len(rows)
    return result


class Bench:
    def __init__(self, env, size):
        self.env = env
        self.size = size
        self.r = {}   # metric -> {runtime: value}
        self.details = []
        self.load = []

    def note_load(self, phase):
        la = loadavg()
        self.load.append((phase, la))
        log(f"{phase}: load average {la}")

    def put(self, metric, rt, value):
        self.r.setdefault(metric, {})[rt] = value

    # 1, 2: lifecycle and its create phase --------------------------------------------------

    def lifecycle(self):
        e, n, w = self.env, self.size["lifecycle"], self.size["warmup"]
        self.note_load("lifecycle")
        walls = {STOCK: [], SLUICE: [], RUNC: []}
        runc_create = []
        ids = {STOCK: [], SLUICE: []}
        for i in range(-w, n):
            for rt in order(i, [STOCK, SLUICE, RUNC]):
                cid = f"lc-{rt}-{i + w}"
                if rt == RUNC:
                    p = run(e.runc(["run", "--bundle", e.bundle("true", cid), cid]))
                    # The floor of the create phase: `runc create` alone.
                    c = run(e.runc(["create", "--bundle", e.bundle("true", cid + "c"), cid + "c"]))
                    run(e.runc(["delete", "--force", cid + "c"]))
                    if i >= 0:
                        runc_create.append(c.wall)
                else:
                    p = run(e.run_argv(rt, cid, ["/bin/true"]))
                    if i >= 0:
                        ids[rt].append(cid)
                if i >= 0:
                    walls[rt].append(p.wall)
        time.sleep(1.0)   # the last events
        ev = parse_events(e.events)
        create = {}
        for rt in (STOCK, SLUICE):
            create[rt] = [ev[("/tasks/create", c)] - ev[("/containers/create", c)]
                          for c in ids[rt]
                          if ("/tasks/create", c) in ev and ("/containers/create", c) in ev]
            if len(create[rt]) < len(ids[rt]):
                log(f"warning: create phase of {len(ids[rt]) - len(create[rt])} {rt} runs "
                    "missing from ctr events")
        for rt in (STOCK, SLUICE, RUNC):
            self.put("lifecycle_med", rt, median(walls[rt]) * 1e3)
            self.put("lifecycle_p90", rt, p90(walls[rt]) * 1e3)
        for rt in (STOCK, SLUICE):
            self.put("create_med", rt, median(create[rt]) * 1e3)
            self.put("create_p90", rt, p90(create[rt]) * 1e3)
        self.put("create_med", RUNC, median(runc_create) * 1e3)
        self.put("create_p90", RUNC, p90(runc_create) * 1e3)
        self.details.append(("lifecycle wall ms (all samples)",
                             {rt: [round(x * 1e3) for x in walls[rt]] for rt in walls}))

    # 3: exec latency ----------------------------------------------------------------------

    def exec_latency(self):
        e, n, w = self.env, self.size["exec"], self.size["warmup"]
        self.note_load("exec")
        ids = {STOCK: "ex-stock", SLUICE: "ex-sluice", RUNC: "ex-runc"}
        for rt in (STOCK, SLUICE):
            run(e.run_argv(rt, ids[rt], ["/bin/sleep", "1000000"], detach=True))
        run(e.runc(["run", "--detach", "--bundle", e.bundle("sleep", ids[RUNC]), ids[RUNC]]))
        walls = {STOCK: [], SLUICE: [], RUNC: []}
        # The shim's own CPU per exec: its utime+stime across the measured execs (one shim per
        # container; the exec's runc is a child that is reaped, so not counted in it).
        shims = {rt: e.find_shim(ids[rt]) for rt in (STOCK, SLUICE)}
        ticks0 = {}
        try:
            for i in range(-w, n):
                if i == 0:
                    ticks0 = {rt: cpu_ticks(pid) for rt, pid in shims.items() if pid}
                for rt in order(i, [STOCK, SLUICE, RUNC]):
                    if rt == RUNC:
                        p = run(e.runc(["exec", ids[RUNC], "/bin/true"]))
                    else:
                        p = e.ctr(["task", "exec", "--exec-id", f"e{i + w}", ids[rt],
                                   "/bin/true"])
                    if i >= 0:
                        walls[rt].append(p.wall)
            for rt, t0 in ticks0.items():
                t1 = cpu_ticks(shims[rt])
                if t0 is not None and t1 is not None and n > 0:
                    self.put("exec_shim_cpu_ms", rt, (t1 - t0) / CLK_TCK / n * 1e3)
        finally:
            e.remove([ids[STOCK], ids[SLUICE]])
            e.runc_remove([ids[RUNC]])
        for rt in walls:
            self.put("exec_med", rt, median(walls[rt]) * 1e3)
            self.put("exec_p90", rt, p90(walls[rt]) * 1e3)

    # 4: 1 GiB of stdout -------------------------------------------------------------------

    def gib(self):
        self._gib("gib", "head", HEAD_CMD)
        self._gib("dd", "dd", DD_CMD)

    def _gib(self, key, kind, cmd):
        e, n = self.env, self.size["gib"]
        self.note_load(f"1 GiB stdout ({cmd})")
        res = {STOCK: [], SLUICE: [], RUNC: []}
        for i in range(n):
            for rt in order(i, [STOCK, SLUICE, RUNC]):
                cid = f"{key}-{rt}-{i}"
                if rt == RUNC:
                    p = run(e.runc(["run", "--bundle", e.bundle(kind, cid), cid]), timeout=600)
                    res[rt].append(dict(wall=p.wall, shim_cpu=None, ctr_cpu=None))
                    log(f"  {rt:6s} 1 GiB in {p.wall:.2f} s")
                    continue
                stop = threading.Event()
                box = {}
                t = threading.Thread(target=self._sample_cpu, args=(cid, stop, box))
                t.start()
                try:
                    p = run(e.run_argv(rt, cid, ["/bin/sh", "-c", cmd]), timeout=600)
                finally:
                    stop.set()
                    t.join()
                if box.get("ticks") is None:
                    raise RuntimeError(f"never saw the shim of {cid}")
                res[rt].append(dict(wall=p.wall, shim_cpu=box["ticks"] / CLK_TCK,
                                    ctr_cpu=p.cpu))
                log(f"  {rt:6s} 1 GiB in {p.wall:.2f} s, shim {box['ticks'] / CLK_TCK:.2f} CPU-s"
                    f", ctr {p.cpu:.2f} CPU-s")
        for rt in res:
            walls = [x["wall"] for x in res[rt]]
            self.put(f"{key}_mbs", rt, GIB / 1e6 / median(walls))
            self.put(f"{key}_wall", rt, median(walls))
            if rt != RUNC:
                self.put(f"{key}_shim_cpu", rt, median([x["shim_cpu"] for x in res[rt]]))
                self.put(f"{key}_ctr_cpu", rt, median([x["ctr_cpu"] for x in res[rt]]))
        self.details.append((f"1 GiB `{cmd}` runs (wall s / shim CPU-s / ctr CPU-s)",
                             {rt: [(round(x["wall"], 2), x["shim_cpu"] and round(x["shim_cpu"], 2),
                                    x["ctr_cpu"] and round(x["ctr_cpu"], 2)) for x in res[rt]]
                              for rt in res}))

    def _sample_cpu(self, cid, stop, box):
        """Last utime+stime of the shim serving `cid`, sampled every 20 ms until it exits."""
        pid = None
        while True:
            if pid is None:
                pid = self.env.find_shim(cid)
            if pid is not None:
                t = cpu_ticks(pid)
                if t is None:
                    break
                if not is_shim(pid, cid, self.env.sock):
                    pid = None      # not (or no longer) the server: look again
                    continue
                box["ticks"] = t
            if stop.is_set():
                if pid is not None or box.get("tries", 0) > 0:
                    break
                box["tries"] = 1
            time.sleep(0.02)

    # 5: idle memory and threads ----------------------------------------------------------

    def idle(self):
        e, n = self.env, self.size["idle"]
        self.note_load("idle memory")
        ids = {STOCK: [], SLUICE: []}
        try:
            for i in range(n):
                for rt in order(i, [STOCK, SLUICE]):
                    cid = f"idle-{rt}-{i}"
                    run(e.run_argv(rt, cid, ["/bin/sleep", "1000000"], detach=True))
                    ids[rt].append(cid)
            time.sleep(2)
            early = self._mem(ids)
            # tokio's and Go's idle worker threads retire after ~10 s: wait past that.
            time.sleep(11)
            late = self._mem(ids)
            # PSS splits a binary's shared pages among every process running it, here or not.
            mappers = {STOCK: 0, SLUICE: 0}
            targets = {os.path.realpath(shutil.which("containerd-shim-runc-v2",
                                                     path=SYSTEM_PATH)): STOCK,
                       os.path.join(e.dir, "bin", SHIM_NAME): SLUICE}
            for pid in all_pids():
                try:
                    exe = os.readlink(f"/proc/{pid}/exe")
                except OSError:
                    continue
                if exe in targets:
                    mappers[targets[exe]] += 1
        finally:
            e.remove(ids[STOCK] + ids[SLUICE])
        for rt in (STOCK, SLUICE):
            for k in ("rss", "pss", "uss", "threads"):
                self.put(f"idle_{k}", rt, median([m[k] for m in late[rt]]))
            self.put("idle_threads_2s", rt, median([m["threads"] for m in early[rt]]))
            self.put("idle_threads_max", rt, max(m["threads"] for m in late[rt]))
        self.details.append(("processes running each shim binary when idle memory was read "
                             "(PSS shares their common pages)", mappers))
        self.details.append(("idle shims after 13 s (rss/pss/uss KiB, threads)",
                             {rt: [(m["rss"], m["pss"], m["uss"], m["threads"]) for m in late[rt]]
                              for rt in late}))

    def _mem(self, ids):
        shims = self.env.shims()
        out = {}
        for rt, cids in ids.items():
            out[rt] = []
            for c in cids:
                m = mem_of(shims[c]) if c in shims else None
                if m is None:
                    raise RuntimeError(f"no shim for {c}")
                out[rt].append(m)
        return out

    # 6: 50 containers started at once ----------------------------------------------------

    def concurrent(self):
        e, n, reps = self.env, self.size["conc"], self.size["conc_reps"]
        self.note_load(f"{n} concurrent starts")
        walls = {STOCK: [], SLUICE: [], RUNC: []}
        pss = {STOCK: [], SLUICE: []}
        for r in range(reps):
            for rt in order(r, [STOCK, SLUICE, RUNC]):
                cids = [f"cc{r}-{rt}-{i}" for i in range(n)]
                if rt == RUNC:
                    argvs = [e.runc(["run", "--detach", "--bundle", e.bundle("sleep", c), c])
                             for c in cids]
                else:
                    argvs = [e.run_argv(rt, c, ["/bin/sleep", "1000000"], detach=True)
                             for c in cids]
                t0 = time.perf_counter()
                procs = [Proc(a) for a in argvs]
                for p in procs:
                    p.wait()
                failed = [p.stderr() for p in procs if p.rc != 0]
                if rt != RUNC:
                    while True:
                        rows = e.task_ls()
                        if all(rows.get(c) == "RUNNING" for c in cids) or \
                                time.perf_counter() - t0 > 300:
                            break
                        time.sleep(0.05)
                wall = time.perf_counter() - t0
                if failed:
                    log(f"warning: {len(failed)} {rt} starts failed: {failed[0][-300:]}")
                walls[rt].append(wall)
                msg = f"  {rt:6s} {n} started in {wall:.2f} s"
                if rt != RUNC:
                    time.sleep(1)
                    shims = e.shims()
                    mems = [mem_of(shims[c]) for c in cids if c in shims]
                    total = sum(m["pss"] for m in mems if m) / 1024
                    pss[rt].append(total)
                    msg += f", {len(mems)} shims, sum PSS {total:.1f} MiB"
                    e.remove(cids)
                else:
                    e.runc_remove(cids)
                log(msg)
        for rt in walls:
            self.put("conc_wall", rt, median(walls[rt]))
        for rt in pss:
            self.put("conc_pss", rt, median(pss[rt]))

    # 8: the drain invariant under load ---------------------------------------------------

    def drain(self):
        e, n = self.env, self.size["streams"]
        self.note_load(f"drain invariant with {n} streams")
        if not e.fault_runc:
            log("no fault-runc binary: skipping the drain test")
            return
        cids = [f"st-{i:02d}" for i in range(n)]
        outs = [os.path.join(e.dir, "streams", c + ".out") for c in cids]
        loop = "while :; do head -c 16384 /dev/zero; sleep 0.1; done"
        procs = []
        result = {}
        try:
            for c, o in zip(cids, outs):
                with open(o, "wb") as f:
                    procs.append(Proc(e.run_argv(SLUICE, c, ["/bin/sh", "-c", loop]), stdout=f))
            deadline = time.time() + 180
            while time.time() < deadline:
                rows = e.task_ls()
                if all(rows.get(c) == "RUNNING" for c in cids) and \
                        all(os.path.getsize(o) > 0 for o in outs):
                    break
                time.sleep(0.5)
            else:
                raise RuntimeError("the streaming containers did not all start")
            time.sleep(1)
            s0 = [os.path.getsize(o) for o in outs]
            # The seed case: the next `runc exec` shrinks its pipes to one page, writes a 7 KiB
            # Go crash dump to stderr and exits 2.
            with open(os.path.join(e.fault_dir, "fault.conf"), "w") as f:
                f.write(f"real_runc={e.real_runc}\nverb=exec\naction=crash-dump\nonce=true\n")
            open(os.path.join(e.fault_dir, "fault.token"), "w").close()
            swap_runc(e.wrap, os.path.join(e.fault_dir, "runc"))
            try:
                t0 = time.perf_counter()
                p = e.ctr(["task", "exec", "--exec-id", "fault1", cids[0], "/bin/true"],
                          check=False, timeout=60)
                fault_wall = time.perf_counter() - t0
            finally:
                swap_runc(e.wrap, e.real_runc)
            # Streams write every 0.1 s: a window of at least a second tells "still flowing".
            time.sleep(max(0.0, 1.0 - fault_wall))
            s1 = [os.path.getsize(o) for o in outs]
            err = p.stderr()
            fired = "fired" in open(os.path.join(e.fault_dir, "fault.log")).read() \
                if os.path.exists(os.path.join(e.fault_dir, "fault.log")) else False
            after = e.ctr(["task", "exec", "--exec-id", "after1", cids[0], "/bin/true"],
                          check=False, timeout=60)
            time.sleep(2)
            s2 = [os.path.getsize(o) for o in outs]
            grew1 = sum(1 for a, b in zip(s0, s1) if b > a)
            grew2 = sum(1 for a, b in zip(s1, s2) if b > a)
            alive = sum(1 for pr in procs if pr.p.poll() is None)
            line = next((ln for ln in err.splitlines() if CGO_LINE in ln), "")
            result = dict(fired=fired, rc=p.rc, wall=fault_wall, has_line=bool(line),
                          err=err, grew_during=grew1, grew_after=grew2, n=n, alive=alive,
                          after_rc=after.rc, bytes=sum(s2) - sum(s0),
                          window=max(1.0, fault_wall) + 2 + after.wall)
        finally:
            e.remove(cids, width=10)
            for pr in procs:
                try:
                    pr.wait(30)
                except Exception:  # noqa: BLE001
                    pass
        ok = (result.get("fired") and result["rc"] != 0 and result["has_line"]
              and result["wall"] < 20 and result["grew_during"] == n and result["grew_after"] == n
              and result["after_rc"] == 0)
        result["ok"] = bool(ok)
        self.drain_result = result
        log(f"  fault exec: rc={result.get('rc')} in {result.get('wall', 0):.2f} s, "
            f"cgo line in error: {result.get('has_line')}, streams growing during/after: "
            f"{result.get('grew_during')}/{result.get('grew_after')} of {n}")

    # timeline: where the lifecycle's time goes (perf sched tracepoints) ---------------------

    def timeline(self):
        """Runs lifecycles under `perf record` of the exec/exit/fork tracepoints (no PMU needed,
        little overhead) and splits each one's wall time into runc calls, shim invocations and
        the gaps between them (ctr, containerd and the shim working)."""
        e, n = self.env, self.size["timeline"]
        perf = shutil.which("perf")
        if not perf or subprocess.run([perf, "list", "sched:sched_process_exec"],
                                      capture_output=True, text=True).stdout.find(
                                          "sched_process_exec") < 0:
            log("perf with sched tracepoints not available: skipping the timeline")
            return
        self.note_load("timeline")
        data = os.path.join(e.dir, "perf.data")
        rec = subprocess.Popen([perf, "record", "-q", "-a", "-o", data, "-e",
                                "sched:sched_process_exec,sched:sched_process_exit,"
                                "sched:sched_process_fork"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        runs, execs = {}, {}
        targets = {rt: f"tlx-{rt}" for rt in (STOCK, SLUICE)}
        try:
            for rt in (STOCK, SLUICE):
                run(e.run_argv(rt, targets[rt], ["/bin/sleep", "1000000"], detach=True))
            time.sleep(1.5)
            for i in range(n):
                for rt in order(i, [STOCK, SLUICE]):
                    p = run(e.run_argv(rt, f"tl-{rt}-{i}", ["/bin/true"]))
                    runs[p.p.pid] = rt
                    time.sleep(0.05)
                    p = e.ctr(["task", "exec", "--exec-id", f"t{i}", targets[rt], "/bin/true"])
                    execs[p.p.pid] = rt
                    time.sleep(0.05)
            time.sleep(0.3)
        finally:
            os.killpg(rec.pid, signal.SIGINT)
            rec.wait(60)
            e.remove(list(targets.values()))
        out = subprocess.run([perf, "script", "-i", data, "-F", "pid,tid,time,event,trace"],
                             capture_output=True, text=True).stdout
        self.timeline_result = analyse_timeline(out, e.containerd.pid, runs, e.wrap)
        self.exec_timeline = analyse_exec_timeline(out, e.containerd.pid, execs, e.wrap)

    # ---- report --------------------------------------------------------------------------

    def report(self, size_name, total_s):
        rows = []

        def g(metric, rt):
            return self.r.get(metric, {}).get(rt)

        def ratio(metric):
            a, b = g(metric, STOCK), g(metric, SLUICE)
            return b / a if a and b is not None else None

        def row(label, metric, fmt, target=None, check=None, use_ratio=True, inverse=False):
            r = ratio(metric)
            if inverse and r:
                r = 1 / r
            met = "-"
            if check is not None:
                try:
                    met = "yes" if check(r, g(metric, SLUICE)) else "NO"
                except TypeError:
                    met = "?"
            rows.append([label,
                         fmt(g(metric, STOCK)), fmt(g(metric, SLUICE)), fmt(g(metric, RUNC)),
                         (f"{r:.2f}" + ("x" if inverse else "")) if (r and use_ratio) else "-",
                         target or "-", met])

        def f0(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.0f}"

        def f1(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"

        def f2(v):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"

        if "lifecycle_med" in self.r:
            row("lifecycle ms, median", "lifecycle_med", f0, "<= 0.75", lambda r, s: r <= 0.75)
            row("lifecycle ms, p90", "lifecycle_p90", f0)
            row("create phase ms, median", "create_med", f1)
            row("create phase ms, p90", "create_p90", f1)
        if "exec_med" in self.r:
            row("exec ms, median", "exec_med", f1, "<= 0.8", lambda r, s: r <= 0.8)
            row("exec ms, p90", "exec_p90", f1)
            if "exec_shim_cpu_ms" in self.r:
                row("exec: shim CPU ms per exec", "exec_shim_cpu_ms", f2, "<= 0.5",
                    lambda r, s: r <= 0.5)
        if "gib_mbs" in self.r:
            row("1 GiB head -c: MB/s (wall)", "gib_mbs", f0, ">= 3.5x", lambda r, s: r >= 3.5)
            row("1 GiB head -c: shim CPU-s", "gib_shim_cpu", f2, "<= 0.2 s",
                lambda r, s: s <= 0.2)
            row("1 GiB head -c: ctr CPU-s", "gib_ctr_cpu", f2)
        if "dd_mbs" in self.r:
            row("1 GiB dd bs=64k: MB/s (wall)", "dd_mbs", f0, ">= 3.5x", lambda r, s: r >= 3.5)
            row("1 GiB dd bs=64k: shim CPU-s", "dd_shim_cpu", f2, "<= 0.2 s",
                lambda r, s: s <= 0.2)
            row("1 GiB dd bs=64k: ctr CPU-s", "dd_ctr_cpu", f2)
        if "idle_pss" in self.r:
            row("idle shim PSS KiB, median", "idle_pss", f0, "<= 0.35", lambda r, s: r <= 0.35)
            row("idle shim RSS KiB, median", "idle_rss", f0)
            row("idle shim USS KiB, median", "idle_uss", f0)
            row("idle shim threads, median", "idle_threads", f0, "<= 2", lambda r, s: s <= 2)
            row("idle shim threads, max of 10", "idle_threads_max", f0)
            row("shim threads 2 s after start", "idle_threads_2s", f0)
        if "conc_wall" in self.r:
            n = self.size["conc"]
            row(f"{n} concurrent starts s", "conc_wall", f2, "<= 0.7", lambda r, s: r <= 0.7)
            row(f"{n} shims, sum PSS MiB", "conc_pss", f1)
        d = getattr(self, "drain_result", None)
        if d is not None:
            rows.append([f"drain: fault exec under {d.get('n')} streams", "(hangs)",
                         f"{d.get('wall', float('nan')):.2f} s" if "wall" in d else "-",
                         "-", "-", "fails < 20 s, streams go on",
                         "yes" if d.get("ok") else "NO"])
        hdr = ["metric", "stock", "sluice", "runc floor", "sluice/stock", "target", "met?"]
        widths = [max(len(str(x[i])) for x in rows + [hdr]) for i in range(len(hdr))]
        lines = []
        lines.append("  ".join(h.ljust(w) for h, w in zip(hdr, widths)))
        lines.append("  ".join("-" * w for w in widths))
        for r in rows:
            lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                                   for i, (c, w) in enumerate(zip(r, widths))))
        print()
        print(f"sluice benchmark ({size_name}), {os.cpu_count()} CPUs, "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}, took {total_s / 60:.1f} min")
        print("load average (1/5/15 min) at each phase: " +
              "; ".join(f"{p}: {la}" for p, la in self.load))
        print()
        print("\n".join(lines))
        print()
        if d is not None and d:
            first = next((ln for ln in d["err"].splitlines() if CGO_LINE in ln), "")
            print(f"drain: wrapper fired={d['fired']}, ctr exit {d['rc']} after {d['wall']:.2f} s; "
                  f"error line: {first.strip()[:160]!r}")
            print(f"drain: {d['grew_during']}/{d['n']} streams grew during the failing exec, "
                  f"{d['grew_after']}/{d['n']} in the 2 s after; {d['alive']} attached ctr alive; "
                  f"{d['bytes'] / 1e6:.1f} MB streamed meanwhile; next exec exit {d['after_rc']}")
        tl = getattr(self, "timeline_result", None)
        if tl:
            print("lifecycle timeline (perf sched tracepoints), median ms over "
                  f"{tl.get(STOCK, {}).get('runs', 0)}/{tl.get(SLUICE, {}).get('runs', 0)} runs:")
            keys = [p[0] for p in TL_PHASES] + ["sum of the 4 runc calls", "total minus runc"]
            w = max(len(k) for k in keys)
            print(f"  {'phase'.ljust(w)}  {'stock':>7}  {'sluice':>7}  {'diff':>7}")
            for k in keys:
                a, b = tl.get(STOCK, {}).get(k), tl.get(SLUICE, {}).get(k)
                if a is None or b is None:
                    continue
                print(f"  {k.ljust(w)}  {a:7.1f}  {b:7.1f}  {b - a:+7.1f}")
            print()
        xt = getattr(self, "exec_timeline", None)
        if xt and STOCK in xt and SLUICE in xt:
            print(f"exec timeline, median ms over {xt[STOCK]['runs']}/{xt[SLUICE]['runs']} runs:")
            w = max(len(k) for k in xt[STOCK])
            for k in xt[STOCK]:
                if k == "runs":
                    continue
                a, b = xt[STOCK][k], xt[SLUICE][k]
                print(f"  {k.ljust(w)}  {a:7.1f}  {b:7.1f}  {b - a:+7.1f}")
            print()
        for title, data in self.details:
            print(f"{title}:")
            for k, v in data.items():
                print(f"  {k}: {v}")
        return rows


def swap_runc(wrap_dir, target):
    """Points <wrap>/runc at `target` atomically (a rename over the old symlink)."""
    tmp = os.path.join(wrap_dir, ".runc.new")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, os.path.join(wrap_dir, "runc"))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--dir", required=True, help="an empty work dir (run.sh makes one)")
    ap.add_argument("--sluice-bin")
    ap.add_argument("--fault-runc")
    ap.add_argument("--only", help="comma-separated: lifecycle,exec,gib,idle,conc,drain")
    ap.add_argument("--cleanup-only", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--hold", type=float, metavar="SECONDS",
                    help="set up, print how to reach the private containerd, then wait this long "
                         "(or until interrupted) before cleaning up: for profiling by hand")
    a = ap.parse_args()
    if a.cleanup_only:
        cleanup_dir(os.path.abspath(a.dir))
        return 0
    if os.geteuid() != 0:
        sys.exit("run as root (sudo bench/run.sh)")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    size_name = "quick" if a.quick else "full"
    size = SIZES[size_name]
    env = Env(os.path.abspath(a.dir), a.sluice_bin, a.fault_runc)
    steps = ["lifecycle", "exec", "gib", "idle", "conc", "drain", "timeline"]
    if a.only:
        steps = [s for s in steps if s in a.only.split(",")]
    t0 = time.time()
    b = Bench(env, size)
    try:
        log(f"work dir {env.dir}, namespace {env.ns}, load average {loadavg()}")
        env.setup()
        log(f"containerd up; sluice {a.sluice_bin} "
            f"(sha256 {hashlib.sha256(open(a.sluice_bin, 'rb').read()).hexdigest()[:12]})")
        if a.hold:
            log(f"holding for {a.hold:.0f} s: ctr -a {env.sock} -n {env.ns} ...; "
                f"rootfs {env.rootfs}, fifo dir {env.fifo}, runc --root {env.runc_root}")
            with open(os.path.join(env.dir, "env.sh"), "w") as f:
                f.write(f"SOCK={env.sock}\nNS={env.ns}\nROOTFS={env.rootfs}\n"
                        f"FIFO={env.fifo}\nRUNC_ROOT={env.runc_root}\n")
            time.sleep(a.hold)
            steps = []
        for s in steps:
            {"lifecycle": b.lifecycle, "exec": b.exec_latency, "gib": b.gib, "idle": b.idle,
             "conc": b.concurrent, "drain": b.drain, "timeline": b.timeline}[s]()
        b.note_load("end")
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); cleaning up")
        env.teardown()
        return 130
    except Exception:
        import traceback
        traceback.print_exc()
        log("failed; cleaning up")
        try:
            with open(os.path.join(env.dir, "containerd.log"), "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            print("--- containerd.log (tail) ---\n" + tail)
        except OSError:
            pass
        env.teardown()
        return 1
    log("cleaning up")
    env.teardown()
    b.report(size_name, time.time() - t0)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(results=b.r, load=b.load,
                           drain={k: v for k, v in getattr(b, "drain_result", {}).items()}),
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
