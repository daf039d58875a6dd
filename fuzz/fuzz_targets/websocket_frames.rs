//! The WebSocket frame follower of upgraded connections (where the proxy may put its own close
//! frame), against a model that walks the whole stream at once.
//!
//! Input: one byte giving the read length (1 to 64), then the bytes the app sends. Checked
//! after every read: the follower is at a frame boundary exactly where the model says a frame
//! ends, and has seen a close frame exactly when the model has seen a whole close header.

#![no_main]

use lameduck_proxy::fuzzing::FrameFollower;
use libfuzzer_sys::fuzz_target;

/// Where each frame's header ends and its payload ends (saturating), and its opcode.
struct Frame {
    header_end: usize,
    end: u64,
    opcode: u8,
}

/// The frames of `stream` whose headers it holds whole (RFC 6455 §5.2), in order.
fn frames(stream: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut at: usize = 0;
    // Bounded: each turn moves `at` past at least a 2-byte header, or ends.
    while let (Some(&first), Some(&second)) = (stream.get(at), stream.get(at + 1)) {
        let extended = match second & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if second & 0x80 != 0 { 4 } else { 0 };
        let header_end = at + 2 + extended + mask;
        if header_end > stream.len() {
            break;
        }
        let payload = match extended {
            0 => u64::from(second & 0x7f),
            _ => stream[at + 2..at + 2 + extended]
                .iter()
                .fold(0, |acc, &b| (acc << 8) | u64::from(b)),
        };
        let end = (header_end as u64).saturating_add(payload);
        frames.push(Frame {
            header_end,
            end,
            opcode: first & 0x0f,
        });
        if end > stream.len() as u64 {
            break;
        }
        at = end as usize;
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let [read, stream @ ..] = data else {
        return;
    };
    let read = usize::from(read % 64) + 1;
    let model = frames(stream);
    let mut follower = FrameFollower::default();
    let mut fed = 0;
    for piece in stream.chunks(read) {
        follower.feed(piece);
        fed += piece.len();
        let boundary = match model.iter().rfind(|f| f.header_end <= fed) {
            // Past the last header seen: at a boundary when its payload ends just here and no
            // byte of the next header came yet.
            Some(last) => last.end == fed as u64,
            None => fed == 0,
        };
        assert_eq!(follower.at_boundary(), boundary, "after {fed} bytes");
        let closed = model.iter().any(|f| f.header_end <= fed && f.opcode == 0x8);
        assert_eq!(follower.close_sent(), closed, "after {fed} bytes");
    }
});
