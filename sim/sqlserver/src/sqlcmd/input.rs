//! Reading `-i` scripts as sqlcmd does: UTF-8 with or without a byte order
//! mark, UTF-16 little- or big-endian with one. Anything else is refused
//! with what is wrong and where, never guessed at.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use vdi_spec::bounds::BATCH_BYTES_MAX;

/// Why a script could not be read.
#[derive(Debug)]
pub enum ScriptError {
    /// No such file (sqlcmd's "Invalid filename.").
    NotFound,
    /// The file exists but could not be read.
    Read(io::Error),
    /// The bytes are not text in an encoding sqlcmd reads.
    Encoding(EncodingError),
    /// The text is larger than a script may be
    /// ([`vdi_spec::bounds::BATCH_BYTES_MAX`]).
    TooLarge {
        /// Bytes of the file (or of its text, once decoded).
        bytes: u64,
    },
}

/// What is wrong with a script's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EncodingError {
    /// No byte order mark, and not valid UTF-8.
    NotUtf8 {
        /// Offset of the first byte that is not UTF-8.
        offset: usize,
        /// That byte.
        byte: u8,
    },
    /// UTF-8 holding NUL bytes: most likely UTF-16 saved without a byte
    /// order mark.
    Nul {
        /// Offset of the first NUL byte.
        offset: usize,
    },
    /// A UTF-16 byte order mark, then an odd number of bytes.
    OddUtf16 {
        /// `UTF-16LE` or `UTF-16BE`.
        encoding: &'static str,
    },
    /// A UTF-16 byte order mark, then a surrogate without its pair.
    UnpairedSurrogate {
        /// `UTF-16LE` or `UTF-16BE`.
        encoding: &'static str,
        /// Byte offset of the surrogate in the file.
        offset: usize,
    },
}

impl fmt::Display for EncodingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodingError::NotUtf8 { offset, byte } => write!(
                f,
                "the file is not UTF-8 (byte 0x{byte:02X} at offset {offset}) and has no UTF-16 byte order mark"
            ),
            EncodingError::Nul { offset } => write!(
                f,
                "the file holds a NUL byte at offset {offset} (UTF-16 saved without a byte order mark?)"
            ),
            EncodingError::OddUtf16 { encoding } => write!(
                f,
                "the file starts with a {encoding} byte order mark but holds an odd number of bytes"
            ),
            EncodingError::UnpairedSurrogate { encoding, offset } => write!(
                f,
                "the file starts with a {encoding} byte order mark but holds an unpaired surrogate at offset {offset}"
            ),
        }
    }
}

impl ScriptError {
    /// The line sqlcmd prints for `path` (without a newline).
    pub fn message(&self, path: &Path) -> String {
        let p = path.display();
        match self {
            ScriptError::NotFound => format!("Sqlcmd: '{p}': Invalid filename."),
            ScriptError::Read(e) => format!("Sqlcmd: '{p}': cannot read the file: {e}."),
            ScriptError::Encoding(e) => format!(
                "Sqlcmd: '{p}': {e}; save it as UTF-8 (with or without a byte order mark) or as UTF-16 with a byte order mark."
            ),
            ScriptError::TooLarge { bytes } => format!(
                "Sqlcmd: '{p}': the script is {bytes} bytes; vdisim sqlcmd sends at most {BATCH_BYTES_MAX} bytes of script (vdi_spec::bounds::BATCH_BYTES_MAX): split it into several files."
            ),
        }
    }
}

/// Reads and decodes the script at `path`.
pub fn read_script(path: &Path) -> Result<String, ScriptError> {
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => ScriptError::NotFound,
        _ => ScriptError::Read(e),
    })?;
    // UTF-16 text takes at least half its bytes as UTF-8: a file over
    // twice the bound (and its mark) cannot fit, whatever its encoding.
    let cap = 2 * BATCH_BYTES_MAX as u64 + 2;
    let mut bytes = Vec::new();
    (&mut file)
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ScriptError::Read)?;
    if bytes.len() as u64 > cap {
        let len = file.metadata().map_or(cap + 1, |m| m.len());
        return Err(ScriptError::TooLarge { bytes: len });
    }
    let text = decode(&bytes).map_err(ScriptError::Encoding)?;
    if text.len() > BATCH_BYTES_MAX {
        return Err(ScriptError::TooLarge {
            bytes: text.len() as u64,
        });
    }
    Ok(text)
}

/// Decodes a script: a UTF-8 byte order mark is dropped; a UTF-16 one
/// (`FF FE` little-endian, `FE FF` big-endian) decodes the rest as UTF-16;
/// without one the bytes must be UTF-8 and hold no NUL.
pub fn decode(bytes: &[u8]) -> Result<String, EncodingError> {
    if let Some(rest) = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]) {
        return utf8(rest, 3);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
        return utf16(rest, "UTF-16LE", u16::from_le_bytes);
    }
    if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
        return utf16(rest, "UTF-16BE", u16::from_be_bytes);
    }
    utf8(bytes, 0)
}

/// `bytes` (which start at `base` in the file) as UTF-8 without NULs.
fn utf8(bytes: &[u8], base: usize) -> Result<String, EncodingError> {
    let text = std::str::from_utf8(bytes).map_err(|e| EncodingError::NotUtf8 {
        offset: base + e.valid_up_to(),
        byte: bytes[e.valid_up_to()],
    })?;
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(EncodingError::Nul { offset: base + at });
    }
    Ok(text.to_string())
}

/// `bytes` (after a 2-byte mark) as UTF-16 units read with `unit`.
fn utf16(
    bytes: &[u8],
    encoding: &'static str,
    unit: fn([u8; 2]) -> u16,
) -> Result<String, EncodingError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(EncodingError::OddUtf16 { encoding });
    }
    let units = bytes.chunks_exact(2).map(|c| unit([c[0], c[1]]));
    let mut text = String::with_capacity(bytes.len() / 2);
    for r in char::decode_utf16(units) {
        match r {
            Ok(c) => text.push(c),
            Err(_) => {
                // The offset of the bad unit: the units decoded before it.
                let before: usize = text.chars().map(char::len_utf16).sum();
                return Err(EncodingError::UnpairedSurrogate {
                    encoding,
                    offset: 2 + 2 * before,
                });
            }
        }
    }
    Ok(text)
}
