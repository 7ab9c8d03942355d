//! A bounded record of a byte stream: its first bytes and its last bytes.
//!
//! runc's words on failure are usually at one end: `log.json`-less crashes start with the cause
//! (`runtime/cgo: pthread_create failed ...`) and end with the goroutine that died. Keeping both
//! ends, and counting what was skipped between them, keeps the memory bounded whatever runc writes.

use std::{collections::VecDeque, sync::Mutex};

/// First `head_cap` bytes and last `tail_cap` bytes of everything pushed.
#[derive(Debug)]
pub struct Tail {
    head_cap: usize,
    tail_cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    total: u64,
}

impl Default for Tail {
    fn default() -> Self {
        Tail::new(4 * 1024, 4 * 1024)
    }
}

impl Tail {
    pub fn new(head_cap: usize, tail_cap: usize) -> Self {
        Tail {
            head_cap,
            tail_cap,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn push(&self, mut bytes: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.total += bytes.len() as u64;
        let room = self.head_cap.saturating_sub(inner.head.len());
        let to_head = room.min(bytes.len());
        inner.head.extend_from_slice(&bytes[..to_head]);
        bytes = &bytes[to_head..];
        if bytes.len() > self.tail_cap {
            bytes = &bytes[bytes.len() - self.tail_cap..];
        }
        let overflow = (inner.tail.len() + bytes.len()).saturating_sub(self.tail_cap);
        inner.tail.drain(..overflow);
        inner.tail.extend(bytes.iter().copied());
    }

    /// Total bytes pushed so far.
    pub fn total(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// The recorded text; a marker stands where bytes were skipped.
    pub fn render(&self) -> String {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let kept = (inner.head.len() + inner.tail.len()) as u64;
        let mut out = String::from_utf8_lossy(&inner.head).into_owned();
        if inner.total > kept {
            out.push_str(&format!(
                "\n[... {} bytes omitted ...]\n",
                inner.total - kept
            ));
        }
        let (a, b) = inner.tail.as_slices();
        let mut tail = a.to_vec();
        tail.extend_from_slice(b);
        out.push_str(&String::from_utf8_lossy(&tail));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_stream_is_kept_whole() {
        let t = Tail::new(4, 4);
        t.push(b"abc");
        t.push(b"def");
        assert_eq!(t.render(), "abcdef");
        assert_eq!(t.total(), 6);
    }

    #[test]
    fn long_stream_keeps_both_ends() {
        let t = Tail::new(5, 5);
        t.push(b"first");
        for _ in 0..1000 {
            t.push(b"xxxxxxxxxx");
        }
        t.push(b"last!");
        let r = t.render();
        assert!(
            r.starts_with("first\n[... 10000 bytes omitted ...]\n"),
            "{r}"
        );
        assert!(r.ends_with("last!"), "{r}");
    }
}
