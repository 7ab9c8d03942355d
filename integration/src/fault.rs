//! The fault-injecting `runc` wrapper's configuration and payloads.
//!
//! The wrapper binary (`src/bin/fault-runc.rs`) is copied as `runc` into a per-test directory
//! that comes first on the PATH of the private containerd, so both shims run it instead of the
//! real runc. It reads `fault.conf` from its own directory, decides whether this invocation is the
//! targeted one, misbehaves if so, and otherwise `exec`s the real runc with the same arguments.
//!
//! The payloads live here, not in the binary, so the tests can check byte for byte that what the
//! wrapper wrote is what arrived.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Name of the configuration file the wrapper reads from its own directory.
pub const CONF_FILE: &str = "fault.conf";
/// Token file for `once`: whoever removes it first fires the fault, everyone after passes through.
pub const TOKEN_FILE: &str = "fault.token";
/// One line per wrapper invocation, appended by the wrapper, so a test can tell the fault fired.
pub const LOG_FILE: &str = "fault.log";

/// 256 KiB: four times a default 64 KiB pipe, so a reader that starts only after runc exits is
/// guaranteed to deadlock the writer.
pub const FLOOD_BYTES: usize = 256 * 1024;

/// The first line of the seed case's crash dump; tests look for it in ctr's error.
pub const CGO_CRASH_LINE: &str =
    "runtime/cgo: pthread_create failed: Resource temporarily unavailable";

/// What the wrapper does when the targeted verb is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Pass through to the real runc (the wrapper only logs the call).
    None,
    /// Write `bytes` bytes of [`flood`] to stderr, then exec the real runc.
    StderrFlood { bytes: usize },
    /// The seed case: shrink the inherited stdout/stderr pipes to one page, write the fake Go
    /// crash dump of [`crash_dump`] to stderr, exit 2 without running the real runc.
    CrashDump,
    /// Never return: sleep forever without running the real runc (a wedged runc). Only a
    /// deadline (or the harness's teardown, which kills wrapper processes) ends it.
    Hang,
    /// Write `bytes` bytes of [`flood`] to stdout and as many to stderr, then exec the real runc.
    BothFlood { bytes: usize },
    /// Kill itself with SIGKILL without running the real runc (runc dying mid-way).
    SelfKill,
    /// Shrink the inherited stdout/stderr pipes to one page (the seed's exhausted per-user pipe
    /// budget), write `bytes` bytes of [`flood`] to each, then exec the real runc.
    OnePageFlood { bytes: usize },
    /// Sleep `secs` seconds, then exec the real runc: a runc that is slow to start its work
    /// (a loaded node, a slow hook, systemd slow to answer), the call itself then as usual.
    Slow { secs: u64 },
    /// Run the real runc as a child, then sleep `secs` seconds before exiting with its status:
    /// a runc whose work is done (for `create`: `runc init` waits in the container) but which
    /// is slow to return, so a client that gives up meanwhile leaves that work behind.
    SlowExit { secs: u64 },
}

/// A complete wrapper configuration, as written to and parsed from `fault.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultConf {
    /// The runc the wrapper hands over to; never the wrapper itself.
    pub real_runc: PathBuf,
    /// The runc verb that triggers the action (`create`, `exec`, `start`, ...).
    pub verb: String,
    pub action: Action,
    /// Fire only for the first matching call (consumes [`TOKEN_FILE`]).
    pub once: bool,
}

impl FaultConf {
    /// A configuration that only passes calls through (and logs them).
    pub fn pass_through(real_runc: &Path) -> Self {
        FaultConf {
            real_runc: real_runc.to_path_buf(),
            verb: String::new(),
            action: Action::None,
            once: false,
        }
    }

