//! Per-frame compression of large bodies (LZ4 block format).
//!
//! A compressed body is a little-endian `u32` uncompressed length followed by
//! an LZ4 block. The receiver checks that length against its maximum frame
//! length before allocating, so a small frame cannot inflate into a large
//! allocation.

use bytes::Bytes;
use proto::tunnel::Compression;

use crate::error::FrameError;

/// Bodies smaller than this are never compressed by default: below about a
/// kilobyte LZ4 rarely saves enough to pay for the work on both ends.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

/// Compresses `body` if that makes it smaller; `None` keeps it as is.
pub(crate) fn compress(algorithm: Compression, body: &[u8]) -> Option<Vec<u8>> {
    match algorithm {
        Compression::None => None,
        Compression::Lz4 => {
            let packed = lz4_flex::block::compress_prepend_size(body);
            (packed.len() < body.len()).then_some(packed)
        }
    }
}

/// Decompresses a body, refusing any declared size above `max`.
pub(crate) fn decompress(
    algorithm: Compression,
    body: &[u8],
    max: usize,
) -> Result<Bytes, FrameError> {
    match algorithm {
        Compression::None => Err(FrameError::CompressionNotNegotiated),
        Compression::Lz4 => {
            let Some((size, block)) = body.split_first_chunk::<4>() else {
                return Err(FrameError::Decompression("missing size prefix".into()));
            };
            let size = u32::from_le_bytes(*size) as usize;
            if size > max {
                return Err(FrameError::FrameTooLarge { len: size, max });
            }
            let out = lz4_flex::block::decompress(block, size)
                .map_err(|e| FrameError::Decompression(e.to_string()))?;
            if out.len() != size {
                return Err(FrameError::Decompression(format!(
                    "declared {size} bytes, got {}",
                    out.len()
                )));
            }
            Ok(Bytes::from(out))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compresses_only_when_smaller() {
        let text = b"abcdabcdabcdabcd".repeat(100);
        let packed = compress(Compression::Lz4, &text).unwrap();
        assert!(packed.len() < text.len());
        assert_eq!(
            decompress(Compression::Lz4, &packed, 1 << 20).unwrap(),
            &text[..]
        );

        let noise: Vec<u8> = (0..64u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(compress(Compression::Lz4, &noise), None);
        assert_eq!(compress(Compression::None, &text), None);
    }

    #[test]
    fn refuses_declared_size_above_limit_before_allocating() {
        let mut bomb = (u32::MAX).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0x1f, 0, 0, 0]);
        assert_eq!(
            decompress(Compression::Lz4, &bomb, 1024),
            Err(FrameError::FrameTooLarge {
                len: u32::MAX as usize,
                max: 1024
            })
        );
    }

    #[test]
    fn corrupt_block_is_an_error() {
        let mut bad = 100u32.to_le_bytes().to_vec();
        bad.extend_from_slice(&[0xff, 0xff, 0xff]);
        assert!(matches!(
            decompress(Compression::Lz4, &bad, 1024),
            Err(FrameError::Decompression(_))
        ));
        assert!(matches!(
            decompress(Compression::Lz4, &[1, 2], 1024),
            Err(FrameError::Decompression(_))
        ));
    }
}
