//! Just enough protobuf wire format for the bootstrap result: a writer for the few fields the
//! shim sends, and a reader that fails where Go's `proto.Unmarshal` fails, so that the model of
//! each daemon ([`super::daemon`]) reaches the verdict the daemon would.

/// Appends `v` as a base-128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// A varint field; an `int32` is sign-extended to 64 bits, as protobuf encodes it.
pub(crate) fn put_int32(out: &mut Vec<u8>, field: u32, v: i32) {
    if v != 0 {
        put_tag(out, field, 0);
        put_varint(out, i64::from(v) as u64);
    }
}

/// A length-delimited field (string, bytes or message), always written.
pub(crate) fn put_bytes(out: &mut Vec<u8>, field: u32, v: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

/// A proto3 string: omitted when empty.
pub(crate) fn put_string(out: &mut Vec<u8>, field: u32, v: &str) {
    if !v.is_empty() {
        put_bytes(out, field, v.as_bytes());
    }
}

/// One field as read: its number and, for the wire types the bootstrap messages use, its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed32, fixed64 or a group: valid on the wire, skipped.
    Other,
}

const MAX_FIELD: u64 = (1 << 29) - 1;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("unexpected EOF".into());
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err("variable length integer overflow".into());
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("variable length integer overflow".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "unexpected EOF".to_string())?;
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            return Err("unexpected EOF".into());
        };
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next tag as (field, wire type), or none at the end.
    fn tag(&mut self) -> Result<Option<(u32, u8)>, String> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let t = self.varint()?;
        let (field, wire) = (t >> 3, (t & 7) as u8);
        if field == 0 || field > MAX_FIELD {
            return Err(format!("invalid field number {field}"));
        }
        Ok(Some((field as u32, wire)))
    }

    /// The value of a field of wire type `wire` (a group is skipped up to its end).
    fn value(&mut self, field: u32, wire: u8) -> Result<Value<'a>, String> {
        match wire {
            0 => self.varint().map(Value::Varint),
            1 => self.take(8).map(|_| Value::Other),
            2 => {
                let n = self.varint()?;
                self.take(n).map(Value::Bytes)
            }
            3 => {
                loop {
                    let Some((f, w)) = self.tag()? else {
                        return Err("unexpected EOF in group".into());
                    };
                    if w == 4 {
                        if f != field {
                            return Err(format!("mismatching end group {f} for {field}"));
                        }
                        break;
                    }
                    self.value(f, w)?;
                }
                Ok(Value::Other)
            }
            5 => self.take(4).map(|_| Value::Other),
            4 => Err(format!("unexpected end group in field {field}")),
            _ => Err(format!("invalid wire type {wire} in field {field}")),
        }
    }
}

/// Every field of a message, failing where Go's decoder fails on the wire format itself.
pub(crate) fn fields(buf: &[u8]) -> Result<Vec<(u32, Value<'_>)>, String> {
    let mut r = Reader { buf, pos: 0 };
    let mut out = Vec::new();
    while let Some((field, wire)) = r.tag()? {
        out.push((field, r.value(field, wire)?));
    }
    Ok(out)
}

/// A proto3 `string` field: Go rejects one that is not UTF-8.
pub(crate) fn string(v: &[u8], field: &str) -> Result<String, String> {
    String::from_utf8(v.to_vec())
        .map_err(|_| format!("string field {field} contains invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_including_negative_int32() {
        let mut b = Vec::new();
        put_int32(&mut b, 1, -4);
        put_int32(&mut b, 2, 300);
        let f = fields(&b).unwrap();
        assert_eq!(f[0], (1, Value::Varint(u64::MAX - 3)));
        assert_eq!(f[1], (2, Value::Varint(300)));
        assert_eq!(b.len(), 1 + 10 + 1 + 2);
    }

    #[test]
    fn what_go_rejects() {
        // wire types 6 and 7, field 0, truncation, a stray end group, an unclosed group
        for bad in [
            &b"\x0e"[..],
            b"\x0f",
            b"\x02\x00",
            b"\x12\x05ab",
            b"\x0c",
            b"\x0b\x08\x01",
        ] {
            assert!(fields(bad).is_err(), "{bad:?}");
        }
        // a closed group and fixed-width fields are fine
        assert!(fields(b"\x0b\x08\x01\x0c\x15\0\0\0\0\x19\0\0\0\0\0\0\0\0").is_ok());
    }
}