    pub fn to_conf_string(&self) -> String {
        let (action, bytes) = match self.action {
            Action::None => ("none", 0),
            Action::StderrFlood { bytes } => ("stderr-flood", bytes),
            Action::CrashDump => ("crash-dump", 0),
            Action::Hang => ("hang", 0),
            Action::BothFlood { bytes } => ("both-flood", bytes),
            Action::SelfKill => ("self-kill", 0),
            Action::OnePageFlood { bytes } => ("one-page-flood", bytes),
            Action::Slow { .. } => ("slow", 0),
            Action::SlowExit { .. } => ("slow-exit", 0),
        };
        let secs = match self.action {
            Action::Slow { secs } | Action::SlowExit { secs } => secs,
            _ => 0,
        };
        format!(
            "# written by sluice-integration; read by fault-runc\n\
             real_runc={}\nverb={}\naction={}\nbytes={}\nseconds={}\nonce={}\n",
            self.real_runc.display(),
            self.verb,
            action,
            bytes,
            secs,
            self.once
        )
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut real_runc = None;
        let mut verb = String::new();
        let mut action = "none".to_string();
        let mut bytes = FLOOD_BYTES;
        let mut once = false;
        let mut secs = 0u64;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key=value, got {line:?}", n + 1))?;
            let value = value.trim();
            match key.trim() {
                "real_runc" => real_runc = Some(PathBuf::from(value)),
                "verb" => verb = value.to_string(),
                "action" => action = value.to_string(),
                "bytes" => {
                    bytes = value
                        .parse()
                        .map_err(|e| format!("line {}: bytes={value:?}: {e}", n + 1))?
                }
                "seconds" => {
                    secs = value
                        .parse()
                        .map_err(|e| format!("line {}: seconds={value:?}: {e}", n + 1))?
                }
                "once" => once = matches!(value, "true" | "1" | "yes"),
                other => return Err(format!("line {}: unknown key {other:?}", n + 1)),
            }
        }
        let action = match action.as_str() {
            "none" => Action::None,
            "stderr-flood" => Action::StderrFlood { bytes },
            "crash-dump" => Action::CrashDump,
            "hang" => Action::Hang,
            "both-flood" => Action::BothFlood { bytes },
            "self-kill" => Action::SelfKill,
            "one-page-flood" => Action::OnePageFlood { bytes },
            "slow" => Action::Slow { secs },
            "slow-exit" => Action::SlowExit { secs },
            other => return Err(format!("unknown action {other:?}")),
        };
        Ok(FaultConf {
            real_runc: real_runc.ok_or("real_runc is missing")?,
            verb,
            action,
            once,
        })
    }

    /// Writes `fault.conf` (and the `once` token) into the wrapper directory. The conf is written
    /// to a temporary name and renamed so a concurrent runc call never reads half a file.
    pub fn install(&self, wrapper_dir: &Path) -> io::Result<()> {
        let tmp = wrapper_dir.join(format!("{CONF_FILE}.tmp"));
        fs::write(&tmp, self.to_conf_string())?;
        if self.once {
            fs::write(wrapper_dir.join(TOKEN_FILE), b"fire once\n")?;
        }
        fs::rename(tmp, wrapper_dir.join(CONF_FILE))
    }
}

/// Finds runc's verb: the first argument that is neither a global flag nor a global flag's value.
/// runc's global flags that take a value are `--root --log --log-format --criu --rootless`; the
/// boolean ones (`--debug --systemd-cgroup`) are simply skipped. Go's flag syntax allows one or
/// two dashes and `--flag=value`.
pub fn runc_verb(args: &[String]) -> Option<&str> {
    const WITH_VALUE: [&str; 5] = ["root", "log", "log-format", "criu", "rootless"];
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if let Some(flag) = arg.strip_prefix('-') {
            let flag = flag.strip_prefix('-').unwrap_or(flag);
            if flag.is_empty() {
                // `--` ends the flags; the verb follows.
                return args.get(i + 1).map(String::as_str);
            }
            let takes_value = !flag.contains('=') && WITH_VALUE.contains(&flag);
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        return Some(arg);
    }
    None
}

/// `len` bytes of numbered 64-byte lines: easy to read in a log, and no window of it repeats, so
/// a test can tell a complete copy from a truncated or reordered one.
pub fn flood(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut n = 0u64;
    while out.len() < len {
        let mut line = format!("fault-runc stderr flood line {n:08} ");
        while line.len() < 63 {
            line.push('.');
        }
        line.push('\n');
        out.extend_from_slice(line.as_bytes());
        n += 1;
    }
    out.truncate(len);
    out
}

