//! The packet layer: an 8-byte header (type, status, big-endian length,
//! SPID, packet id, window), messages made of packets up to one with EOM.

use super::TdsError;
use std::io::{self, Read};

/// Packet types.
pub mod kind {
    pub const SQL_BATCH: u8 = 0x01;
    pub const RPC: u8 = 0x03;
    /// Every server-to-client message.
    pub const REPLY: u8 = 0x04;
    pub const ATTENTION: u8 = 0x06;
    pub const BULK_LOAD: u8 = 0x07;
    pub const TRANSACTION_MANAGER: u8 = 0x0E;
    pub const LOGIN7: u8 = 0x10;
    pub const SSPI: u8 = 0x11;
    pub const PRELOGIN: u8 = 0x12;
    /// The first byte of a TLS record (a TDS 8 client starts with its
    /// ClientHello).
    pub const TLS_HANDSHAKE: u8 = 0x16;
}

/// Packet status bits.
pub mod status {
    /// The last packet of a message.
    pub const EOM: u8 = 0x01;
    /// The client abandoned the message (with EOM): discard it.
    pub const IGNORE: u8 = 0x02;
    pub const RESET_CONNECTION: u8 = 0x08;
    pub const RESET_CONNECTION_SKIP_TRAN: u8 = 0x10;
}

pub const HEADER_LEN: usize = 8;
/// The smallest packet size a session may negotiate.
pub const PACKET_MIN: usize = 512;
/// The largest packet size a session may negotiate.
pub const PACKET_MAX: usize = 32767;
/// The packet size before login completes, and the default after it.
pub const PACKET_DEFAULT: usize = 4096;
/// The most packets one client message may have.
pub const PACKETS_MAX: usize = 32768;
/// The most payload bytes of one client message after login (a SQL
/// batch): 16 MiB, as the control socket's frames.
pub const MESSAGE_BYTES_MAX: usize = 16 << 20;
/// The most payload bytes of PRELOGIN or LOGIN7 (LOGIN7's own limit is
/// 128 KiB - 1).
pub const LOGIN_BYTES_MAX: usize = 128 << 10;

/// A packet header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub status: u8,
    /// The whole packet's length, header included.
    pub length: u16,
    pub spid: u16,
    pub packet_id: u8,
}

impl Header {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Header {
        Header {
            kind: b[0],
            status: b[1],
            length: u16::from_be_bytes([b[2], b[3]]),
            spid: u16::from_be_bytes([b[4], b[5]]),
            packet_id: b[6],
        }
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let l = self.length.to_be_bytes();
        let s = self.spid.to_be_bytes();
        [
            self.kind,
            self.status,
            l[0],
            l[1],
            s[0],
            s[1],
            self.packet_id,
            0,
        ]
    }
}

/// A client message, reassembled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub kind: u8,
    /// The first packet's status (RESETCONNECTION is only meaningful there).
    pub status: u8,
    /// The client set IGNORE: the message is to be discarded (its payload
    /// is not kept).
    pub ignored: bool,
    pub payload: Vec<u8>,
}

/// How large a client message may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest packet, header included (the negotiated size).
    pub packet_max: usize,
    pub bytes_max: usize,
    pub packets_max: usize,
}

impl Limits {
    /// Before login: 4096-byte packets, 128 KiB messages.
    pub const LOGIN: Limits = Limits {
        packet_max: PACKET_DEFAULT,
        bytes_max: LOGIN_BYTES_MAX,
        packets_max: PACKETS_MAX,
    };

    /// After login, with the negotiated packet size.
    pub fn session(packet_size: usize) -> Limits {
        Limits {
            packet_max: packet_size.clamp(PACKET_MIN, PACKET_MAX),
            bytes_max: MESSAGE_BYTES_MAX,
            packets_max: PACKETS_MAX,
        }
    }
}

