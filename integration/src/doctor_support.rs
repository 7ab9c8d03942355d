//! Helpers for the `containerd-shim-sluice-v2 doctor` tests (`tests/doctor.rs`): running the
//! doctor with a deadline, reading its JSON, and creating the conditions it looks for (a process
//! holding shrunken pipes, a container at its `pids.max`).
//!
//! This crate depends on libc only, so the JSON is read with the small parser below: enough for
//! the doctor's report (objects, arrays, strings, numbers, booleans, null), strict about syntax.

use std::fs::{self, File};
use std::os::fd::FromRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::cmd::{self, CmdOutput};
use crate::system;

/// Deadline for one doctor run; it reads /proc and cgroupfs and takes milliseconds.
pub const DOCTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `containerd-shim-sluice-v2 doctor <args>` (the binary under test) to completion.
/// Panics if it does not finish, or exits with anything but 0 (healthy) or 1 (findings).
pub fn doctor(args: &[&str]) -> CmdOutput {
    let mut c = Command::new(system::sluice_shim_bin());
    c.arg("doctor").args(args);
    let out = cmd::run(c, None, DOCTOR_TIMEOUT);
    assert!(
        matches!(out.code(), Some(0) | Some(1)),
        "the doctor itself failed (exit 2 means bad flags or /proc unreadable):\n{out}"
    );
    out
}

/// Prints one doctor run, so `--nocapture` shows a sample of each condition.
pub fn show(title: &str, out: &CmdOutput) {
    eprintln!(
        "\n----- doctor sample: {title} -----\n$ {} (exit {})\n{}{}----- end of sample -----",
        out.argv.join(" "),
        out.code().map(|c| c.to_string()).unwrap_or("?".into()),
        out.stdout_str(),
        out.stderr_str()
    );
}

/// Runs the doctor with `--json` added and parses its report.
pub fn doctor_json(args: &[&str]) -> (CmdOutput, Json) {
    let mut a = args.to_vec();
    a.push("--json");
    let out = doctor(&a);
    let json = Json::parse(&out.stdout_str())
        .unwrap_or_else(|e| panic!("doctor --json printed invalid JSON ({e}):\n{out}"));
    (out, json)
}

/// The findings of `kind` in a parsed report.
pub fn findings<'a>(report: &'a Json, kind: &str) -> Vec<&'a Json> {
    report
        .get("findings")
        .items()
        .iter()
        .filter(|f| f.get("kind").as_str() == Some(kind))
        .collect()
}

// ---- JSON --------------------------------------------------------------------------------

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    /// Members in document order.
    Obj(Vec<(String, Json)>),
}

static NULL: Json = Json::Null;

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    /// The member `key` of an object; `Null` when absent or not an object.
    pub fn get(&self, key: &str) -> &Json {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map_or(&NULL, |(_, v)| v),
            _ => &NULL,
        }
    }

    pub fn has(&self, key: &str) -> bool {
        matches!(self, Json::Obj(m) if m.iter().any(|(k, _)| k == key))
    }

    pub fn keys(&self) -> Vec<&str> {
        match self {
            Json::Obj(m) => m.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    /// The elements of an array; empty for anything else.
    pub fn items(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Num(n) if n.fract() == 0.0 => Some(*n as i64),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> Result<(), String> {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            Ok(())
        } else {
            Err(format!("expected {lit:?} at byte {}", self.i))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, String> {
        if depth > 64 {
            return Err("nested too deeply".into());
        }
        self.ws();
        match self.s.get(self.i) {
            None => Err("unexpected end".into()),
            Some(b'n') => self.eat("null").map(|()| Json::Null),
            Some(b't') => self.eat("true").map(|()| Json::Bool(true)),
            Some(b'f') => self.eat("false").map(|()| Json::Bool(false)),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(out));
                }
                loop {
                    out.push(self.value(depth + 1)?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(out));
                        }
                        _ => return Err(format!("expected , or ] at byte {}", self.i)),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut out = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(out));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    self.eat(":")?;
                    out.push((key, self.value(depth + 1)?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(out));
                        }
                        _ => return Err(format!("expected , or }} at byte {}", self.i)),
                    }
                }
            }
            Some(_) => self.number(),
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        while self.i < self.s.len()
            && matches!(
                self.s[self.i],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
            )
        {
            self.i += 1;
        }
        std::str::from_utf8(&self.s[start..self.i])
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .map(Json::Num)
            .ok_or_else(|| format!("bad value at byte {start}"))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let t = self
            .s
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("bad \\u escape at byte {}", self.i))?;
        self.i += 4;
        Ok(t)
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat("\"")?;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return Err("unterminated escape".into());
                    };
                    self.i += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&hi) {
                                self.eat("\\u")?;
                                let lo = self.hex4()?;
                                0x10000 + ((hi - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff)
                            } else {
                                hi
                            };
                            char::from_u32(code).unwrap_or('\u{fffd}')
                        }
                        other => return Err(format!("bad escape \\{}", other as char)),
                    };
                    let mut buf = [0; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c => out.push(c),
            }
        }
        String::from_utf8(out).map_err(|e| e.to_string())
    }
}

