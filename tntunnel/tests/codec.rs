//! Frame codec: property round trips, scripted partial reads, and the
//! decoder's answer to every kind of malformed input.

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use proptest::prelude::*;
use tntunnel::proto::tunnel::{Compression, ErrorCode};
use tntunnel::{CodecError, Frame, FrameCodec, FrameError, FrameType};
use tokio_util::codec::{Decoder, Encoder, FramedRead};

fn encode_all(codec: &mut FrameCodec, frames: &[Frame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for frame in frames {
        codec.encode(frame.clone(), &mut buf).unwrap();
    }
    buf
}

fn decode_err(bytes: &[u8]) -> FrameError {
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(bytes);
    match codec.decode(&mut buf) {
        Err(CodecError::Frame(e)) => e,
        other => panic!("expected a frame error, got {other:?}"),
    }
}

fn arb_frame() -> impl Strategy<Value = Frame> {
    let ty = prop_oneof![
        Just(FrameType::CLIENT_HELLO),
        Just(FrameType::SERVER_HELLO),
        Just(FrameType::CLOSE),
        (FrameType::APP_FIRST..=FrameType::APP_LAST).prop_map(FrameType::app),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        // Compressible bodies that cross the compression threshold.
        (any::<u8>(), 1000usize..5000).prop_map(|(b, n)| vec![b; n]),
    ];
    (ty, body).prop_map(|(ty, body)| Frame::new(ty, body))
}

proptest! {
    #[test]
    fn round_trip_any_split(frames in proptest::collection::vec(arb_frame(), 1..8), cut in any::<prop::sample::Index>(), lz4 in any::<bool>()) {
        let compression = if lz4 { Compression::Lz4 } else { Compression::None };
        let mut encoder = FrameCodec::builder().compression(compression).build();
        let wire = encode_all(&mut encoder, &frames);
        let uncompressed: usize = frames.iter().map(Frame::encoded_len).sum();
        if !lz4 {
            prop_assert_eq!(wire.len(), uncompressed);
        } else {
            prop_assert!(wire.len() <= uncompressed);
        }

        // Feed the bytes in two pieces split anywhere.
        let cut = cut.index(wire.len() + 1);
        let mut decoder = FrameCodec::builder().compression(compression).build();
        let mut buf = BytesMut::from(&wire[..cut]);
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            out.push(frame);
        }
        buf.put_slice(&wire[cut..]);
        while let Some(frame) = decoder.decode_eof(&mut buf).unwrap() {
            out.push(frame);
        }
        prop_assert_eq!(out, frames);
    }

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut codec = FrameCodec::builder().compression(Compression::Lz4).max_frame_length(32).build();
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..64 {
            match codec.decode_eof(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
    }
}

#[tokio::test]
async fn scripted_partial_reads_byte_by_byte() {
    let frames = vec![
        Frame::new(FrameType::app(0x18), Bytes::from_static(&[7u8; 200])),
        Frame::new(FrameType::app(0x28), Bytes::new()),
        Frame::new(FrameType::CLOSE, Bytes::from_static(b"bye")),
    ];
    let wire = encode_all(&mut FrameCodec::new(), &frames);
    let mut script = tokio_test::io::Builder::new();
    for byte in wire.iter() {
        script.read(std::slice::from_ref(byte));
    }
    let mut reader = FramedRead::new(script.build(), FrameCodec::new());
    for expected in &frames {
        assert_eq!(&reader.next().await.unwrap().unwrap(), expected);
    }
    assert!(reader.next().await.is_none());
}

#[tokio::test]
async fn scripted_reads_splitting_the_length_prefix() {
    // A 300-byte body has a two-byte length prefix (0xac 0x02); split it.
    let frame = Frame::new(FrameType::app(0x1a), vec![1u8; 300]);
    let wire = encode_all(&mut FrameCodec::new(), std::slice::from_ref(&frame));
    assert_eq!(&wire[..3], &[0x1a, 0xac, 0x02]);
    let io = tokio_test::io::Builder::new()
        .read(&wire[..2])
        .read(&wire[2..3])
        .read(&wire[3..100])
        .read(&wire[100..])
        .build();
    let mut reader = FramedRead::new(io, FrameCodec::new());
    assert_eq!(reader.next().await.unwrap().unwrap(), frame);
}

#[tokio::test]
async fn eof_inside_a_frame_is_truncated() {
    let io = tokio_test::io::Builder::new()
        .read(&[0x18, 0x05, 1, 2])
        .build();
    let mut reader = FramedRead::new(io, FrameCodec::new());
    match reader.next().await.unwrap() {
        Err(CodecError::Frame(e)) => assert_eq!(e, FrameError::Truncated { buffered: 2 }),
        other => panic!("unexpected {other:?}"),
    }
    let io = tokio_test::io::Builder::new().read(&[0x18]).build();
    let mut reader = FramedRead::new(io, FrameCodec::new());
    match reader.next().await.unwrap() {
        Err(CodecError::Frame(e)) => assert_eq!(e, FrameError::Truncated { buffered: 1 }),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn oversize_length_is_refused_before_buffering_the_body() {
    let mut codec = FrameCodec::builder().max_frame_length(1024).build();
    // Declares 1025 bytes; only the header is present.
    let mut buf = BytesMut::from(&[0x18, 0x81, 0x08][..]);
    match codec.decode(&mut buf) {
        Err(CodecError::Frame(e)) => {
            assert_eq!(
                e,
                FrameError::FrameTooLarge {
                    len: 1025,
                    max: 1024
                }
            );
            assert_eq!(e.code(), ErrorCode::FrameTooLarge);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        buf.capacity() < 1025,
        "no room was reserved for the refused body"
    );
    // The largest legal prefix with the default limit.
    assert_eq!(
        decode_err(&[0x18, 0xff, 0xff, 0xff, 0x7f]),
        FrameError::FrameTooLarge {
            len: (1 << 28) - 1,
            max: 1 << 20
        }
    );
}

#[test]
fn catalogue_of_malformed_headers() {
    assert_eq!(
        decode_err(&[0x00, 0x00]),
        FrameError::UnknownFrameType(0x00)
    );
    assert_eq!(
        decode_err(&[0x05, 0x00]),
        FrameError::UnknownFrameType(0x05)
    );
    assert_eq!(decode_err(&[0x58, 0x00]), FrameError::ReservedFlag(0x58));
    assert_eq!(
        decode_err(&[0x18, 0x80, 0x80, 0x80, 0x80]),
        FrameError::LengthTooLong
    );
    assert_eq!(
        decode_err(&[0x18, 0x85, 0x00]),
        FrameError::NonMinimalLength
    );
    // Compressed flag without negotiated compression.
    assert_eq!(
        decode_err(&[0x98, 0x01, 0x00]),
        FrameError::CompressionNotNegotiated
    );
}

#[test]
fn corrupt_compressed_body_is_an_error() {
    let mut codec = FrameCodec::builder().compression(Compression::Lz4).build();
    let mut buf = BytesMut::from(&[0x98, 0x06, 0x10, 0x00, 0x00, 0x00, 0xf0, 0xff][..]);
    assert!(matches!(
        codec.decode(&mut buf),
        Err(CodecError::Frame(FrameError::Decompression(_)))
    ));
}

#[test]
fn encoder_refuses_frames_above_the_peer_limit() {
    let mut codec = FrameCodec::builder().peer_max_frame_length(16).build();
    let mut buf = BytesMut::new();
    let err = codec
        .encode(Frame::new(FrameType::app(0x18), vec![0u8; 17]), &mut buf)
        .unwrap_err();
    assert!(matches!(
        err,
        CodecError::Frame(FrameError::FrameTooLarge { len: 17, max: 16 })
    ));
    assert!(buf.is_empty());
}

#[test]
fn compression_is_used_only_above_threshold_and_when_it_pays() {
    let mut codec = FrameCodec::builder()
        .compression(Compression::Lz4)
        .compression_threshold(100)
        .build();
    let small = encode_all(
        &mut codec,
        &[Frame::new(FrameType::app(0x18), vec![b'a'; 99])],
    );
    assert_eq!(small[0], 0x18, "below threshold: not compressed");
    let big = encode_all(
        &mut codec,
        &[Frame::new(FrameType::app(0x18), vec![b'a'; 4000])],
    );
    assert_eq!(big[0], 0x98, "compressed flag set");
    assert!(
        big.len() < 100,
        "4000 repeated bytes compress to {} bytes",
        big.len()
    );
}

#[test]
fn prepared_frames_are_written_as_prepared() {
    let ty = FrameType::app(0x24);
    let text = Bytes::from(b"room batch room batch ".repeat(100));
    let mut lz4 = FrameCodec::builder().compression(Compression::Lz4).build();

    // Compressed once: every LZ4 connection writes the same packed bytes
    // and the peer decodes the original body.
    let packed = Frame::prepare(ty, text.clone(), Compression::Lz4, 1024);
    let wire = encode_all(&mut lz4, &[packed.clone(), packed.clone()]);
    assert_eq!(wire.len(), 2 * packed.encoded_len());
    let mut buf = wire;
    for _ in 0..2 {
        let frame = lz4.decode(&mut buf).unwrap().unwrap();
        assert_eq!(frame, Frame::new(ty, text.clone()));
    }
    // A connection that negotiated no compression cannot take it.
    let mut plain = FrameCodec::new();
    let err = plain.encode(packed, &mut BytesMut::new()).unwrap_err();
    assert!(
        matches!(err, CodecError::Frame(FrameError::CompressionNotNegotiated)),
        "{err:?}"
    );

    // Prepared raw (compression decided against once): never compressed
    // again by the connection's codec, even above its threshold.
    let raw = Frame::prepare(ty, text.clone(), Compression::None, 1024);
    let wire = encode_all(&mut lz4, std::slice::from_ref(&raw));
    assert_eq!(wire.len(), raw.encoded_len());
    assert_eq!(wire[0] & 0x80, 0, "no C bit");
}
