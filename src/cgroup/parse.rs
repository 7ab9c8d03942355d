//! The cgroupfs file formats, read tolerantly: every reader answers `None` (or leaves an entry out)
//! for a missing, unreadable or malformed file or line, and never panics.
//!
//! Formats, as the kernel's cgroup documentation names them: single values (`memory.current`),
//! flat keyed (`memory.stat`: `key value` per line), nested keyed (`io.stat`:
//! `8:0 rbytes=1 wbytes=2`), and space separated lists (`cpuacct.usage_percpu`).

use std::{collections::HashMap, io, path::Path};

/// How a single-value file reading `max` (no limit) is reported.
#[derive(Debug, Clone, Copy)]
pub(super) enum Max {
    /// 0, as containerd's `cgroup1` package reports it (`readUint`, `pids.go`).
    Zero,
    /// `u64::MAX`, as its `cgroup2` package reports it (`getStatFileContentUint64`); the CRI
    /// plugin recognises an unlimited memory limit by this value.
    U64Max,
}

/// The file's text, or `None` if it cannot be read. A missing file is the normal way a kernel
/// says "not supported" or "controller not here", so only other errors are logged.
pub(super) fn read(path: &Path) -> Option<String> {
    match std::fs::read(path) {
        Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            log::debug!("cgroup: cannot read {}: {e}", path.display());
            None
        }
    }
}

/// An unsigned counter as the Go library parses it (`parseUint`): a negative value, which a few
/// kernels print for some counters, reads as 0.
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    if let Ok(v) = s.parse::<u64>() {
        return Some(v);
    }
    let digits = s.strip_prefix('-')?;
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        Some(0)
    } else {
        None
    }
}

/// A file holding one number (or `max`).
pub(super) fn single(path: &Path, max: Max) -> Option<u64> {
    let text = read(path)?;
    let value = text.trim();
    if value == "max" {
        return Some(match max {
            Max::Zero => 0,
            Max::U64Max => u64::MAX,
        });
    }
    let parsed = parse_u64(value);
    if parsed.is_none() {
        log::debug!("cgroup: {}: not a number: {value:?}", path.display());
    }
    parsed
}

/// A flat keyed file (`key value` per line). Malformed lines are skipped.
pub(super) fn flat_keyed(path: &Path) -> Option<HashMap<String, u64>> {
    let text = read(path)?;
    let mut out = HashMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match (
            fields.next(),
            fields.next().and_then(parse_u64),
            fields.next(),
        ) {
            (Some(key), Some(value), None) => {
                out.insert(key.to_string(), value);
            }
            (None, _, _) => {}
            _ => log::debug!("cgroup: {}: skipping line {line:?}", path.display()),
        }
    }
    Some(out)
}

/// A nested keyed file: per line a head (a device, `some`, `full`) and `key=value` pairs, the
/// values left as text because their kinds differ (`max`, floats). Malformed pairs are skipped.
pub(super) fn nested_keyed(path: &Path) -> Option<Vec<(String, HashMap<String, String>)>> {
    let text = read(path)?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(head) = fields.next() else { continue };
        let mut pairs = HashMap::new();
        for field in fields {
            match field.split_once('=') {
                Some((k, v)) => {
                    pairs.insert(k.to_string(), v.to_string());
                }
                None => log::debug!("cgroup: {}: skipping {field:?}", path.display()),
            }
        }
        out.push((head.to_string(), pairs));
    }
    Some(out)
}

/// A whitespace separated list of counters (`cpuacct.usage_percpu`). All or nothing: a bad entry
/// would shift every later CPU's index.
pub(super) fn list(path: &Path) -> Option<Vec<u64>> {
    let text = read(path)?;
    let values: Option<Vec<u64>> = text.split_whitespace().map(parse_u64).collect();
    if values.is_none() {
        log::debug!("cgroup: {}: malformed list {text:?}", path.display());
    }
    values
}

