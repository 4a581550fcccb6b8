//! Key and value encodings (documented in `docs/storage.md`).
//!
//! Keys are built from length-prefixed parts so that no key of one scope is
//! a prefix of a key of another scope; values start with a format byte so a
//! later build can change an encoding without a migration of every row.
//! Nothing read back from disk is trusted: every decoder returns
//! [`StoreError::Corrupt`] instead of panicking.

use bytes::Bytes;

use super::error::StoreError;
use super::{StreamKey, Target, UplinkOutcome};

/// Format byte of every value this build writes.
pub(crate) const VALUE_FORMAT: u8 = 1;

/// Longest identifier (app, biz, alias, device, tag, idempotency key) the
/// store accepts, in bytes.
pub const MAX_ID_LEN: usize = 1024;

const TARGET_ALIAS: u8 = 1;
const TARGET_DEVICE: u8 = 2;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over a value read from disk.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    table: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], table: &'static str) -> Self {
        Self { buf, table }
    }

    fn err(&self, what: &str) -> StoreError {
        StoreError::corrupt(self.table, what)
    }

    /// Checks the leading format byte.
    pub(crate) fn format(&mut self) -> Result<(), StoreError> {
        match self.buf.split_first() {
            Some((&VALUE_FORMAT, rest)) => {
                self.buf = rest;
                Ok(())
            }
            Some((&other, _)) => Err(self.err(&format!("unknown value format {other}"))),
            None => Err(self.err("empty value")),
        }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let Some((&b, rest)) = self.buf.split_first() else {
                return Err(self.err("truncated varint"));
            };
            self.buf = rest;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(self.err("varint overflows u64"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, StoreError> {
        let v = self.varint()?;
        u32::try_from(v).map_err(|_| self.err("value does not fit u32"))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| self.err("length overflows usize"))?;
        if len > self.buf.len() {
            return Err(self.err("length prefix past the end of the value"));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("string is not UTF-8"))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn end(&self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(self.err("trailing bytes"))
        }
    }
}

/// Checks one identifier: non-empty, at most [`MAX_ID_LEN`] bytes.
pub(crate) fn check_id(what: &str, s: &str) -> Result<(), StoreError> {
    if s.is_empty() {
        return Err(StoreError::InvalidArgument(format!("{what} is empty")));
    }
    if s.len() > MAX_ID_LEN {
        return Err(StoreError::InvalidArgument(format!(
            "{what} is {} bytes long (at most {MAX_ID_LEN})",
            s.len()
        )));
    }
    Ok(())
}

/// Length-prefixed concatenation of `parts`: the prefix of a scope.
pub(crate) fn scope(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 2).sum());
    for p in parts {
        put_varint(&mut out, p.len() as u64);
        out.extend_from_slice(p.as_bytes());
    }
    out
}

/// `scope(parts) ++ last` (the last part raw, so that keys of one scope sort
/// by it byte-wise, which is `str` order).
pub(crate) fn scoped(parts: &[&str], last: &str) -> Vec<u8> {
    let mut out = scope(parts);
    out.extend_from_slice(last.as_bytes());
    out
}

/// The suffix of a `scoped` key after its scope prefix, as text.
pub(crate) fn suffix<'a>(
    key: &'a [u8],
    prefix: &[u8],
    table: &'static str,
) -> Result<&'a str, StoreError> {
    let rest = key
        .strip_prefix(prefix)
        .ok_or_else(|| StoreError::corrupt(table, "key outside its scope"))?;
    std::str::from_utf8(rest).map_err(|_| StoreError::corrupt(table, "key suffix is not UTF-8"))
}

/// Key of the `stream_ids` table: target kind byte, then app, biz and the
/// target's name, length-prefixed.
pub(crate) fn stream_key(key: &StreamKey) -> Vec<u8> {
    let (kind, name) = match &key.target {
        Target::Alias(a) => (TARGET_ALIAS, a.as_str()),
        Target::Device(d) => (TARGET_DEVICE, d.as_str()),
    };
    let mut out = vec![kind];
    out.extend_from_slice(&scope(&[&key.app, &key.biz, name]));
    out
}

pub(crate) fn check_stream(key: &StreamKey) -> Result<(), StoreError> {
    check_id("app", &key.app)?;
    check_id("biz", &key.biz)?;
    match &key.target {
        Target::Alias(a) => check_id("alias", a),
        Target::Device(d) => check_id("device", d),
    }
}

/// Per-stream bookkeeping (`streams` table value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamMeta {
    /// Lowest seq still stored (`last_seq + 1` when none is).
    pub(crate) first_seq: u64,
    /// Highest seq ever assigned (0 = none).
    pub(crate) last_seq: u64,
    /// Messages stored (expired ones count until swept).
    pub(crate) count: u64,
}

impl StreamMeta {
    pub(crate) const NEW: Self = Self {
        first_seq: 1,
        last_seq: 0,
        count: 0,
    };

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.push(VALUE_FORMAT);
        put_varint(&mut out, self.first_seq);
        put_varint(&mut out, self.last_seq);
        put_varint(&mut out, self.count);
        out
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(buf, "streams");
        r.format()?;
        let m = Self {
            first_seq: r.varint()?,
            last_seq: r.varint()?,
            count: r.varint()?,
        };
        r.end()?;
        if m.first_seq == 0 || m.first_seq > m.last_seq.saturating_add(1) {
            return Err(StoreError::corrupt("streams", "first_seq out of range"));
        }
        if m.count > m.last_seq {
            return Err(StoreError::corrupt("streams", "count above last_seq"));
        }
        Ok(m)
    }
}

