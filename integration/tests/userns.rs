//! A user-namespaced container on a read-only rootfs (issue 24, regression 2), through the Go
//! client (`integration/go/userns-client`, built by this suite with `go build`): the client's
//! `WithRemappedSnapshotView` (a read-only snapshot view of the image, chowned to the
//! namespace's root), a spec with `WithUserNamespace`, and runc options with `IoUid`/`IoGid`.
//! Each case runs under the stock shim and under sluice installed as `containerd-shim-runc-v2`,
//! each in its own private containerd with the overlayfs snapshotter, and asserts what the stock
//! shim does and that sluice does the same.
//!
//! What the report said: "the stock shim creates and runs the container; sluice fails at create
//! with `mkdir <bundle>/rootfs/run: read-only file system`". What the runs show, on 1.6, 1.7 and
//! 2.x alike:
//! - A first `WithRemappedSnapshotView` of an image is a `View` snapshot whose parent is the
//!   remapped layer over the image's: the overlayfs snapshotter returns an overlay with two
//!   `lowerdir`s and no `upperdir`, a read-only superblock (a view with one parent comes as
//!   `bind` with `ro,rbind`, read-only per mount). Both shims mount it as given, so runc cannot
//!   make the mount point of the spec's `/run` tmpfs in an image without `/run`, and both fail
//!   at create with runc's same words ([`view_without_mount_points_fails_alike`]).
//! - The client's cache path: when the remapped parent (`<chain id>-<uid>-<gid>`) already
//!   exists, `WithRemappedSnapshotView` *prepares* a writable (`Active`) snapshot on it instead
//!   of a view, and the container runs under both shims
//!   ([`cached_remapped_view_is_writable_and_runs`]). The parent stays while another container
//!   uses it, and after that until containerd's garbage collector removes it (when a second
//!   client run followed a first one at once, it was still there on 1.6 and 1.7 and gone on
//!   2.x): a run that follows an earlier one gets the writable rootfs, which is how "the stock
//!   shim runs it" after a failed sluice run. The holder container makes the case
//!   deterministic.
//! - A read-only root done the way runc expects (a writable snapshot and the spec's
//!   `root.readonly`, `oci.WithRootFSReadonly`: runc makes the root read-only after its mounts)
//!   runs under both shims, with a read-only root inside ([`readonly_spec_runs`]); so does the
//!   read-only view of an image that has the `/run` mount point
//!   ([`view_with_mount_points_runs`]), whose rootfs both shims mount read-only; so does the
//!   `bind,ro` view of a single layer, which both shims bind and then remount read-only
//!   ([`view_bind_is_made_read_only_by_the_shim`]).
//!
//! So sluice mounts the rootfs as the stock shim does (containerd-shim's `mount_rootfs`: the
//! mount, then the read-only remount of a bind, as containerd's `mount.Mount`), and the test
//! pins it; nothing in sluice changed for it.
//!
//! Run: `SLUICE_CONTAINERD=1.6 cargo test -p sluice-integration --test userns -- --ignored
//! --nocapture --test-threads=1` (as root, with Go for the client; see scripts/test.sh).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sluice_integration::cmd;
use sluice_integration::cri::{build_oci_archive, IMAGE_REF};
use sluice_integration::harness::{EnvOpts, TestEnv};
use sluice_integration::system;
use sluice_integration::traces::{mounts_under, runc_list};
use sluice_integration::Runtime;

