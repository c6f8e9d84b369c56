//! Property: virtual data is self-describing. Bytes materialised by
//! `vdi_model::content::fill(origin, offset, buf)` parse back
//! (`data::parse(bytes, origin, offset)`) to exactly
//! `Content::stream(origin, offset, len)`, and flipping any one byte makes
//! the parse differ from it (parsing never invents a match).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vdi_model::content::{self as data, Content};

/// Streams are far shorter than this; it keeps `offset + len` in range.
const OFFSET_MAX: u64 = 1 << 48;
/// Long enough for several 512-byte tagged blocks and both partial ends.
const LEN_MAX: usize = 4096;

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = bytes.get(at..) {
        let n = s.len().min(8);
        w[..n].copy_from_slice(&s[..n]);
    }
    u64::from_le_bytes(w)
}

fuzz_target!(|bytes: &[u8]| {
    let origin = u64_at(bytes, 0);
    let offset = u64_at(bytes, 8) % OFFSET_MAX;
    let len = (u64_at(bytes, 16) % (LEN_MAX as u64 + 1)) as usize;
    let flip_at = u64_at(bytes, 24) as usize;
    let mask = (u64_at(bytes, 32) as u8).max(1);

    let mut buf = vec![0u8; len];
    data::fill(origin, offset, &mut buf);
    let want = Content::stream(origin, offset, len as u64);
    assert_eq!(
        data::parse(&buf, origin, offset),
        want,
        "fill({origin:#x}, {offset}, {len} bytes) does not parse back"
    );
    if len > 0 {
        let i = flip_at % len;
        buf[i] ^= mask;
        assert_ne!(
            data::parse(&buf, origin, offset),
            want,
            "fill({origin:#x}, {offset}, {len} bytes) with byte {i} ^= {mask:#x} still parses as the stream"
        );
    }
});
