//! The shim's log: logfmt records into the `log` FIFO containerd reads, as its Go shims write.
//!
//! The FIFO is written without blocking: if containerd stops reading, records are dropped
//! instead of stalling the shim (a shim must never hang on a sink nobody reads).

use std::{
    fs::File,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct FifoLog {
    out: Mutex<Option<File>>,
    level: LevelFilter,
    namespace: String,
    id: String,
}

impl Log for FifoLog {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let level = match r.level() {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        };
        let line = format!(
            "time=\"{}\" level={level} msg={} namespace={} id={} runtime=io.containerd.sluice.v2\n",
            rfc3339(SystemTime::now()),
            quote(&r.args().to_string()),
            quote(&self.namespace),
            quote(&self.id),
        );
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        match out.as_mut() {
            // EAGAIN (containerd not reading) drops the record; EPIPE (containerd gone) too.
            Some(f) => {
                let _ = f.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

/// logfmt quoting: bare when safe, else a double-quoted string with escapes.
fn quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._/:@".contains(c))
    {
        return s.to_string();
    }
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c if c.is_control() => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// UTC RFC 3339 with nanoseconds, without a date library.
fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

fn open_fifo(path: &Path) -> Option<File> {
    // containerd opens its read end before it starts the shim; allow a moment all the same.
    for _ in 0..50 {
        match std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => return Some(f),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(_) => return None,
        }
    }
    None
}

/// Logs into `path` (the bundle's `log` FIFO), or to stderr if it cannot be opened.
pub fn init(path: &Path, debug: bool, namespace: &str, id: &str) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = FifoLog {
        out: Mutex::new(open_fifo(path)),
        level,
        namespace: namespace.to_string(),
        id: id.to_string(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_logfmt() {
        assert_eq!(quote("plain-id_1"), "plain-id_1");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a\"b\nc"), "\"a\\\"b\\nc\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn formats_utc_time() {
        let t = UNIX_EPOCH + Duration::new(1_795_737_600, 5);
        assert_eq!(rfc3339(t), "2026-11-27T00:00:00.000000005Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    }
}
