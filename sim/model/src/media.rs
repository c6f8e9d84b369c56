//! Self-describing media: the header every media family begins with.
//!
//! A BACKUP's first write on each device is the family's media header, a
//! 64 KiB region ([`HEADER_BYTES`], a multiple of every BLOCKSIZE and no
//! larger than the smallest MAXTRANSFERSIZE, so it is always exactly one
//! transfer); the family's data follows at media position 64 KiB. A
//! RESTORE reads the header of each device first (clause `media.header`)
//! and learns from it, not from the server's memory, which backup set,
//! database, family and LSNs the media hold: any backup made by any server
//! restores anywhere. The byte format is documented in `docs/MEDIA.md`.
//!
//! Layout of the region (little-endian): the magic `VDISIMMF` (8 bytes),
//! the format version (u16), a reserved u16 (0), the payload length (u32),
//! the CRC-32 (IEEE) of the payload (u32), the payload (fixed fields, then
//! the database and server names, each a u16 length and UTF-8), then zero
//! bytes to the end of the region.

use serde::{Deserialize, Serialize};
use std::fmt;
use thiserror::Error;

/// Bytes of the media header region at the start of every family.
pub const HEADER_BYTES: u64 = 65536;
/// The first bytes of a media header.
pub const MAGIC: [u8; 8] = *b"VDISIMMF";
/// The header format this build writes and reads.
pub const VERSION: u16 = 1;
/// Bytes before the payload: magic, version, reserved, length, CRC.
const PREFIX: usize = 20;
/// Longest name (database, server) a header carries, in UTF-8 bytes: a
/// sysname is at most 128 characters (512 bytes); longer names are cut at a
/// character boundary when written.
pub const NAME_BYTES_MAX: usize = 1024;

/// A backup set's identity (msdb `backup_set_uuid`), shown as a GUID.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub u128);

impl fmt::Display for SetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0.to_be_bytes();
        let hex =
            |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02X}")).collect::<String>();
        write!(
            f,
            "{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        )
    }
}

impl std::str::FromStr for SetId {
    type Err = String;
    fn from_str(s: &str) -> Result<SetId, String> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        if hex.len() != 32 {
            return Err(format!("backup set id {s:?}: expected 32 hex digits"));
        }
        u128::from_str_radix(&hex, 16)
            .map(SetId)
            .map_err(|e| format!("backup set id {s:?}: {e}"))
    }
}

impl Serialize for SetId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SetId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SetId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a backup is (msdb `backupset.type`: D, I, L).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupType {
    #[default]
    Full,
    Differential,
    Log,
}

impl BackupType {
    /// msdb's one-letter code.
    pub fn code(self) -> char {
        match self {
            BackupType::Full => 'D',
            BackupType::Differential => 'I',
            BackupType::Log => 'L',
        }
    }
    fn byte(self) -> u8 {
        match self {
            BackupType::Full => 1,
            BackupType::Differential => 5,
            BackupType::Log => 2,
        }
    }
    fn from_byte(b: u8) -> Option<BackupType> {
        match b {
            1 => Some(BackupType::Full),
            5 => Some(BackupType::Differential),
            2 => Some(BackupType::Log),
            _ => None,
        }
    }
}

/// The header of one media family: what RESTORE HEADERONLY reports and what
/// a RESTORE checks before it reads data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MediaHeader {
    pub set_id: SetId,
    /// The backup's number in the history of the server that made it.
    pub number: u32,
    /// This family's number, 1-based, and how many the media set has.
    pub family: u16,
    pub families: u16,
    pub backup_type: BackupType,
    pub checksum: bool,
    pub copy_only: bool,
    pub block_size: u32,
    pub max_transfer_size: u32,
    /// Data bytes of this family after the header.
    pub family_bytes: u64,
    /// The database's size when it was backed up.
    pub database_bytes: u64,
    /// The stream origin of the family's data (see `content`).
    pub origin: u64,
    /// The identity of the database content the backup copied.
    pub content: u64,
    pub first_lsn: u64,
    pub last_lsn: u64,
    pub checkpoint_lsn: u64,
    pub database_backup_lsn: u64,
    /// When the backup started: Unix milliseconds (0 in the deterministic
    /// world, which has no wall clock).
    pub started_unix_ms: u64,
    pub database: String,
    pub server: String,
    /// The media set's name (BACKUP WITH MEDIANAME; empty: none). Encoded
    /// only when set, after the server's name, so headers without one keep
    /// their bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_name: String,
}