/// Reads one byte: `None` at the end of the stream. (A session waits for
/// a message's first byte without a deadline, then sets one for the
/// rest, see [`read_message_after`].)
pub fn read_byte<R: Read>(r: &mut R) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    loop {
        match r.read(&mut b) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(b[0])),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<(), TdsError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => TdsError::Truncated,
        _ => TdsError::Io(e),
    })
}

/// Reads one message: `None` if the stream ends before its first byte.
pub fn read_message<R: Read>(r: &mut R, limits: &Limits) -> Result<Option<Message>, TdsError> {
    match read_byte(r)? {
        Some(first) => read_message_after(r, first, limits).map(Some),
        None => Ok(None),
    }
}

/// Reads the rest of a message whose first byte was `first`. The payload
/// grows only as bytes arrive (a length field alone allocates at most one
/// packet).
pub fn read_message_after<R: Read>(
    r: &mut R,
    first: u8,
    limits: &Limits,
) -> Result<Message, TdsError> {
    let mut payload = Vec::new();
    let mut msg: Option<(u8, u8, bool)> = None;
    for n in 0.. {
        if n >= limits.packets_max {
            return Err(TdsError::TooManyPackets(limits.packets_max));
        }
        let mut h = [0u8; HEADER_LEN];
        if n == 0 {
            h[0] = first;
            read_full(r, &mut h[1..])?;
        } else {
            read_full(r, &mut h)?;
        }
        let head = Header::parse(&h);
        let length = usize::from(head.length);
        if !(HEADER_LEN..=limits.packet_max).contains(&length) {
            return Err(TdsError::PacketLength {
                length,
                max: limits.packet_max,
            });
        }
        let (kind, status, ignored) = *msg.get_or_insert((head.kind, head.status, false));
        if head.kind != kind {
            return Err(TdsError::MixedMessage {
                first: kind,
                got: head.kind,
            });
        }
        let body = length - HEADER_LEN;
        if payload.len() + body > limits.bytes_max {
            return Err(TdsError::MessageTooLarge(limits.bytes_max));
        }
        let at = payload.len();
        payload.resize(at + body, 0);
        read_full(r, &mut payload[at..])?;
        let ignored = ignored || head.status & status::IGNORE != 0;
        msg = Some((kind, status, ignored));
        if head.status & status::EOM != 0 {
            if ignored {
                payload = Vec::new();
            }
            return Ok(Message {
                kind,
                status,
                ignored,
                payload,
            });
        }
    }
    unreachable!("the packet loop returns")
}

/// `payload` as a message of packets of at most `packet_size` bytes
/// (header included), the last with EOM, each with `spid` and a packet id
/// counting from 1.
pub fn encode_message(kind: u8, payload: &[u8], packet_size: usize, spid: u16) -> Vec<u8> {
    encode_packets(kind, payload, packet_size, spid, 1, true).0
}