// ---- conditions --------------------------------------------------------------------------

/// A `sleep` holding two pipes that were shrunk with `F_SETPIPE_SZ` (the case study's small
/// pipes, made on purpose): pipe 0 with both ends (fd 0 read, fd 1 write) and pipe 1's write end
/// (fd 2). Killed and reaped on drop.
pub struct PipeHolder {
    child: Child,
    pub pid: i32,
    /// The inodes of pipe 0 and pipe 1 (`pipe:[inode]`).
    pub inodes: [u64; 2],
    /// Their capacity in bytes.
    pub capacity: i32,
}

/// One pipe: (read end, write end), close-on-exec.
fn pipe() -> (File, File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are new and owned by nobody else.
    unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) }
}

impl PipeHolder {
    /// `size`: bytes to shrink both pipes to (`F_SETPIPE_SZ`), or `None` for the default.
    pub fn spawn(size: Option<i32>) -> PipeHolder {
        let sleep = system::which("sleep").expect("`sleep` (coreutils) not found");
        let (r0, w0) = pipe();
        let (r1, w1) = pipe();
        let mut capacity = 0;
        for f in [&w0, &w1] {
            use std::os::fd::AsRawFd;
            if let Some(size) = size {
                // SAFETY: fcntl on our own pipe descriptor.
                let got = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
                assert_eq!(
                    got,
                    size,
                    "F_SETPIPE_SZ {size}: {}",
                    std::io::Error::last_os_error()
                );
            }
            // SAFETY: as above.
            capacity = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETPIPE_SZ) };
        }
        let inodes = [
            r0.metadata().expect("fstat pipe 0").ino(),
            r1.metadata().expect("fstat pipe 1").ino(),
        ];
        drop(r1); // nobody reads pipe 1; sleep never writes
        let child = Command::new(sleep)
            .arg("1000")
            .stdin(Stdio::from(r0))
            .stdout(Stdio::from(w0))
            .stderr(Stdio::from(w1))
            .spawn()
            .expect("spawn sleep with the pipes");
        PipeHolder {
            pid: child.id() as i32,
            child,
            inodes,
            capacity,
        }
    }
}

impl Drop for PipeHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The directory of `pid`'s pids cgroup: `/sys/fs/cgroup/pids/<path>` on a v1 (or hybrid) host,
/// `/sys/fs/cgroup/<path>` on a v2 host; and the cgroup path itself.
pub fn pids_cgroup_of(pid: i32) -> (PathBuf, String) {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
    let root = Path::new("/sys/fs/cgroup");
    for line in text.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrl), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if ctrl.split(',').any(|c| c == "pids") {
            return (
                root.join("pids").join(path.trim_start_matches('/')),
                path.to_string(),
            );
        }
        if ctrl.is_empty() && root.join("cgroup.controllers").is_file() {
            return (root.join(path.trim_start_matches('/')), path.to_string());
        }
    }
    panic!("pid {pid} is in no pids cgroup:\n{text}");
}

/// Sets a cgroup's `pids.max` and puts `max` back on drop (so teardown's kills and deletes never
/// meet the limit).
pub struct PidsMax {
    dir: PathBuf,
}

impl PidsMax {
    pub fn set(dir: &Path, max: u64) -> PidsMax {
        let file = dir.join("pids.max");
        fs::write(&file, format!("{max}\n"))
            .unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        PidsMax {
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for PidsMax {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("pids.max"), "max\n");
    }
}

/// `pids.current` of a cgroup directory.
pub fn pids_current(dir: &Path) -> Option<u64> {
    fs::read_to_string(dir.join("pids.current"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parser() {
        let v = Json::parse(
            r#" {"a": [1, -2.5e1, true, false, null], "s": "x\"\\\/\n\u00e9\ud83d\ude00",
                 "o": {}, "e": []} "#,
        )
        .expect("parse");
        assert_eq!(v.keys(), vec!["a", "s", "o", "e"]);
        assert_eq!(v.get("a").items()[0].as_i64(), Some(1));
        assert_eq!(v.get("a").items()[1], Json::Num(-25.0));
        assert_eq!(v.get("a").items()[2].as_bool(), Some(true));
        assert_eq!(v.get("a").items()[4], Json::Null);
        assert_eq!(v.get("s").as_str(), Some("x\"\\/\né😀"));
        assert_eq!(v.get("o"), &Json::Obj(Vec::new()));
        assert!(v.get("e").items().is_empty());
        assert_eq!(v.get("missing"), &Json::Null);
        assert!(v.has("o") && !v.has("missing"));
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "tru",
            "\"abc",
            "1 2",
            "{\"a\":1,}",
        ] {
            assert!(Json::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