/// Why bytes are not a media header this build can read.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum MediaError {
    #[error("no media header: the region does not begin with the VDISIMMF magic")]
    NoMagic,
    #[error("media header version {0} is not supported (this build reads version {VERSION})")]
    Version(u16),
    #[error("media header truncated: {0}")]
    Truncated(&'static str),
    #[error("media header checksum mismatch: the header is corrupt")]
    Checksum,
    #[error("media header field {0} is invalid")]
    Field(&'static str),
    #[error("media header region holds bytes after the header at offset {0}")]
    Padding(usize),
}

impl MediaHeader {
    /// The header's bytes: prefix and payload (the rest of the region is
    /// zero).
    pub fn encode(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(160);
        p.extend_from_slice(&self.set_id.0.to_le_bytes());
        p.extend_from_slice(&self.number.to_le_bytes());
        p.extend_from_slice(&self.family.to_le_bytes());
        p.extend_from_slice(&self.families.to_le_bytes());
        p.push(self.backup_type.byte());
        p.push(u8::from(self.checksum) | (u8::from(self.copy_only) << 1));
        for w in [self.block_size, self.max_transfer_size] {
            p.extend_from_slice(&w.to_le_bytes());
        }
        for w in [
            self.family_bytes,
            self.database_bytes,
            self.origin,
            self.content,
            self.first_lsn,
            self.last_lsn,
            self.checkpoint_lsn,
            self.database_backup_lsn,
            self.started_unix_ms,
        ] {
            p.extend_from_slice(&w.to_le_bytes());
        }
        let named = !self.media_name.is_empty();
        let names = [&self.database, &self.server, &self.media_name];
        for s in &names[..if named { 3 } else { 2 }] {
            let s = cut(s, NAME_BYTES_MAX);
            p.extend_from_slice(&(s.len() as u16).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        }
        let mut out = Vec::with_capacity(PREFIX + p.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32(&p).to_le_bytes());
        out.extend_from_slice(&p);
        out
    }

    /// Reads a header from the start of `bytes` (at least the encoded
    /// header; any bytes after it, up to the region's end, must be zero).
    pub fn decode(bytes: &[u8]) -> Result<MediaHeader, MediaError> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(MediaError::NoMagic);
        }
        if bytes.len() < PREFIX {
            return Err(MediaError::Truncated("prefix"));
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let version = u16_at(8);
        if version != VERSION {
            return Err(MediaError::Version(version));
        }
        let len = u32_at(12) as usize;
        if len > 4 * NAME_BYTES_MAX {
            return Err(MediaError::Field("payload length"));
        }
        let payload = bytes
            .get(PREFIX..PREFIX + len)
            .ok_or(MediaError::Truncated("payload"))?;
        if crc32(payload) != u32_at(16) {
            return Err(MediaError::Checksum);
        }
        let end = (HEADER_BYTES as usize).min(bytes.len());
        if let Some(i) = bytes[PREFIX + len..end].iter().position(|b| *b != 0) {
            return Err(MediaError::Padding(PREFIX + len + i));
        }
        Reader { b: payload, at: 0 }.header()
    }
}

/// Cuts `s` to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut n = max;
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    &s[..n]
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], MediaError> {
        let s = self
            .b
            .get(self.at..self.at + n)
            .ok_or(MediaError::Truncated(what))?;
        self.at += n;
        Ok(s)
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, MediaError> {
        let s = self.take(8, what)?;
        Ok(u64::from_le_bytes(s.try_into().unwrap_or_default()))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, MediaError> {
        let s = self.take(4, what)?;
        Ok(u32::from_le_bytes(s.try_into().unwrap_or_default()))
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, MediaError> {
        let s = self.take(2, what)?;
        Ok(u16::from_le_bytes(s.try_into().unwrap_or_default()))
    }
    fn string(&mut self, what: &'static str) -> Result<String, MediaError> {
        let n = usize::from(self.u16(what)?);
        if n > NAME_BYTES_MAX {
            return Err(MediaError::Field(what));
        }
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec()).map_err(|_| MediaError::Field(what))
    }

    fn header(mut self) -> Result<MediaHeader, MediaError> {
        let set = self.take(16, "set id")?;
        let set_id = SetId(u128::from_le_bytes(set.try_into().unwrap_or_default()));
        let number = self.u32("number")?;
        let family = self.u16("family")?;
        let families = self.u16("families")?;
        if family == 0 || families == 0 || family > families {
            return Err(MediaError::Field("family"));
        }
        let t = self.take(2, "type")?;
        let (t, flags) = (t[0], t[1]);
        let backup_type = BackupType::from_byte(t).ok_or(MediaError::Field("backup type"))?;
        let block_size = self.u32("block size")?;
        let max_transfer_size = self.u32("max transfer size")?;
        if !block_size.is_power_of_two() || max_transfer_size < block_size {
            return Err(MediaError::Field("block size"));
        }
        let mut w = [0u64; 9];
        for x in &mut w {
            *x = self.u64("sizes and LSNs")?;
        }
        let database = self.string("database")?;
        let server = self.string("server")?;
        let media_name = if self.at < self.b.len() {
            self.string("media name")?
        } else {
            String::new()
        };
        if self.at != self.b.len() {
            return Err(MediaError::Field("payload length"));
        }
        Ok(MediaHeader {
            set_id,
            number,
            family,
            families,
            backup_type,
            checksum: flags & 1 != 0,
            copy_only: flags & 2 != 0,
            block_size,
            max_transfer_size,
            family_bytes: w[0],
            database_bytes: w[1],
            origin: w[2],
            content: w[3],
            first_lsn: w[4],
            last_lsn: w[5],
            checkpoint_lsn: w[6],
            database_backup_lsn: w[7],
            started_unix_ms: w[8],
            database,
            server,
            media_name,
        })
    }
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for b in bytes {
        c ^= u32::from(*b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> MediaHeader {
        MediaHeader {
            set_id: SetId(0x0123_4567_89AB_CDEF_0011_2233_4455_6677),
            number: 7,
            family: 2,
            families: 3,
            backup_type: BackupType::Log,
            checksum: true,
            copy_only: false,
            block_size: 65536,
            max_transfer_size: 1 << 20,
            family_bytes: 123 * 65536,
            database_bytes: 8 << 20,
            origin: 0xDEAD_BEEF,
            content: 42,
            first_lsn: 1000,
            last_lsn: 2000,
            checkpoint_lsn: 1500,
            database_backup_lsn: 900,
            started_unix_ms: 1_700_000_000_000,
            database: "sales ü ]".into(),
            server: "VDISIM".into(),
            media_name: String::new(),
        }
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = sample();
        let mut region = vec![0u8; HEADER_BYTES as usize];
        let enc = h.encode();
        region[..enc.len()].copy_from_slice(&enc);
        assert_eq!(MediaHeader::decode(&region), Ok(h.clone()));
        assert_eq!(MediaHeader::decode(&enc), Ok(h.clone()));
        let mut bad = region.clone();
        bad[30] ^= 1;
        assert_eq!(MediaHeader::decode(&bad), Err(MediaError::Checksum));
        let mut bad = region.clone();
        bad[9] = 9;
        assert_eq!(
            MediaHeader::decode(&bad),
            Err(MediaError::Version(0x0900 | 1))
        );
        let mut bad = region.clone();
        bad[60000] = 1;
        assert_eq!(MediaHeader::decode(&bad), Err(MediaError::Padding(60000)));
        assert_eq!(
            MediaHeader::decode(&region[..10]),
            Err(MediaError::Truncated("prefix"))
        );
        assert_eq!(MediaHeader::decode(&[0u8; 100]), Err(MediaError::NoMagic));
        assert_eq!(
            MediaHeader::decode(&enc[..enc.len() - 1]),
            Err(MediaError::Truncated("payload"))
        );
    }

    /// Clause `tape.media-name`: a header without a media name keeps the
    /// bytes it had before the field existed; one with a name round-trips.
    #[test]
    fn media_name_is_encoded_only_when_set() {
        let h = sample();
        let plain = h.encode();
        let mut named = h.clone();
        named.media_name = "weekly".into();
        let enc = named.encode();
        assert_eq!(enc.len(), plain.len() + 2 + 6);
        assert_eq!(MediaHeader::decode(&enc), Ok(named));
        assert_eq!(MediaHeader::decode(&plain), Ok(h));
    }

    #[test]
    fn long_names_are_cut_at_a_character_boundary() {
        let mut h = sample();
        h.database = "é".repeat(NAME_BYTES_MAX);
        let d = MediaHeader::decode(&h.encode()).unwrap();
        assert!(d.database.len() <= NAME_BYTES_MAX);
        assert!(h.database.starts_with(&d.database));
    }

    #[test]
    fn set_id_shows_and_parses_as_a_guid() {
        let id = sample().set_id;
        let s = id.to_string();
        assert_eq!(s, "01234567-89AB-CDEF-0011-223344556677");
        assert_eq!(s.parse::<SetId>(), Ok(id));
        assert!("xyz".parse::<SetId>().is_err());
    }
}
