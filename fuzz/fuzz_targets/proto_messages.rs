//! Decodes arbitrary bytes as every application message type (the frame
//! type picks which), the way the channel machines do with every frame
//! they receive. Decoding may fail but never panic; what decodes must
//! encode again and decode to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pike_channel::Message;
use pike_channel::tntunnel::{Frame, FrameType};

fuzz_target!(|input: (u8, Vec<u8>)| {
    let (ty, body) = input;
    let Ok(ty) = FrameType::try_from(FrameType::APP_FIRST + ty % 0x30) else {
        return;
    };
    let Ok(message) = Message::decode(&Frame::new(ty, body)) else {
        return;
    };
    let again = Message::decode(&message.to_frame()).expect("an encoded message decodes");
    assert_eq!(again, message);
});