/// `payload` as packets of at most `packet_size` bytes (header included)
/// with packet ids counting from `first_id` (modulo 256), the last with
/// EOM when `eom` (a message may go out in parts: every part but the last
/// without EOM, so that a message produced while a statement runs reaches
/// the client at once). Also returns the next packet id. An empty payload
/// is one header-only packet with `eom`, none without.
pub fn encode_packets(
    kind: u8,
    payload: &[u8],
    packet_size: usize,
    spid: u16,
    first_id: u8,
    eom: bool,
) -> (Vec<u8>, u8) {
    let size = packet_size.clamp(PACKET_MIN, PACKET_MAX);
    let room = size - HEADER_LEN;
    let chunks: Vec<&[u8]> = match (payload.is_empty(), eom) {
        (true, true) => vec![&[][..]],
        (true, false) => Vec::new(),
        (false, _) => payload.chunks(room).collect(),
    };
    let mut out = Vec::with_capacity(payload.len() + chunks.len() * HEADER_LEN);
    let last = chunks.len().saturating_sub(1);
    let mut id = first_id;
    for (i, c) in chunks.iter().enumerate() {
        let h = Header {
            kind,
            status: if eom && i == last { status::EOM } else { 0 },
            // A chunk is at most PACKET_MAX - 8 bytes.
            length: u16::try_from(c.len() + HEADER_LEN).unwrap_or(u16::MAX),
            spid,
            packet_id: id,
        };
        id = id.wrapping_add(1);
        out.extend_from_slice(&h.encode());
        out.extend_from_slice(c);
    }
    (out, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, status: u8, body: &[u8]) -> Vec<u8> {
        let mut v = Header {
            kind,
            status,
            length: (body.len() + 8) as u16,
            spid: 0,
            packet_id: 1,
        }
        .encode()
        .to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            kind: 4,
            status: 1,
            length: 0x2c,
            spid: 51,
            packet_id: 1,
        };
        assert_eq!(h.encode(), [4, 1, 0, 0x2c, 0, 51, 1, 0]);
        assert_eq!(Header::parse(&h.encode()), h);
    }

    #[test]
    fn messages_reassemble_and_split() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let wire = encode_message(kind::SQL_BATCH, &payload, 512, 7);
        // 504 payload bytes per packet: 10 packets.
        assert_eq!(wire.len(), 5000 + 10 * 8);
        assert_eq!(wire[1], 0, "not the last packet");
        let m = read_message(&mut &wire[..], &Limits::session(512))
            .unwrap()
            .unwrap();
        assert_eq!(m.kind, kind::SQL_BATCH);
        assert_eq!(m.payload, payload);
        // An empty payload is one header-only packet with EOM.
        assert_eq!(
            encode_message(kind::REPLY, &[], 4096, 51),
            vec![4, 1, 0, 8, 0, 51, 1, 0]
        );
        // The end of the stream before a message: none.
        assert!(
            read_message(&mut &[][..], &Limits::LOGIN)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn bad_lengths_and_truncation_are_errors() {
        let lim = Limits::LOGIN;
        // Length below the header.
        let mut p = packet(1, 1, b"ab");
        p[3] = 7;
        assert!(matches!(
            read_message(&mut &p[..], &lim),
            Err(TdsError::PacketLength { length: 7, .. })
        ));
        // Length beyond the negotiated size.
        let mut p = packet(1, 1, b"ab");
        p[2] = 0x20;
        assert!(matches!(
            read_message(&mut &p[..], &lim),
            Err(TdsError::PacketLength { .. })
        ));
        // Cut in the header, and in the body.
        let p = packet(1, 1, b"abcdef");
        for cut in [3, 10] {
            assert!(matches!(
                read_message(&mut &p[..cut], &lim),
                Err(TdsError::Truncated)
            ));
        }
        // A type change inside a message.
        let mut p = packet(1, 0, b"ab");
        p.extend(packet(3, 1, b"cd"));
        assert!(matches!(
            read_message(&mut &p[..], &lim),
            Err(TdsError::MixedMessage { first: 1, got: 3 })
        ));
    }

    #[test]
    fn message_bounds_hold() {
        let lim = Limits {
            packet_max: 512,
            bytes_max: 10,
            packets_max: 3,
        };
        let mut p = packet(1, 0, b"123456");
        p.extend(packet(1, 1, b"123456"));
        assert!(matches!(
            read_message(&mut &p[..], &lim),
            Err(TdsError::MessageTooLarge(10))
        ));
        // Header-only packets count toward the packet bound.
        let p: Vec<u8> = (0..4).flat_map(|_| packet(1, 0, b"")).collect();
        assert!(matches!(
            read_message(&mut &p[..], &lim),
            Err(TdsError::TooManyPackets(3))
        ));
    }

    #[test]
    fn ignore_discards_the_message() {
        let mut p = packet(1, 0, b"half a batch");
        p.extend(packet(1, status::EOM | status::IGNORE, b""));
        let m = read_message(&mut &p[..], &Limits::LOGIN).unwrap().unwrap();
        assert!(m.ignored);
        assert!(m.payload.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let n = (x % 64) as usize;
            let bytes: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = read_message(&mut &bytes[..], &Limits::LOGIN);
        }
    }
}
