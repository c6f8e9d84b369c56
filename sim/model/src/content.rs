//! Virtual data: stream content as a function of (origin, offset), so a
//! multi-gigabyte backup costs a few words of memory and a restore can still
//! be checked byte for byte.
//!
//! A [`Content`] is a list of [`Extent`]s. `Extent::Stream { origin, offset,
//! len }` stands for bytes `offset..offset+len` of the stream named `origin`;
//! `Extent::Garbage` stands for bytes that belong to no stream (what a client
//! that corrupts data produces). Two contents are byte-identical exactly when
//! their coalesced extent lists are equal, because [`fill`] is injective per
//! 512-byte block: every block begins with its origin and offset.
//!
//! [`fill`] materialises real bytes (used where real buffers exist: the
//! stand-in library) and [`parse`] recognises them again.

use crate::media::{HEADER_BYTES, MAGIC, MediaHeader};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The unit in which materialised data is self-describing.
pub const TAG_BLOCK: u64 = 512;

/// A run of stream bytes, of a media header, or bytes of no stream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Extent {
    Stream {
        origin: u64,
        offset: u64,
        len: u64,
    },
    Garbage {
        len: u64,
    },
    /// Bytes `skip..skip+len` of the [`HEADER_BYTES`] region holding
    /// `header` (see `media`).
    Header {
        header: Arc<MediaHeader>,
        skip: u64,
        len: u64,
    },
}

