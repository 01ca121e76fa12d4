//! The wire codec (`wecare_proto::codec`) on any frame the other side may
//! send: no panic, every span it returns lies inside the frame, and an event
//! it decodes encodes back to a frame that decodes to the same event. Run:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run codec`.
#![no_main]

use wecare_proto::codec::engine::{self, EnginePacket};
use wecare_proto::codec::packet::{self, PacketKind};

fn socketio(msg: &str) {
    let Ok(p) = packet::decode(msg) else { return };
    match p.kind {
        PacketKind::Event => {
            let Ok(args) = packet::event_args(p.payload) else { return };
            let data = args.data.map(|span| &p.payload[span]).unwrap_or("null");
            // Re-encoded, it decodes to the same event.
            let frame = packet::encode_event(p.namespace, p.ack_id, &args.name, data);
            let again = engine::decode(&frame).expect("an encoded event is an engine.io message");
            let EnginePacket::Message(inner) = again else { panic!("not a message: {frame}") };
            let q = packet::decode(inner).expect("an encoded event decodes");
            assert_eq!((q.kind, q.namespace, q.ack_id), (PacketKind::Event, p.namespace, p.ack_id), "{frame}");
            let back = packet::event_args(q.payload).expect("its args decode");
            assert_eq!(back.name, args.name, "{frame}");
        }
        PacketKind::Ack => {
            let _ = packet::first_ack_arg(p.payload);
        }
        _ => {}
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(frame) = std::str::from_utf8(data) else { return };
    match engine::decode(frame) {
        Ok(EnginePacket::Message(msg)) => socketio(msg),
        Ok(EnginePacket::Ping(payload)) => {
            let _ = engine::pong(payload);
        }
        _ => socketio(frame),
    }
});
