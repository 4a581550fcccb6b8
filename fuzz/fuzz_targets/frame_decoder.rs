//! Feeds arbitrary bytes, in arbitrary chunks, to the frame decoder (with
//! LZ4 accepted and a small limit) and checks it never panics, never yields
//! a frame above the limit, and that every decoded frame re-encodes to a
//! frame that decodes to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tntunnel::proto::tunnel::Compression;
use tntunnel::{Frame, FrameCodec};
use tokio_util::codec::{Decoder, Encoder};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut codec = FrameCodec::builder()
        .compression(Compression::Lz4)
        .max_frame_length(LIMIT)
        .build();
    let mut buf = BytesMut::new();
    let mut frames: Vec<Frame> = Vec::new();
    'feed: for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() <= LIMIT);
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    for frame in frames {
        let mut out = BytesMut::new();
        let mut encoder = FrameCodec::builder().compression(Compression::Lz4).build();
        encoder
            .encode(frame.clone(), &mut out)
            .expect("a decoded frame re-encodes");
        let mut decoder = FrameCodec::builder().compression(Compression::Lz4).build();
        let again = decoder.decode(&mut out).expect("re-encoded frame decodes");
        assert_eq!(again, Some(frame));
    }
});