/// A message as stored (`messages` table value, without its seq).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MessageValue {
    pub(crate) message_id: u64,
    pub(crate) priority: u32,
    pub(crate) expires_at_ms: u64,
    pub(crate) payload: Bytes,
}

impl MessageValue {
    pub(crate) fn encode(
        message_id: u64,
        priority: u32,
        expires_at_ms: u64,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(payload.len() + 24);
        out.push(VALUE_FORMAT);
        put_varint(&mut out, message_id);
        put_varint(&mut out, u64::from(priority));
        put_varint(&mut out, expires_at_ms);
        out.extend_from_slice(payload);
        out
    }

    /// Only the expiry (for eviction and read filtering).
    pub(crate) fn expires_at(buf: &[u8]) -> Result<u64, StoreError> {
        let mut r = Reader::new(buf, "messages");
        r.format()?;
        r.varint()?;
        r.u32()?;
        r.varint()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(buf, "messages");
        r.format()?;
        Ok(Self {
            message_id: r.varint()?,
            priority: r.u32()?,
            expires_at_ms: r.varint()?,
            payload: Bytes::copy_from_slice(r.rest()),
        })
    }
}

/// An uplink record (`uplinks` table value).
pub(crate) fn encode_uplink(recorded_at_ms: u64, expires_at_ms: u64, o: &UplinkOutcome) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + o.route_id.len() + o.message.len());
    out.push(VALUE_FORMAT);
    put_varint(&mut out, recorded_at_ms);
    put_varint(&mut out, expires_at_ms);
    put_varint(&mut out, u64::from(o.code));
    put_varint(&mut out, o.route_id.len() as u64);
    out.extend_from_slice(o.route_id.as_bytes());
    put_varint(&mut out, o.message.len() as u64);
    out.extend_from_slice(o.message.as_bytes());
    out
}

/// Decodes an uplink record: (recorded_at_ms, expires_at_ms, outcome).
pub(crate) fn decode_uplink(buf: &[u8]) -> Result<(u64, u64, UplinkOutcome), StoreError> {
    let mut r = Reader::new(buf, "uplinks");
    r.format()?;
    let recorded = r.varint()?;
    let expires = r.varint()?;
    let code = r.u32()?;
    let route_id = r.string()?;
    let message = r.string()?;
    r.end()?;
    Ok((
        recorded,
        expires,
        UplinkOutcome {
            code,
            route_id,
            message,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varint_round_trip(v in any::<u64>()) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader::new(&out, "t");
            prop_assert_eq!(r.varint().unwrap(), v);
            prop_assert!(r.end().is_ok());
        }

        #[test]
        fn message_round_trip(id in any::<u64>(), prio in any::<u32>(), exp in any::<u64>(),
                              payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let enc = MessageValue::encode(id, prio, exp, &payload);
            let m = MessageValue::decode(&enc).unwrap();
            prop_assert_eq!(m.message_id, id);
            prop_assert_eq!(m.priority, prio);
            prop_assert_eq!(m.expires_at_ms, exp);
            prop_assert_eq!(&m.payload[..], &payload[..]);
            prop_assert_eq!(MessageValue::expires_at(&enc).unwrap(), exp);
        }

        #[test]
        fn decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..40)) {
            let _ = MessageValue::decode(&buf);
            let _ = MessageValue::expires_at(&buf);
            let _ = StreamMeta::decode(&buf);
            let _ = decode_uplink(&buf);
        }

        #[test]
        fn scoped_keys_do_not_collide(a in "[a-c]{0,3}", b in "[a-c]{0,3}", c in "[a-c]{0,3}", d in "[a-c]{0,3}") {
            // ("a","bc") and ("ab","c") must differ; equal keys only for equal parts.
            let k1 = scoped(&[&a], &b);
            let k2 = scoped(&[&c], &d);
            prop_assert_eq!(k1 == k2, a == c && b == d);
        }
    }

    #[test]
    fn corrupt_values_are_errors() {
        assert!(matches!(
            MessageValue::decode(&[]),
            Err(StoreError::Corrupt {
                table: "messages",
                ..
            })
        ));
        assert!(matches!(
            MessageValue::decode(&[9, 1, 2]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            MessageValue::decode(&[1, 0x80]),
            Err(StoreError::Corrupt { .. })
        ));
        let mut meta = StreamMeta::NEW.encode();
        meta.push(0);
        assert!(StreamMeta::decode(&meta).is_err(), "trailing byte");
        let bad = StreamMeta {
            first_seq: 5,
            last_seq: 2,
            count: 0,
        }
        .encode();
        assert!(
            StreamMeta::decode(&bad).is_err(),
            "first_seq > last_seq + 1"
        );
        let mut up = encode_uplink(1, 2, &UplinkOutcome::accepted("r1"));
        up.truncate(up.len() - 1);
        // Truncating the (empty) message length byte leaves a truncated varint.
        assert!(decode_uplink(&up).is_err());
    }
}
