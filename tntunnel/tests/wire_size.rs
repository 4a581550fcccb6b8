//! Bytes on the wire for a small push, against MQTT 3.1.1 computed from the
//! specification (OASIS MQTT 3.1.1, §2.2 fixed header, §3.3 PUBLISH, §3.4
//! PUBACK). Run with `--nocapture` to print the table in docs/protocol.md.

use bytes::{Bytes, BytesMut};
use tntunnel::proto::channel::{Downlink, DownlinkAck};
use tntunnel::{Frame, FrameCodec, FrameType};
use tokio_util::codec::Encoder;

const PAYLOAD: usize = 32;
/// The MQTT topic standing for the Pike alias `chat:u42`.
const TOPIC: &str = "chat/u42";

fn pike_len(frame: Frame) -> usize {
    let mut buf = BytesMut::new();
    FrameCodec::new().encode(frame, &mut buf).unwrap();
    buf.len()
}

/// MQTT "Remaining Length": 1-4 bytes of 7-bit groups (§2.2.3).
fn mqtt_remaining_length_len(n: usize) -> usize {
    match n {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// PUBLISH: fixed header byte + remaining length + topic (2-byte length +
/// UTF-8) + packet identifier (QoS > 0 only) + payload.
fn mqtt_publish_len(topic: &str, payload: usize, qos: u8) -> usize {
    let remaining = 2 + topic.len() + if qos > 0 { 2 } else { 0 } + payload;
    1 + mqtt_remaining_length_len(remaining) + remaining
}

/// PUBACK: fixed header (2 bytes) + packet identifier (2 bytes).
const MQTT_PUBACK_LEN: usize = 4;

/// Stream 0 is the first login on a connection (free on the wire); a second
/// business on the same connection uses stream 1.
fn reliable_push_on(stream: u32, seq: u64) -> Frame {
    Frame::from_message(
        FrameType::app(0x18),
        &Downlink {
            stream,
            seq,
            payload: Bytes::from(vec![0x61; PAYLOAD]),
            ..Default::default()
        },
    )
}

fn reliable_push(seq: u64) -> Frame {
    reliable_push_on(0, seq)
}

fn ack_on(stream: u32, seq: u64) -> Frame {
    Frame::from_message(FrameType::app(0x19), &DownlinkAck { stream, seq })
}

fn ack(seq: u64) -> Frame {
    ack_on(0, seq)
}

#[test]
fn a_32_byte_push_costs_fewer_bytes_than_mqtt_qos1() {
    let mqtt_qos1 = mqtt_publish_len(TOPIC, PAYLOAD, 1) + MQTT_PUBACK_LEN;
    let mqtt_qos0 = mqtt_publish_len(TOPIC, PAYLOAD, 0);
    assert_eq!(mqtt_publish_len(TOPIC, PAYLOAD, 1), 46);

    println!("| case | Pike bytes | MQTT 3.1.1 bytes | Pike / MQTT |");
    println!("|---|---|---|---|");
    for (stream, seq) in [
        (0u32, 1u64),
        (0, 1_000),
        (0, 100_000),
        (0, 10_000_000),
        (1, 1_000),
        (1, 100_000),
    ] {
        let pike = pike_len(reliable_push_on(stream, seq)) + pike_len(ack_on(stream, seq));
        println!(
            "| reliable push + ack, stream {stream}, seq {seq} | {pike} | {mqtt_qos1} (QoS 1 PUBLISH + PUBACK) | {:.2} |",
            pike as f64 / mqtt_qos1 as f64
        );
        if stream == 0 || seq < 16_384 {
            assert!(
                pike < mqtt_qos1,
                "stream {stream} seq {seq}: pike {pike} >= mqtt {mqtt_qos1}"
            );
        } else {
            // A second business on the connection, past 2^14 messages on its
            // stream: the two varints grow and Pike ties with MQTT's fixed
            // two-byte packet id (which wraps at 65,535).
            assert_eq!(pike, mqtt_qos1, "stream {stream} seq {seq}");
        }
    }

    // Ten pushes in a burst, acked by one cumulative ack.
    let pike_burst: usize = (1_001..=1_010)
        .map(|s| pike_len(reliable_push(s)))
        .sum::<usize>()
        + pike_len(ack(1_010));
    let mqtt_burst = 10 * mqtt_qos1;
    println!(
        "| 10 reliable pushes + 1 cumulative ack | {pike_burst} | {mqtt_burst} (10 × QoS 1 + PUBACK) | {:.2} |",
        pike_burst as f64 / mqtt_burst as f64
    );
    assert!(
        pike_burst * 10 < mqtt_burst * 9,
        "a burst saves at least 10%"
    );

    let transient = pike_len(Frame::from_message(
        FrameType::app(0x18),
        &Downlink {
            message_id: 123_456_789,
            payload: Bytes::from(vec![0x61; PAYLOAD]),
            ..Default::default()
        },
    ));
    println!(
        "| transient push with message id | {transient} | {mqtt_qos0} (QoS 0 PUBLISH) | {:.2} |",
        transient as f64 / mqtt_qos0 as f64
    );
    assert!(transient < mqtt_qos0);

    let ping = pike_len(Frame::new(FrameType::app(0x28), Bytes::new()));
    println!(
        "| heartbeat (ping) | {ping} | 2 (PINGREQ) | {:.2} |",
        ping as f64 / 2.0
    );
    assert_eq!(ping, 2);
}
