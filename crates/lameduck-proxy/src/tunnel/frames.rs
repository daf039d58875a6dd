//! Where WebSocket frames begin and end in the bytes an app sends (RFC 6455 §5.2), so the proxy
//! can add a close frame of its own without cutting one of the app's in half.

/// A close frame from the server side (unmasked) with status 1001, Going Away, and a reason.
pub(super) const GOING_AWAY: [u8; 4 + REASON.len()] = going_away();

const REASON: &[u8] = b"server stopping";

const fn going_away() -> [u8; 4 + REASON.len()] {
    let mut frame = [0; 4 + REASON.len()];
    frame[0] = 0x80 | OPCODE_CLOSE; // FIN + close
    frame[1] = (2 + REASON.len()) as u8; // unmasked; status code + reason, under 126
    frame[2] = (1001u16 >> 8) as u8;
    frame[3] = (1001u16 & 0xff) as u8;
    let mut i = 0;
    while i < REASON.len() {
        frame[4 + i] = REASON[i];
        i += 1;
    }
    frame
}

const OPCODE_CLOSE: u8 = 0x8;
/// The longest frame header: 2 bytes, 8 of extended length, 4 of masking key.
const MAX_HEADER: usize = 14;

/// Follows the frames in one direction of a WebSocket, fed the bytes in order.
///
/// `pub(crate)` (not `pub(super)`) so the fuzz entry points (feature `fuzzing`) can drive it.
#[derive(Debug)]
pub(crate) struct FrameTracker {
    header: [u8; MAX_HEADER],
    /// Header bytes seen of the frame being read (0 between frames).
    have: usize,
    /// Payload bytes still to come of the current frame.
    remaining: u64,
    close_sent: bool,
}

impl Default for FrameTracker {
    fn default() -> Self {
        Self {
            header: [0; MAX_HEADER],
            have: 0,
            remaining: 0,
            close_sent: false,
        }
    }
}

impl FrameTracker {
    /// Follows the next bytes of the stream.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip =
                    usize::try_from(self.remaining).map_or(bytes.len(), |r| r.min(bytes.len()));
                self.remaining -= skip as u64;
                bytes = &bytes[skip..];
                continue;
            }
            self.header[self.have] = bytes[0];
            self.have += 1;
            bytes = &bytes[1..];
            if let Some(payload) = self.header_complete() {
                if self.header[0] & 0x0f == OPCODE_CLOSE {
                    self.close_sent = true;
                }
                self.remaining = payload;
                self.have = 0;
            }
        }
    }

    /// The payload length once the header in `self.header[..self.have]` is whole.
    fn header_complete(&self) -> Option<u64> {
        if self.have < 2 {
            return None;
        }
        let short = self.header[1] & 0x7f;
        let masked = self.header[1] & 0x80 != 0;
        let extended = match short {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let length = 2 + extended + if masked { 4 } else { 0 };
        if self.have < length {
            return None;
        }
        let payload = match extended {
            0 => u64::from(short),
            _ => self.header[2..2 + extended]
                .iter()
                .fold(0, |acc, &b| (acc << 8) | u64::from(b)),
        };
        Some(payload)
    }

    /// Whether everything fed so far ends with a whole frame.
    pub(crate) fn at_boundary(&self) -> bool {
        self.have == 0 && self.remaining == 0
    }

    /// Whether a close frame went by.
    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(opcode: u8, payload: usize, masked: bool) -> Vec<u8> {
        let mut bytes = vec![0x80 | opcode];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload {
            0..=125 => bytes.push(mask_bit | payload as u8),
            126..=0xffff => {
                bytes.push(mask_bit | 126);
                bytes.extend_from_slice(&(payload as u16).to_be_bytes());
            }
            _ => {
                bytes.push(mask_bit | 127);
                bytes.extend_from_slice(&(payload as u64).to_be_bytes());
            }
        }
        if masked {
            bytes.extend_from_slice(&[1, 2, 3, 4]);
        }
        bytes.extend(std::iter::repeat_n(0x55, payload));
        bytes
    }

    #[test]
    fn boundaries_are_found_whatever_the_chunking() {
        let mut stream = frame(0x1, 5, false);
        stream.extend(frame(0x2, 300, false));
        stream.extend(frame(0x2, 70_000, true));
        stream.extend(frame(0x9, 0, false));
        let ends = [7, 7 + 304, 7 + 304 + 70_014, stream.len()];
        for chunk in [1, 2, 3, 13, 1000, stream.len()] {
            let mut tracker = FrameTracker::default();
            let mut fed = 0;
            for piece in stream.chunks(chunk) {
                tracker.feed(piece);
                fed += piece.len();
                assert_eq!(
                    tracker.at_boundary(),
                    ends.contains(&fed),
                    "chunk {chunk}, after {fed} bytes"
                );
            }
            assert!(!tracker.close_sent());
        }
    }

    #[test]
    fn a_close_frame_is_noticed() {
        let mut tracker = FrameTracker::default();
        tracker.feed(&frame(0x1, 3, false));
        assert!(!tracker.close_sent());
        tracker.feed(&frame(OPCODE_CLOSE, 2, false));
        assert!(tracker.close_sent());
        assert!(tracker.at_boundary());
    }

    #[test]
    fn the_going_away_frame_is_one_whole_close_frame() {
        let mut tracker = FrameTracker::default();
        tracker.feed(&GOING_AWAY);
        assert!(tracker.close_sent());
        assert!(tracker.at_boundary());
        assert_eq!(&GOING_AWAY[2..4], &1001u16.to_be_bytes());
        assert_eq!(&GOING_AWAY[4..], b"server stopping");
    }
}
