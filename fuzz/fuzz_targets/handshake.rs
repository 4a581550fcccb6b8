//! Drives both sides of the tunnel handshake with frames decoded from
//! arbitrary bytes: the first frame goes to a server handshake, the second
//! to a client handshake. Neither may panic; a server that accepts must
//! produce a hello the real client accepts.
#![no_main]

use std::time::{Duration, Instant};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tntunnel::proto::tunnel::{ClientHello, ServerHello};
use tntunnel::{ClientHandshake, FrameCodec, ServerHandshake};
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let timeout = Duration::from_secs(10);
    let mut codec = FrameCodec::new();
    let mut buf = BytesMut::from(data);

    let mut server = ServerHandshake::new(now, timeout);
    if let Ok(Some(frame)) = codec.decode(&mut buf) {
        match server.handle_frame(frame) {
            Ok(hello) => {
                let answer = server.accept(ServerHello::default());
                let mut client = ClientHandshake::new(
                    ClientHello {
                        versions: hello.versions,
                        ..Default::default()
                    },
                    now,
                    timeout,
                );
                let _ = client.poll_transmit();
                assert!(client.handle_frame(answer).is_ok());
            }
            Err(e) => {
                let _ = e.close_frame();
            }
        }
    }

    let mut client = ClientHandshake::new(ClientHello::default(), now, timeout);
    let _ = client.poll_transmit();
    if let Ok(Some(frame)) = codec.decode(&mut buf) {
        let _ = client.handle_frame(frame);
    }
    let _ = client.handle_timeout(now + timeout);
});
