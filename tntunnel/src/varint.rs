//! The frame length prefix: an unsigned LEB128 varint of at most four bytes.

use crate::error::FrameError;

/// Longest encoding of a frame length, in bytes (28 bits of value).
pub(crate) const MAX_VARINT_LEN: usize = 4;

/// Largest length a four-byte varint can carry (2^28 - 1).
pub(crate) const MAX_VARINT_VALUE: usize = (1 << 28) - 1;

/// Result of reading a length prefix from the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Varint {
    /// A complete prefix: the value and how many bytes it took.
    Complete { value: usize, len: usize },
    /// More bytes are needed.
    Incomplete,
}

/// Reads a minimally encoded varint of at most [`MAX_VARINT_LEN`] bytes.
pub(crate) fn decode(src: &[u8]) -> Result<Varint, FrameError> {
    let mut value = 0usize;
    for (i, &byte) in src.iter().take(MAX_VARINT_LEN).enumerate() {
        value |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A zero last byte after the first means padding: reject so that
            // every length has exactly one encoding.
            if i > 0 && byte == 0 {
                return Err(FrameError::NonMinimalLength);
            }
            return Ok(Varint::Complete { value, len: i + 1 });
        }
    }
    if src.len() >= MAX_VARINT_LEN {
        return Err(FrameError::LengthTooLong);
    }
    Ok(Varint::Incomplete)
}

/// Number of bytes `value` takes when encoded.
pub(crate) fn encoded_len(value: usize) -> usize {
    match value {
        0..=0x7f => 1,
        0x80..=0x3fff => 2,
        0x4000..=0x1f_ffff => 3,
        _ => 4,
    }
}

/// Writes `value` (at most [`MAX_VARINT_VALUE`]) at the start of `dst`,
/// which must hold [`MAX_VARINT_LEN`] bytes; returns the bytes written.
pub(crate) fn encode_into(mut value: usize, dst: &mut [u8]) -> usize {
    debug_assert!(value <= MAX_VARINT_VALUE);
    let mut i = 0;
    while value >= 0x80 && i + 1 < dst.len() {
        dst[i] = (value as u8 & 0x7f) | 0x80;
        value >>= 7;
        i += 1;
    }
    dst[i] = value as u8;
    i + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_boundaries() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_VARINT_VALUE,
        ] {
            let mut buf = [0u8; MAX_VARINT_LEN];
            let n = encode_into(value, &mut buf);
            let buf = &buf[..n];
            assert_eq!(buf.len(), encoded_len(value), "value {value}");
            assert_eq!(
                decode(buf).unwrap(),
                Varint::Complete {
                    value,
                    len: buf.len()
                }
            );
        }
    }

    #[test]
    fn rejects_five_byte_and_padded_lengths() {
        assert_eq!(
            decode(&[0x80, 0x80, 0x80, 0x80]),
            Err(FrameError::LengthTooLong)
        );
        assert_eq!(decode(&[0x81, 0x00]), Err(FrameError::NonMinimalLength));
        assert_eq!(decode(&[0x80, 0x80]), Ok(Varint::Incomplete));
        assert_eq!(decode(&[]), Ok(Varint::Incomplete));
    }
}
