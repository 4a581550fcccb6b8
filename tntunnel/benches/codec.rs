//! Frame encode/decode throughput, against tokio-util's
//! `LengthDelimitedCodec` (4-byte length prefix, no type, no checks beyond
//! the length) on the same bodies in the same run, so the figures read as
//! ratios on a noisy machine.
//!
//! `cargo bench -p tntunnel --bench codec`

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use tntunnel::proto::tunnel::Compression;
use tntunnel::{Frame, FrameCodec, FrameType};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

const BATCH: usize = 1024;

fn bodies() -> Vec<(&'static str, Bytes)> {
    let text: Vec<u8> = "{\"user\":\"u42\",\"text\":\"hello from the live room\"} "
        .bytes()
        .cycle()
        .take(4096)
        .collect();
    vec![
        ("32B", Bytes::from(vec![0x61; 32])),
        ("256B", Bytes::from(vec![0x61; 256])),
        ("4KiB-text", Bytes::from(text)),
    ]
}

fn encode_pike(codec: &mut FrameCodec, body: &Bytes, out: &mut BytesMut) {
    out.clear();
    for _ in 0..BATCH {
        codec
            .encode(Frame::new(FrameType::app(0x18), body.clone()), out)
            .expect("encodes");
    }
}

fn encode_baseline(codec: &mut LengthDelimitedCodec, body: &Bytes, out: &mut BytesMut) {
    out.clear();
    for _ in 0..BATCH {
        codec.encode(body.clone(), out).expect("encodes");
    }
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, body) in bodies() {
        group.throughput(Throughput::Elements(BATCH as u64));
        let mut out = BytesMut::with_capacity(BATCH * (body.len() + 8));
        group.bench_with_input(BenchmarkId::new("pike", name), &body, |b, body| {
            let mut codec = FrameCodec::new();
            b.iter(|| encode_pike(&mut codec, black_box(body), &mut out));
        });
        group.bench_with_input(BenchmarkId::new("pike-lz4", name), &body, |b, body| {
            let mut codec = FrameCodec::builder().compression(Compression::Lz4).build();
            b.iter(|| encode_pike(&mut codec, black_box(body), &mut out));
        });
        group.bench_with_input(
            BenchmarkId::new("length-delimited", name),
            &body,
            |b, body| {
                let mut codec = LengthDelimitedCodec::new();
                b.iter(|| encode_baseline(&mut codec, black_box(body), &mut out));
            },
        );
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, body) in bodies() {
        group.throughput(Throughput::Elements(BATCH as u64));
        let mut wire = BytesMut::new();
        encode_pike(&mut FrameCodec::new(), &body, &mut wire);
        let wire = wire.freeze();
        let mut wire_lz4 = BytesMut::new();
        encode_pike(
            &mut FrameCodec::builder().compression(Compression::Lz4).build(),
            &body,
            &mut wire_lz4,
        );
        let wire_lz4 = wire_lz4.freeze();
        let mut baseline_wire = BytesMut::new();
        encode_baseline(&mut LengthDelimitedCodec::new(), &body, &mut baseline_wire);
        let baseline_wire = baseline_wire.freeze();

        group.bench_function(BenchmarkId::new("pike", name), |b| {
            let mut codec = FrameCodec::new();
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Some(frame) = codec.decode(&mut buf).expect("decodes") {
                    n += frame.body.len();
                }
                black_box(n)
            });
        });
        group.bench_function(BenchmarkId::new("pike-lz4", name), |b| {
            let mut codec = FrameCodec::builder().compression(Compression::Lz4).build();
            b.iter(|| {
                let mut buf = BytesMut::from(&wire_lz4[..]);
                let mut n = 0;
                while let Some(frame) = codec.decode(&mut buf).expect("decodes") {
                    n += frame.body.len();
                }
                black_box(n)
            });
        });
        group.bench_function(BenchmarkId::new("length-delimited", name), |b| {
            let mut codec = LengthDelimitedCodec::new();
            b.iter(|| {
                let mut buf = BytesMut::from(&baseline_wire[..]);
                let mut n = 0;
                while let Some(frame) = codec.decode(&mut buf).expect("decodes") {
                    n += frame.len();
                }
                black_box(n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