/// The host uid and gid of the container's root (the map covers 65 536 ids from there).
const HOST_ID: u32 = 100_000;
/// What the container prints of `/proc/self/uid_map` (its fields, space-separated).
const UID_MAP: &str = "uid_map 0 100000 65536";
/// Deadline for one client run (two containers at most, each a few runc calls).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline for building the client: a cold module cache downloads and compiles containerd's
/// client library (about 2 minutes on 2 cores); a warm one takes seconds.
const GO_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The shim a run goes through; both are reached as `io.containerd.runc.v2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shim {
    Stock,
    Sluice,
}

/// What the Go client printed, line by line (see its `main.go`).
#[derive(Debug)]
struct Report {
    shim: Shim,
    lines: Vec<String>,
    /// The whole run, for failure messages.
    text: String,
}

impl Report {
    /// The rest of each line that starts with `key `.
    fn values(&self, key: &str) -> Vec<&str> {
        let prefix = format!("{key} ");
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .collect()
    }

    fn value(&self, key: &str) -> &str {
        match self.values(key).as_slice() {
            [v] => v,
            other => panic!(
                "{:?}: expected one `{key}` line, got {other:?}:\n{}",
                self.shim, self.text
            ),
        }
    }

    fn stdout(&self) -> Vec<&str> {
        self.values("stdout")
    }

    fn create_error(&self) -> Option<&str> {
        self.lines
            .iter()
            .find_map(|l| l.strip_prefix("create error: "))
    }

    /// The super options of the shim's mount of `<bundle>/rootfs` (the last mountinfo field)
    /// and its per-mount options (the sixth).
    fn shim_mount(&self) -> (String, String) {
        let line = self.value("shim-mountinfo");
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            f.len() > 9,
            "{:?}: no mount of the rootfs in the shim's mountinfo: {line:?}\n{}",
            self.shim,
            self.text
        );
        (f[5].to_string(), f[f.len() - 1].to_string())
    }
}

/// `go` from `$SLUICE_GO`, `$PATH` or Go's default install directory.
fn go_tool() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_GO") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .chain([PathBuf::from("/usr/local/go/bin")])
        .map(|d| d.join("go"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "prerequisite missing: `go` (for the Go client of this suite) is on neither \
                 $PATH nor /usr/local/go/bin; set SLUICE_GO"
            )
        })
}

/// Builds the Go client once per test process, next to the test executable's `deps/`
/// (`target/debug/userns-client`); Go's build cache makes a rebuild take seconds.
fn client_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("go/userns-client");
        let exe = std::env::current_exe().expect("current_exe");
        let out = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test executable lives in target/<profile>/deps")
            .join("userns-client");
        let mut c = Command::new(go_tool());
        c.current_dir(&src)
            .args(["build", "-mod=readonly", "-buildvcs=false", "-o"])
            .arg(&out)
            .arg(".")
            // Never fetch another toolchain: go.mod asks for one older than any installed Go.
            .env("GOTOOLCHAIN", "local");
        let t = Instant::now();
        cmd::run(c, None, GO_BUILD_TIMEOUT)
            .expect_success("go build of integration/go/userns-client");
        eprintln!("built {} in {:.1?}", out.display(), t.elapsed());
        out
    })
}

/// A private containerd whose `containerd-shim-runc-v2` is `shim`, with the harness's busybox
/// image imported as [`IMAGE_REF`] (`with_run`: with a `/run` directory).
fn env_for(shim: Shim, label: &str, with_run: bool) -> TestEnv {
    let opts = match shim {
        Shim::Stock => EnvOpts::default(),
        Shim::Sluice => EnvOpts {
            shims: vec![("containerd-shim-runc-v2".into(), system::sluice_shim_bin())],
            ..Default::default()
        },
    };
    let env = TestEnv::start_with(
        &format!(
            "{label}-{}",
            if shim == Shim::Stock { "stock" } else { "sl" }
        ),
        Runtime::RuncV2,
        opts,
    );
    let image_root = env.dir.join("image-rootfs");
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&env.rootfs).arg(&image_root);
    cmd::run(cp, None, Duration::from_secs(60)).expect_success("cp -a of the busybox rootfs");
    if with_run {
        fs::create_dir(image_root.join("run")).expect("mkdir run in the image");
    }
    let archive = env.dir.join("image.tar");
    build_oci_archive(&image_root, &env.dir.join("image-build"), &archive);
    let a = archive.display().to_string();
    env.ctr(&["images", "import", &a], Duration::from_secs(120))
        .expect_success("ctr images import");
    env
}

/// Runs the Go client with `args` as container `id` in `env`; asserts that it cleaned up after
/// itself and that nothing of the container is left (runc state, mounts under the bundles).
fn run_client(env: &TestEnv, shim: Shim, id: &str, args: &[&str]) -> Report {
    let mut c = Command::new(client_bin());
    c.arg("-address")
        .arg(&env.sock)
        .arg("-namespace")
        .arg(&env.ns)
        .arg("-image")
        .arg(IMAGE_REF)
        .arg("-fifo-dir")
        .arg(env.dir.join("fifo"))
        .arg("-id")
        .arg(id)
        .arg("-host-id")
        .arg(HOST_ID.to_string())
        .args(args);
    let out = cmd::run(c, None, CLIENT_TIMEOUT);
    let text = format!("{out}");
    eprintln!("{shim:?} {args:?}:\n{}", out.stdout_str());
    assert!(
        out.success(),
        "{shim:?}: the Go client failed:\n{text}\ncontainerd log:\n{}",
        env.log_tail(60)
    );
    if shim == Shim::Sluice {
        let log = fs::read_to_string(&env.log_path).unwrap_or_default();
        assert!(
            log.contains("runtime=io.containerd.sluice.v2"),
            "containerd did not start sluice as containerd-shim-runc-v2:\n{}",
            env.log_tail(80)
        );
    }
    let lines: Vec<String> = out.stdout_str().lines().map(str::to_string).collect();
    assert!(
        !lines.iter().any(|l| l.starts_with("cleanup error")),
        "{shim:?}: the client could not remove what it made:\n{text}"
    );
    let state = env.dir.join("state");
    assert_eq!(
        mounts_under(&state),
        Vec::<String>::new(),
        "{shim:?}: mounts left"
    );
    assert_eq!(
        runc_list(env),
        Vec::<String>::new(),
        "{shim:?}: runc state left"
    );
    Report { shim, lines, text }
}

/// The same case under the stock shim, then under sluice.
fn both(label: &str, with_run: bool, args: &[&str]) -> [Report; 2] {
    [Shim::Stock, Shim::Sluice].map(|shim| {
        let env = env_for(shim, label, with_run);
        run_client(&env, shim, "c1", args)
    })
}

/// A container that ran: `ok`, the user namespace's map, `root` as the root's state, exit 0.
fn assert_ran(r: &Report, root: &str) {
    assert_eq!(r.create_error(), None, "{:?}:\n{}", r.shim, r.text);
    assert_eq!(
        r.stdout(),
        ["ok", UID_MAP, &format!("rootfs {root}")],
        "{:?}:\n{}",
        r.shim,
        r.text
    );
    assert_eq!(r.values("stderr"), Vec::<&str>::new(), "{:?}", r.shim);
    assert_eq!(r.value("exit"), "0", "{:?}:\n{}", r.shim, r.text);
}

/// The case: a fresh remapped view of an image without `/run`. Both shims mount the
/// read-only overlay as it is, and runc fails at the `/run` tmpfs with the same words.
#[test]
#[ignore]
fn view_without_mount_points_fails_alike() {
    let reports = both("userns-view", false, &["-rootfs", "remapped-view"]);
    let mut errors = Vec::new();
    for r in &reports {
        assert_eq!(
            r.value("snapshot-kind"),
            "View",
            "{:?}:\n{}",
            r.shim,
            r.text
        );
        // Two lowerdirs (the remapped layer over the image's) and no upperdir.
        let mount = r.value("rootfs-mount");
        assert!(
            mount.starts_with("overlay ")
                && mount.contains("lowerdir=")
                && !mount.contains("upperdir="),
            "{:?}: not a read-only overlay: {mount}",
            r.shim
        );
        let err = r
            .create_error()
            .unwrap_or_else(|| panic!("{:?}: create succeeded:\n{}", r.shim, r.text));
        let words = err
            .find("runc create failed:")
            .map(|i| &err[i..])
            .unwrap_or_else(|| panic!("{:?}: runc's words missing from {err:?}", r.shim));
        assert!(
            words.contains("error mounting \"tmpfs\" to rootfs at \"/run\"")
                && words.contains("/c1/rootfs/run: read-only file system"),
            "{:?}: {err}",
            r.shim
        );
        // runc's words differ only by the namespace in the bundle path.
        let env_ns = words
            .split("/state/")
            .nth(1)
            .and_then(|s| s.split('/').nth(1));
        errors.push(words.replace(env_ns.unwrap_or("-"), "<ns>"));
    }
    assert_eq!(
        errors[0], errors[1],
        "runc's words under stock (left) and sluice (right)"
    );
}

/// The client's cache path: with the remapped parent still there (another container of the same
/// image and ids holds it), `WithRemappedSnapshotView` prepares a writable snapshot, and the
/// container runs under both shims with a writable root.
#[test]
#[ignore]
fn cached_remapped_view_is_writable_and_runs() {
    for r in both(
        "userns-cached",
        false,
        &["-rootfs", "remapped-view", "-cached"],
    ) {
        assert_eq!(
            r.value("snapshot-kind"),
            "Active",
            "{:?}:\n{}",
            r.shim,
            r.text
        );
        let (per_mount, super_opts) = r.shim_mount();
        assert!(
            per_mount.starts_with("rw")
                && super_opts.starts_with("rw,")
                && super_opts.contains("upperdir="),
            "{:?}: the shim's rootfs mount is not a writable overlay: {per_mount} {super_opts}",
            r.shim
        );
        assert_ran(&r, "writable");
    }
}

/// The read-only root runc expects: a writable snapshot, `root.readonly` in the spec. The shims
/// mount the rootfs writable; runc makes it read-only inside after mounting `/run` and the rest.
#[test]
#[ignore]
fn readonly_spec_runs() {
    for r in both(
        "userns-rospec",
        false,
        &["-rootfs", "remapped", "-readonly-spec"],
    ) {
        assert_eq!(
            r.value("snapshot-kind"),
            "Active",
            "{:?}:\n{}",
            r.shim,
            r.text
        );
        let (per_mount, super_opts) = r.shim_mount();
        assert!(
            per_mount.starts_with("rw") && super_opts.starts_with("rw,"),
            "{:?}: the shim's rootfs mount is not writable: {per_mount} {super_opts}",
            r.shim
        );
        assert_ran(&r, "read-only");
    }
}

/// A fresh remapped view of an image that has `/run`: both shims mount the read-only overlay as
/// the snapshotter gives it (the superblock is read-only: no upperdir), and the container runs.
#[test]
#[ignore]
fn view_with_mount_points_runs() {
    for r in both("userns-view-run", true, &["-rootfs", "remapped-view"]) {
        assert_eq!(
            r.value("snapshot-kind"),
            "View",
            "{:?}:\n{}",
            r.shim,
            r.text
        );
        let (_, super_opts) = r.shim_mount();
        assert!(
            super_opts.starts_with("ro,") && !super_opts.contains("upperdir="),
            "{:?}: the shim's rootfs mount is not a read-only overlay: {super_opts}",
            r.shim
        );
        assert_ran(&r, "read-only");
    }
}

/// The `bind,ro` rootfs the issue names: a view with one parent (here the image's only layer,
/// not remapped) comes as `bind` with `ro,rbind`, and it is the shim that makes it read-only:
/// a bind mount ignores `ro`, so both shims bind and then remount the bind read-only (the
/// mount's own flags, not the filesystem's). The container runs (its image has `/run`).
#[test]
#[ignore]
fn view_bind_is_made_read_only_by_the_shim() {
    for r in both("userns-bind", true, &["-rootfs", "view"]) {
        assert_eq!(
            r.value("snapshot-kind"),
            "View",
            "{:?}:\n{}",
            r.shim,
            r.text
        );
        assert_eq!(r.value("rootfs-mount"), "bind ro,rbind", "{:?}", r.shim);
        let (per_mount, super_opts) = r.shim_mount();
        assert!(
            per_mount.starts_with("ro,") && super_opts.starts_with("rw"),
            "{:?}: the shim's bind of the rootfs is not read-only: {per_mount} {super_opts}",
            r.shim
        );
        assert_ran(&r, "read-only");
    }
}