/// `major:minor` of a device.
pub(super) fn major_minor(s: &str) -> Option<(u64, u64)> {
    let (major, minor) = s.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The page sizes of the hugetlb files in `dir`, from the names `hugetlb.<size>.<suffix>`, smallest
/// first. Taken from the directory rather than `/sys/kernel/mm/hugepages` (as the Go library
/// does) so the cgroup root alone describes the container; the kernel names both the same.
/// Names with a further dot (`hugetlb.2MB.rsvd.current`, kernel 5.7+) are other counters.
pub(super) fn hugetlb_sizes(dir: &Path, suffix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut sizes: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            let size = size.strip_suffix('.')?;
            (!size.is_empty() && !size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort_by_key(|s| (page_size_bytes(s), s.clone()));
    sizes
}

/// `2MB` → 2 MiB, as the kernel prints page sizes (`KB`, `MB`, `GB` with 1024 steps); only used
/// for ordering, so an unknown form sorts last.
fn page_size_bytes(s: &str) -> u64 {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let shift = match unit {
        "B" | "" => 0,
        "KB" => 10,
        "MB" => 20,
        "GB" => 30,
        "TB" => 40,
        _ => return u64::MAX,
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .unwrap_or(u64::MAX)
}

/// One rdma controller entry: device, `hca_handle`, `hca_object` (`max` reads as `u32::MAX`, as
/// in the Go library).
pub(super) fn rdma(path: &Path) -> Option<Vec<(String, u32, u32)>> {
    let value = |pairs: &HashMap<String, String>, key: &str| -> u32 {
        match pairs.get(key).map(String::as_str) {
            Some("max") => u32::MAX,
            Some(v) => v.parse().unwrap_or(0),
            None => 0,
        }
    };
    Some(
        nested_keyed(path)?
            .into_iter()
            .map(|(dev, pairs)| {
                let handles = value(&pairs, "hca_handle");
                let objects = value(&pairs, "hca_object");
                (dev, handles, objects)
            })
            .collect(),
    )
}

/// Pressure stall information of one line (`some` or `full`) of a `*.pressure` file.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Psi {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total: u64,
}

/// A `*.pressure` file: its `some` and `full` lines.
pub(super) fn psi(path: &Path) -> Option<(Option<Psi>, Option<Psi>)> {
    let mut some = None;
    let mut full = None;
    for (head, pairs) in nested_keyed(path)? {
        let f = |k: &str| pairs.get(k).and_then(|v| v.parse::<f64>().ok());
        let (Some(avg10), Some(avg60), Some(avg300), Some(total)) = (
            f("avg10"),
            f("avg60"),
            f("avg300"),
            pairs.get("total").and_then(|v| v.parse::<u64>().ok()),
        ) else {
            log::debug!("cgroup: {}: skipping {head} line", path.display());
            continue;
        };
        let p = Psi {
            avg10,
            avg60,
            avg300,
            total,
        };
        match head.as_str() {
            "some" => some = Some(p),
            "full" => full = Some(p),
            _ => {}
        }
    }
    Some((some, full))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_u64_takes_negatives_as_zero_and_rejects_junk() {
        assert_eq!(parse_u64("42"), Some(42));
        assert_eq!(parse_u64("-1"), Some(0));
        assert_eq!(parse_u64("-99999999999999999999999"), Some(0));
        assert_eq!(parse_u64("-"), None);
        assert_eq!(parse_u64("4x2"), None);
        assert_eq!(parse_u64(""), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
    }

    #[test]
    fn page_sizes_order_by_bytes() {
        assert!(page_size_bytes("64KB") < page_size_bytes("2MB"));
        assert!(page_size_bytes("2MB") < page_size_bytes("1GB"));
        assert_eq!(page_size_bytes("weird"), u64::MAX);
    }

    #[test]
    fn major_minor_rejects_junk() {
        assert_eq!(major_minor("8:16"), Some((8, 16)));
        assert_eq!(major_minor("8"), None);
        assert_eq!(major_minor("a:1"), None);
    }
}
