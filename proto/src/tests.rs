use prost::Message;

use crate::{FILE_DESCRIPTOR_SET, channel, tunnel};

/// The subset of `google/protobuf/descriptor.proto` the tests read; prost
/// skips the other fields.
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FileDescriptorSet {
        #[prost(message, repeated, tag = "1")]
        pub(super) file: Vec<FileDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FileDescriptorProto {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
        #[prost(string, optional, tag = "2")]
        pub(super) package: Option<String>,
        #[prost(message, repeated, tag = "4")]
        pub(super) message_type: Vec<DescriptorProto>,
        #[prost(message, repeated, tag = "5")]
        pub(super) enum_type: Vec<EnumDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct DescriptorProto {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EnumDescriptorProto {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        pub(super) value: Vec<EnumValueDescriptorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EnumValueDescriptorProto {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
        #[prost(int32, optional, tag = "2")]
        pub(super) number: Option<i32>,
    }
}

fn roundtrip<M: Message + Default + PartialEq + std::fmt::Debug>(message: &M) {
    let encoded = message.encode_to_vec();
    assert_eq!(encoded.len(), message.encoded_len());
    let decoded = M::decode(encoded.as_slice()).unwrap();
    assert_eq!(&decoded, message);
}

#[test]
fn file_descriptor_set_is_valid() {
    let set = descriptor::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let files: Vec<_> = set
        .file
        .iter()
        .map(|file| (file.name(), file.package()))
        .collect();
    assert_eq!(
        files,
        [
            ("pike/api/v1/push.proto", "pike.api.v1"),
            ("pike/tunnel/v1/tunnel.proto", "pike.tunnel.v1"),
            ("pike/channel/v1/channel.proto", "pike.channel.v1"),
        ]
    );
    let messages =
        |i: usize| -> Vec<&str> { set.file[i].message_type.iter().map(|m| m.name()).collect() };
    assert!(messages(2).contains(&"Login") && messages(2).contains(&"RoomBatch"));
    assert!(messages(0).contains(&"PushBatch") && messages(0).contains(&"PushBatchResult"));
}

/// The descriptor set and the generated enums come from the same codegen run.
#[test]
fn file_descriptor_set_matches_generated_enums() {
    let set = descriptor::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET).unwrap();
    let mut checked = 0;
    for enum_type in set.file.iter().flat_map(|file| &file.enum_type) {
        for value in &enum_type.value {
            let number = match enum_type.name() {
                "ErrorCode" => tunnel::ErrorCode::from_str_name(value.name()).map(i32::from),
                "Compression" => tunnel::Compression::from_str_name(value.name()).map(i32::from),
                "RoomClass" => channel::RoomClass::from_str_name(value.name()).map(i32::from),
                other => panic!("enum {other} is not covered by this test"),
            };
            assert_eq!(number, Some(value.number()), "{}", value.name());
            checked += 1;
        }
    }
    assert_eq!(checked, 25 + 2 + 2);
}

/// Wire compatibility guard: error codes are sent as numbers, so a code must
/// never be renumbered or reused. Adding a code means adding it here.
#[test]
fn error_code_values_are_stable() {
    use tunnel::ErrorCode as E;

    let codes = [
        (E::Unspecified, 0),
        (E::Protocol, 1),
        (E::UnsupportedVersion, 2),
        (E::FrameTooLarge, 3),
        (E::UnknownFrameType, 4),
        (E::MalformedFrame, 5),
        (E::HandshakeTimeout, 6),
        (E::Decompression, 7),
        (E::IdleTimeout, 8),
        (E::GoingAway, 9),
        (E::SlowConsumer, 10),
        (E::UnknownApp, 11),
        (E::Internal, 12),
        (E::Overloaded, 13),
        (E::Replaced, 14),
        (E::AuthFailed, 100),
        (E::TokenExpired, 101),
        (E::Forbidden, 102),
        (E::NotLoggedIn, 103),
        (E::RateLimited, 104),
        (E::BackendUnavailable, 105),
        (E::UnknownRoom, 106),
        (E::InvalidArgument, 107),
        (E::AlreadyLoggedIn, 108),
        (E::LimitExceeded, 109),
    ];
    for (code, number) in codes {
        assert_eq!(code as i32, number, "{code:?}");
        assert_eq!(E::try_from(number), Ok(code));
    }
    let defined: Vec<i32> = (0..=14).chain(100..=109).collect();
    for number in -1..=200 {
        assert_eq!(
            E::try_from(number).is_ok(),
            defined.contains(&number),
            "code {number}"
        );
    }
    assert_eq!(E::default(), E::Unspecified);

    assert_eq!(tunnel::Compression::None as i32, 0);
    assert_eq!(tunnel::Compression::Lz4 as i32, 1);
    assert_eq!(channel::RoomClass::Droppable as i32, 0);
    assert_eq!(channel::RoomClass::Reliable as i32, 1);
}

#[test]
fn client_hello_roundtrip() {
    roundtrip(&tunnel::ClientHello {
        versions: vec![2, 1],
        app_id: "app".to_owned(),
        device_id: "device-1".to_owned(),
        sdk_name: "pike-rust".to_owned(),
        sdk_version: "0.1.0".to_owned(),
        resume_token: bytes::Bytes::from_static(b"resume"),
        compressions: vec![
            tunnel::Compression::Lz4.into(),
            tunnel::Compression::None.into(),
        ],
        max_frame_length: 1 << 20,
    });
    roundtrip(&tunnel::Close {
        code: tunnel::ErrorCode::GoingAway.into(),
        message: "draining".to_owned(),
        reconnect: Some(tunnel::ReconnectAdvice {
            min_delay_ms: 100,
            max_delay_ms: 2_000,
            endpoints: vec!["10.0.0.2:443".to_owned()],
        }),
    });
}

#[test]
fn downlink_payload_is_bytes_and_zero_copy() {
    let downlink = channel::Downlink {
        stream: 3,
        seq: 42,
        message_id: 7,
        priority: 1,
        expires_at_ms: 1_700_000_000_000,
        payload: bytes::Bytes::from_static(b"\x00hello\xff"),
    };
    roundtrip(&downlink);

    // Decoding from `Bytes` slices the payload out of the input buffer.
    let buffer = bytes::Bytes::from(downlink.encode_to_vec());
    let decoded = channel::Downlink::decode(buffer.clone()).unwrap();
    assert_eq!(decoded, downlink);
    let payload = decoded.payload.as_ptr() as usize;
    let start = buffer.as_ptr() as usize;
    assert!(
        (start..start + buffer.len()).contains(&payload),
        "payload was copied"
    );
}

#[test]
fn room_batch_roundtrip() {
    roundtrip(&channel::RoomBatch {
        room: "live-1".to_owned(),
        messages: vec![
            channel::RoomMessage {
                offset: 10,
                class: channel::RoomClass::Reliable.into(),
                priority: 5,
                payload: bytes::Bytes::from_static(b"lottery"),
            },
            channel::RoomMessage {
                offset: 11,
                class: channel::RoomClass::Droppable.into(),
                priority: 0,
                payload: bytes::Bytes::from_static(b"comment"),
            },
        ],
        missed: 2,
        next_offset: 12,
        stream: 1,
        pushed: false,
    });
}

#[test]
fn cross_package_enum_field() {
    let error = channel::Error {
        code: tunnel::ErrorCode::RateLimited.into(),
        message: "slow down".to_owned(),
        stream: Some(0),
        frame_type: 0x1A,
    };
    roundtrip(&error);
    assert_eq!(error.code(), tunnel::ErrorCode::RateLimited);

    // An unknown code survives a round trip; the accessor falls back to the default.
    let unknown = channel::UplinkAck {
        code: 999,
        ..Default::default()
    };
    roundtrip(&unknown);
    assert_eq!(unknown.code(), tunnel::ErrorCode::Unspecified);
    assert!(tunnel::ErrorCode::try_from(unknown.code).is_err());
}

#[test]
fn go_away_carries_tunnel_reconnect_advice() {
    roundtrip(&channel::GoAway {
        code: tunnel::ErrorCode::GoingAway.into(),
        message: "restart".to_owned(),
        reconnect: Some(tunnel::ReconnectAdvice {
            min_delay_ms: 0,
            max_delay_ms: 500,
            endpoints: Vec::new(),
        }),
    });
}

#[test]
fn only_refusals_of_the_client_itself_are_not_retryable() {
    use tunnel::ErrorCode as C;
    let final_codes = [
        C::UnsupportedVersion,
        C::UnknownApp,
        C::AuthFailed,
        C::TokenExpired,
        C::InvalidArgument,
        C::Replaced,
    ];
    for code in final_codes {
        assert!(!code.is_retryable(), "{code:?}");
    }
    for code in [
        C::Unspecified,
        C::HandshakeTimeout,
        C::Forbidden,
        C::IdleTimeout,
        C::GoingAway,
        C::SlowConsumer,
        C::Internal,
        C::Overloaded,
        C::RateLimited,
        C::BackendUnavailable,
    ] {
        assert!(code.is_retryable(), "{code:?}");
    }
}