/// About 7 KiB shaped like the Go runtime's dump when `runc init` cannot create a thread (the
/// seed case): the cgo line, `SIGABRT: abort`, a register dump and goroutine traces. More than
/// a one-page pipe holds, so a shim that reads only after runc exits deadlocks on it.
pub fn crash_dump() -> String {
    const TARGET: usize = 7 * 1024;
    let mut s = String::with_capacity(TARGET + 512);
    s.push_str(CGO_CRASH_LINE);
    s.push('\n');
    s.push_str("SIGABRT: abort\nPC=0x7f3b2c8d3e2c m=3 sigcode=18446744073709551610\n\n");
    s.push_str("goroutine 0 [idle]:\nruntime: unknown pc 0x7f3b2c8d3e2c\n");
    s.push_str(
        "stack: frame={sp:0x7f3b2a7fb8d0, fp:0x0} stack=[0x7f3b29ffc250,0x7f3b2a7fbe50)\n\n",
    );
    let registers = [
        "rax", "rbx", "rcx", "rdx", "rdi", "rsi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12",
        "r13", "r14", "r15", "rip", "rflags", "cs", "fs", "gs",
    ];
    for (i, reg) in registers.iter().enumerate() {
        let _ = writeln!(
            s,
            "{reg:<7}0x{:x}",
            0x7f3b_2a7f_b000u64 + (i as u64) * 0x1d8
        );
    }
    s.push('\n');
    let mut g = 1;
    while s.len() < TARGET {
        let _ = write!(
            s,
            "goroutine {g} [running]:\n\
             runtime.systemstack_switch()\n\
             \t/usr/lib/go-1.19/src/runtime/asm_amd64.s:459 fp=0xc00004e7b8 sp=0xc00004e7b0 pc=0x45e5a0\n\
             runtime.newm(0x4c2a28, 0x0, 0xffffffffffffffff)\n\
             \t/usr/lib/go-1.19/src/runtime/proc.go:2127 +0x{:x} fp=0xc00004e7f0 sp=0xc00004e7b8\n\
             runtime.startm(0x0, 0x0)\n\
             \t/usr/lib/go-1.19/src/runtime/proc.go:2375 +0x23f fp=0xc00004e840 sp=0xc00004e7f0\n\
             main.init.0()\n\
             \t/build/runc/init.go:{} +0x{:x} fp=0xc00004e878 sp=0xc00004e840\n\n",
            0x85 + g,
            30 + g,
            0x1a + g
        );
        g += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn verb_skips_global_flags() {
        let a = args(&[
            "--root",
            "/run/containerd/runc/ns",
            "--log",
            "/x/log.json",
            "--log-format",
            "json",
            "--systemd-cgroup",
            "exec",
            "--process",
            "/tmp/p.json",
            "id",
        ]);
        assert_eq!(runc_verb(&a), Some("exec"));
        assert_eq!(
            runc_verb(&args(&["--debug", "--root=/r", "create", "x"])),
            Some("create")
        );
        assert_eq!(
            runc_verb(&args(&["-root", "/r", "state", "x"])),
            Some("state")
        );
        assert_eq!(
            runc_verb(&args(&["--rootless", "auto", "kill", "x"])),
            Some("kill")
        );
        assert_eq!(runc_verb(&args(&["--root", "/r"])), None);
    }

    #[test]
    fn conf_round_trips() {
        let conf = FaultConf {
            real_runc: "/usr/sbin/runc".into(),
            verb: "exec".into(),
            action: Action::StderrFlood { bytes: 1234 },
            once: true,
        };
        assert_eq!(FaultConf::parse(&conf.to_conf_string()), Ok(conf));
        let crash = FaultConf {
            action: Action::CrashDump,
            once: false,
            ..FaultConf::pass_through(Path::new("/usr/sbin/runc"))
        };
        assert_eq!(FaultConf::parse(&crash.to_conf_string()), Ok(crash));
        assert!(FaultConf::parse("verb=exec\n").is_err());
        assert!(FaultConf::parse("real_runc=/r\naction=explode\n").is_err());
    }

    #[test]
    fn robustness_actions_round_trip() {
        for action in [
            Action::Hang,
            Action::BothFlood { bytes: 1 << 20 },
            Action::SelfKill,
            Action::OnePageFlood { bytes: 64 << 10 },
            Action::Slow { secs: 8 },
            Action::SlowExit { secs: 5 },
        ] {
            let conf = FaultConf {
                real_runc: "/usr/sbin/runc".into(),
                verb: "exec".into(),
                action,
                once: true,
            };
            assert_eq!(FaultConf::parse(&conf.to_conf_string()), Ok(conf));
        }
    }

    #[test]
    fn slow_actions_keep_their_seconds() {
        let text = "real_runc=/usr/sbin/runc\nverb=create\naction=slow\nseconds=10\n";
        assert_eq!(
            FaultConf::parse(text).map(|c| c.action),
            Ok(Action::Slow { secs: 10 })
        );
        let text = "real_runc=/r\nverb=delete\naction=slow-exit\nseconds=3\n";
        assert_eq!(
            FaultConf::parse(text).map(|c| c.action),
            Ok(Action::SlowExit { secs: 3 })
        );
        assert!(FaultConf::parse("real_runc=/r\naction=slow\nseconds=soon\n").is_err());
    }

    #[test]
    fn payload_sizes() {
        assert_eq!(flood(FLOOD_BYTES).len(), FLOOD_BYTES);
        assert_eq!(flood(100).len(), 100);
        let dump = crash_dump();
        assert!(dump.starts_with(CGO_CRASH_LINE));
        assert!(dump.contains("SIGABRT: abort"));
        assert!((7 * 1024..8 * 1024).contains(&dump.len()), "{}", dump.len());
    }
}