impl Extent {
    pub fn len(&self) -> u64 {
        match *self {
            Extent::Stream { len, .. } | Extent::Garbage { len } | Extent::Header { len, .. } => {
                len
            }
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Joins `next` onto `self` when the two are contiguous.
    fn join(&mut self, next: &Extent) -> bool {
        match (self, next) {
            (
                Extent::Stream {
                    origin,
                    offset,
                    len,
                },
                Extent::Stream {
                    origin: o2,
                    offset: off2,
                    len: l2,
                },
            ) if *origin == *o2 && *offset + *len == *off2 => {
                *len += l2;
                true
            }
            (Extent::Garbage { len }, Extent::Garbage { len: l2 }) => {
                *len += l2;
                true
            }
            (
                Extent::Header { header, skip, len },
                Extent::Header {
                    header: h2,
                    skip: s2,
                    len: l2,
                },
            ) if *skip + *len == *s2 && (Arc::ptr_eq(header, h2) || header == h2) => {
                *len += l2;
                true
            }
            _ => false,
        }
    }
    fn sub(&self, from: u64, take: u64) -> Extent {
        match self {
            Extent::Stream { origin, offset, .. } => Extent::Stream {
                origin: *origin,
                offset: offset + from,
                len: take,
            },
            Extent::Garbage { .. } => Extent::Garbage { len: take },
            Extent::Header { header, skip, .. } => Extent::Header {
                header: header.clone(),
                skip: skip + from,
                len: take,
            },
        }
    }
}

/// Coalesced content. Most buffers hold one extent, kept inline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<Extent>", from = "Vec<Extent>")]
pub enum Content {
    #[default]
    Empty,
    One(Extent),
    Many(Vec<Extent>),
}

impl From<Content> for Vec<Extent> {
    fn from(c: Content) -> Vec<Extent> {
        c.extents().to_vec()
    }
}

impl From<Vec<Extent>> for Content {
    fn from(v: Vec<Extent>) -> Content {
        let mut c = Content::Empty;
        for e in v {
            c.push(e);
        }
        c
    }
}

impl Content {
    /// Bytes `offset..offset+len` of stream `origin`.
    pub fn stream(origin: u64, offset: u64, len: u64) -> Content {
        if len == 0 {
            Content::Empty
        } else {
            Content::One(Extent::Stream {
                origin,
                offset,
                len,
            })
        }
    }

    /// The whole media header region holding `header`.
    pub fn header(header: Arc<MediaHeader>) -> Content {
        Content::One(Extent::Header {
            header,
            skip: 0,
            len: HEADER_BYTES,
        })
    }

    /// The header, when this is exactly one whole media header region.
    pub fn as_header(&self) -> Option<&Arc<MediaHeader>> {
        match self {
            Content::One(Extent::Header {
                header,
                skip: 0,
                len,
            }) if *len == HEADER_BYTES => Some(header),
            _ => None,
        }
    }

    pub fn extents(&self) -> &[Extent] {
        match self {
            Content::Empty => &[],
            Content::One(e) => std::slice::from_ref(e),
            Content::Many(v) => v,
        }
    }

    pub fn len(&self) -> u64 {
        self.extents().iter().map(Extent::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one extent, coalescing with the last.
    pub fn push(&mut self, e: Extent) {
        if e.is_empty() {
            return;
        }
        match self {
            Content::Empty => *self = Content::One(e),
            Content::One(last) => {
                if !last.join(&e) {
                    *self = Content::Many(vec![last.clone(), e]);
                }
            }
            Content::Many(v) => {
                if let Some(last) = v.last_mut()
                    && last.join(&e)
                {
                    return;
                }
                v.push(e);
            }
        }
    }

    pub fn append(&mut self, other: &Content) {
        for e in other.extents() {
            self.push(e.clone());
        }
    }

    /// Bytes `skip..skip+take` of this content (clipped to its length).
    pub fn slice(&self, skip: u64, take: u64) -> Content {
        let mut out = Content::Empty;
        let mut pos = 0u64;
        let end = skip.saturating_add(take);
        for e in self.extents() {
            let (s, l) = (pos, e.len());
            pos += l;
            if pos <= skip {
                continue;
            }
            if s >= end {
                break;
            }
            let a = skip.max(s) - s;
            let b = end.min(s + l) - s;
            out.push(e.sub(a, b - a));
        }
        out
    }

    /// Stores `data` at byte `pos`, as a disk-like device does with a
    /// positioned Write (clause `disk.positioned-io`): the bytes there are
    /// replaced, the content grows if the write goes past its end, and a
    /// gap between the old end and `pos` holds garbage (what a file reads
    /// as where nothing was written).
    pub fn write_at(&mut self, pos: u64, data: &Content) {
        let len = self.len();
        let end = pos.saturating_add(data.len());
        let mut out = self.slice(0, pos);
        if pos > len {
            out.push(Extent::Garbage { len: pos - len });
        }
        out.append(data);
        if end < len {
            out.append(&self.slice(end, len - end));
        }
        *self = out;
    }

    /// Cuts the content at `len` bytes (end-of-file set there; clause
    /// `flush.disk-sets-eof`). Longer `len` changes nothing.
    pub fn truncate(&mut self, len: u64) {
        if len < self.len() {
            *self = self.slice(0, len);
        }
    }

    /// Whether this is exactly bytes `offset..offset+len` of `origin`.
    pub fn is_stream(&self, origin: u64, offset: u64, len: u64) -> bool {
        if len == 0 {
            return self.is_empty();
        }
        *self == Content::stream(origin, offset, len)
    }

    /// Length of the longest prefix that matches stream `origin` from `offset`.
    pub fn matching_prefix(&self, origin: u64, offset: u64) -> u64 {
        match self.extents().first() {
            Some(Extent::Stream {
                origin: o,
                offset: off,
                len,
            }) if *o == origin && *off == offset => *len,
            _ => 0,
        }
    }
}

fn mix(mut z: u64) -> u64 {
    // SplitMix64 finaliser.
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stream origin derived from several numbers (database seed, family index,
/// ...), so distinct families never share bytes.
pub fn origin_of(parts: &[u64]) -> u64 {
    parts
        .iter()
        .fold(0x5644_4953_494D_0001, |acc, p| mix(acc ^ mix(*p)))
}

/// Words per tagged block.
const BLOCK_WORDS: usize = (TAG_BLOCK / 8) as usize;

/// The per-stream template of a block's body: word `k` (2..64) of every
/// block of stream `origin` is `template[k] ^ block_key(origin, block)`.
fn template(origin: u64) -> [u64; BLOCK_WORDS] {
    let mut t = [0u64; BLOCK_WORDS];
    for (k, w) in t.iter_mut().enumerate().skip(2) {
        *w = mix(origin ^ mix(k as u64));
    }
    t
}

/// The per-block key mixed into the template.
fn block_key(origin: u64, block: u64) -> u64 {
    mix(block ^ origin.rotate_left(29))
}

/// The byte at `offset` of stream `origin`. Each 512-byte block begins with
/// the origin (8 bytes, little-endian) and the block's offset (8 bytes); the
/// rest is pseudo-random: a per-stream template XOR a per-block key, so a
/// whole block is produced at close to memory speed.
pub fn byte_at(origin: u64, offset: u64) -> u8 {
    let block = offset - offset % TAG_BLOCK;
    let i = offset % TAG_BLOCK;
    match i {
        0..8 => origin.to_le_bytes()[i as usize],
        8..16 => block.to_le_bytes()[(i - 8) as usize],
        _ => {
            let word = mix(origin ^ mix(i / 8)) ^ block_key(origin, block);
            word.to_le_bytes()[(i % 8) as usize]
        }
    }
}

/// Writes bytes `offset..offset+buf.len()` of stream `origin` into `buf`.
pub fn fill(origin: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = offset;
    let mut i = 0usize;
    let mut t: Option<[u64; BLOCK_WORDS]> = None;
    while i < buf.len() {
        let in_block = pos % TAG_BLOCK;
        if in_block == 0 && buf.len() - i >= TAG_BLOCK as usize {
            // A whole block: the tag, then the template XOR the block's key.
            let t = t.get_or_insert_with(|| template(origin));
            let key = block_key(origin, pos);
            let out = &mut buf[i..i + TAG_BLOCK as usize];
            out[0..8].copy_from_slice(&origin.to_le_bytes());
            out[8..16].copy_from_slice(&pos.to_le_bytes());
            for (w, chunk) in t[2..].iter().zip(out[16..].chunks_exact_mut(8)) {
                chunk.copy_from_slice(&(w ^ key).to_le_bytes());
            }
            i += TAG_BLOCK as usize;
            pos += TAG_BLOCK;
        } else {
            buf[i] = byte_at(origin, pos);
            i += 1;
            pos += 1;
        }
    }
}

/// Materialises `content` into `buf` (which must be at least as long).
/// Garbage extents become zero bytes.
pub fn materialize(content: &Content, buf: &mut [u8]) {
    let mut at = 0usize;
    for e in content.extents() {
        let l = e.len() as usize;
        match e {
            Extent::Stream { origin, offset, .. } => fill(*origin, *offset, &mut buf[at..at + l]),
            Extent::Garbage { .. } => buf[at..at + l].fill(0),
            Extent::Header { header, skip, .. } => {
                fill_header(header, *skip, &mut buf[at..at + l]);
            }
        }
        at += l;
    }
}

/// Writes bytes `skip..skip+buf.len()` of `header`'s region into `buf`.
fn fill_header(header: &MediaHeader, skip: u64, buf: &mut [u8]) {
    buf.fill(0);
    let enc = header.encode();
    let skip = usize::try_from(skip).unwrap_or(usize::MAX);
    if skip < enc.len() {
        let n = (enc.len() - skip).min(buf.len());
        buf[..n].copy_from_slice(&enc[skip..skip + n]);
    }
}

/// The media header (and how many bytes of its region `bytes` holds) when
/// `bytes` begins with one.
fn header_at(bytes: &[u8]) -> Option<(Arc<MediaHeader>, usize)> {
    if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let h = MediaHeader::decode(bytes).ok()?;
    Some((Arc::new(h), bytes.len().min(HEADER_BYTES as usize)))
}

/// Recognises materialised bytes as content, given the stream position the
/// first byte is expected to have (`hint`). Bytes that are not exactly the
/// hinted stream become `Garbage`: parsing never invents a match.
pub fn parse(bytes: &[u8], hint_origin: u64, hint_offset: u64) -> Content {
    if hint_offset == 0 && header_at(bytes).is_some() {
        return parse_tagged(bytes);
    }
    let mut out = Content::Empty;
    let mut scratch = [0u8; TAG_BLOCK as usize];
    let mut i = 0usize;
    while i < bytes.len() {
        let pos = hint_offset + i as u64;
        let to_block_end = (TAG_BLOCK - pos % TAG_BLOCK) as usize;
        let n = to_block_end.min(bytes.len() - i);
        fill(hint_origin, pos, &mut scratch[..n]);
        if scratch[..n] == bytes[i..i + n] {
            out.push(Extent::Stream {
                origin: hint_origin,
                offset: pos,
                len: n as u64,
            });
        } else {
            out.push(Extent::Garbage { len: n as u64 });
        }
        i += n;
    }
    out
}

/// Recognises materialised bytes without a hint: each 512-byte chunk of
/// `bytes` (counted from its first byte) is matched first as the
/// continuation of the previous chunk's stream, then against its own tag
/// (origin and offset in its first 16 bytes, offset a multiple of
/// [`TAG_BLOCK`]). A chunk that matches neither becomes `Garbage`, as does a
/// leading chunk too short to carry a tag: parsing never invents a match.
/// This is how a real buffer (the stand-in library) is read back when the
/// reader does not know which stream it should hold.
pub fn parse_tagged(bytes: &[u8]) -> Content {
    let mut out = Content::Empty;
    let mut scratch = [0u8; TAG_BLOCK as usize];
    let mut next: Option<(u64, u64)> = None;
    let mut i = 0usize;
    while i < bytes.len() {
        // A media header (see `media`): its whole region, or what of it
        // `bytes` holds; the family's data stream continues after it.
        if let Some((header, n)) = header_at(&bytes[i..]) {
            next = (n as u64 == HEADER_BYTES).then_some((header.origin, HEADER_BYTES));
            out.push(Extent::Header {
                header,
                skip: 0,
                len: n as u64,
            });
            i += n;
            continue;
        }
        let chunk = &bytes[i..bytes.len().min(i + TAG_BLOCK as usize)];
        let n = chunk.len();
        i += n;
        let mut candidates: [Option<(u64, u64)>; 2] = [next, None];
        if n >= 16 {
            let origin = u64::from_le_bytes(chunk[0..8].try_into().unwrap_or_default());
            let offset = u64::from_le_bytes(chunk[8..16].try_into().unwrap_or_default());
            if offset.is_multiple_of(TAG_BLOCK) && Some((origin, offset)) != next {
                candidates[1] = Some((origin, offset));
            }
        }
        let mut hit = None;
        for (origin, offset) in candidates.into_iter().flatten() {
            fill(origin, offset, &mut scratch[..n]);
            if scratch[..n] == *chunk {
                hit = Some((origin, offset));
                break;
            }
        }
        match hit {
            Some((origin, offset)) => {
                out.push(Extent::Stream {
                    origin,
                    offset,
                    len: n as u64,
                });
                next = Some((origin, offset + n as u64));
            }
            None => {
                out.push(Extent::Garbage { len: n as u64 });
                next = None;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_coalesces_and_slices() {
        let mut c = Content::stream(7, 0, 100);
        c.push(Extent::Stream {
            origin: 7,
            offset: 100,
            len: 50,
        });
        assert_eq!(c, Content::stream(7, 0, 150));
        c.push(Extent::Garbage { len: 3 });
        c.push(Extent::Stream {
            origin: 7,
            offset: 153,
            len: 10,
        });
        assert_eq!(c.len(), 163);
        assert_eq!(c.slice(140, 20).extents().len(), 3);
        assert!(c.slice(10, 20).is_stream(7, 10, 20));
        assert_eq!(c.slice(160, 100).len(), 3);
        assert_eq!(c.matching_prefix(7, 0), 150);
    }

    /// Clause `disk.positioned-io`: a positioned write replaces the bytes
    /// at its position, fills a gap with garbage and grows the content;
    /// writing the parts in any order gives the sequential result; clause
    /// `flush.disk-sets-eof`: truncation cuts what lay beyond.
    #[test]
    fn write_at_and_truncate() {
        let mut c = Content::Empty;
        c.write_at(100, &Content::stream(7, 100, 50));
        assert_eq!(c.len(), 150);
        assert_eq!(c.extents()[0], Extent::Garbage { len: 100 });
        c.write_at(0, &Content::stream(7, 0, 100));
        assert_eq!(c, Content::stream(7, 0, 150));
        c.write_at(20, &Content::stream(9, 0, 10));
        assert_eq!(c.len(), 150);
        assert!(c.slice(20, 10).is_stream(9, 0, 10));
        assert!(c.slice(30, 120).is_stream(7, 30, 120));
        c.write_at(20, &Content::stream(7, 20, 10));
        assert_eq!(c, Content::stream(7, 0, 150));
        c.truncate(400);
        assert_eq!(c.len(), 150);
        c.truncate(60);
        assert_eq!(c, Content::stream(7, 0, 60));
    }

    #[test]
    fn materialize_then_parse_is_identity() {
        let c = Content::stream(42, 1000, 3000);
        let mut buf = vec![0u8; 3000];
        materialize(&c, &mut buf);
        assert_eq!(parse(&buf, 42, 1000), c);
        for (k, b) in buf.iter().enumerate() {
            assert_eq!(*b, byte_at(42, 1000 + k as u64));
        }
        buf[1500] ^= 1;
        let p = parse(&buf, 42, 1000);
        assert_ne!(p, c);
        assert_eq!(p.len(), 3000);
        assert!(
            p.extents()
                .iter()
                .any(|e| matches!(e, Extent::Garbage { .. }))
        );
    }

    #[test]
    fn parse_tagged_reads_each_blocks_own_tag() {
        let mut c = Content::stream(42, 1024, 1536);
        c.append(&Content::stream(7, 0, 1000));
        let mut buf = vec![0u8; c.len() as usize];
        materialize(&c, &mut buf);
        assert_eq!(parse_tagged(&buf), c);
        buf[600] ^= 1;
        let p = parse_tagged(&buf);
        assert_eq!(p.len(), c.len());
        assert_eq!(p.extents()[1], Extent::Garbage { len: 512 });
        assert!(
            parse_tagged(&[0u8; 700])
                .extents()
                .iter()
                .all(|e| matches!(e, Extent::Garbage { .. }))
        );
        assert_eq!(parse_tagged(&[]), Content::Empty);
    }

    #[test]
    fn origins_differ() {
        assert_ne!(origin_of(&[1, 0]), origin_of(&[1, 1]));
        assert_ne!(origin_of(&[1, 0]), origin_of(&[0, 1]));
    }

    #[test]
    fn media_header_materialises_and_parses_back() {
        let h = Arc::new(crate::media::tests::sample());
        let mut c = Content::header(h.clone());
        c.append(&Content::stream(h.origin, HEADER_BYTES, 4096));
        let mut buf = vec![0u8; c.len() as usize];
        materialize(&c, &mut buf);
        assert_eq!(parse_tagged(&buf), c);
        assert_eq!(c.slice(0, HEADER_BYTES).as_header(), Some(&h));
        // Halves of the region join back into the whole.
        let mut halves = c.slice(0, 1000);
        halves.append(&c.slice(1000, HEADER_BYTES - 1000));
        assert_eq!(halves.as_header(), Some(&h));
        let mut part = vec![0u8; 1000];
        materialize(&c.slice(0, 1000), &mut part);
        assert_eq!(part, buf[..1000]);
        // A damaged header is garbage, never a header.
        buf[25] ^= 0x40;
        assert_eq!(
            parse_tagged(&buf).extents()[0],
            Extent::Garbage { len: HEADER_BYTES }
        );
    }
}
