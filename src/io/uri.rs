//! What containerd's stdio strings mean: a FIFO path, `file://`, `binary://`, or nothing.

use std::path::PathBuf;

use super::IoError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Null,
    Fifo(PathBuf),
    /// Append to a file (stdout and stderr share it).
    File(PathBuf),
    /// Hand the streams to a logging binary, with these arguments.
    Binary {
        path: PathBuf,
        args: Vec<String>,
    },
}

pub fn parse(s: &str) -> Result<Target, IoError> {
    if s.is_empty() {
        return Ok(Target::Null);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(s)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = PathBuf::from(percent_decode(path));
    match scheme {
        "fifo" => Ok(Target::Fifo(path)),
        "file" => Ok(Target::File(path)),
        "binary" => {
            if !path.is_absolute() {
                return Err(IoError::Unsupported(format!(
                    "{s}: the logging binary needs an absolute path"
                )));
            }
            // As the Go shim does: each `key=value` of the query becomes two arguments.
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(k));
                if !v.is_empty() {
                    args.push(percent_decode(v));
                }
            }
            Ok(Target::Binary { path, args })
        }
        _ => Err(IoError::Unsupported(s.to_string())),
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(parse("").unwrap(), Target::Null);
        assert_eq!(
            parse("/run/containerd/fifo/1/c-stdout").unwrap(),
            Target::Fifo("/run/containerd/fifo/1/c-stdout".into())
        );
        assert_eq!(parse("fifo:///a/b").unwrap(), Target::Fifo("/a/b".into()));
        assert_eq!(
            parse("file:///var/log/c.log").unwrap(),
            Target::File("/var/log/c.log".into())
        );
        assert_eq!(
            parse("binary:///usr/bin/logger?id=c1&tag=my%20app&flag").unwrap(),
            Target::Binary {
                path: "/usr/bin/logger".into(),
                args: vec![
                    "id".into(),
                    "c1".into(),
                    "tag".into(),
                    "my app".into(),
                    "flag".into()
                ],
            }
        );
    }

    #[test]
    fn unknown_scheme_and_relative_binary_are_refused() {
        assert!(parse("tcp://1.2.3.4:5").is_err());
        assert!(parse("binary://logger").is_err());
    }
}
