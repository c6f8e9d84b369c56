//! Result codes: the `VD_E_*` HRESULTs of `vdierror.h` and the Win32 completion
//! codes the protocol uses (vdi-spec.md §3.1, §3.2).
//!
//! Both are newtypes over `u32` so that any value a real implementation returns
//! can be carried and printed, named or not. Every value prints as its name and
//! hex, e.g. `VD_E_OPEN (0x8077000D)`.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// An HRESULT as returned by a client API method. On Linux the same bit
/// pattern is returned as a negative `int`; [`Hresult::from_linux`] and
/// [`Hresult::as_linux`] convert.
///
/// Serialized as its name (`"VD_E_OPEN"`) or, when unnamed, as hex
/// (`"0x80770008"`); read back from a name, a hex string or a number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hresult(pub u32);

/// A Win32 completion code, as passed to `CompleteCommand` and seen by the
/// server's completion routine.
///
/// Serialized as its number; read back from a number or a name
/// (`"ERROR_HANDLE_EOF"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Win32(pub u32);

macro_rules! named_codes {
    ($ty:ident, $table:ident, $( $(#[$m:meta])* $name:ident = $val:expr ),* $(,)?) => {
        impl $ty {
            $( $(#[$m])* pub const $name: $ty = $ty($val); )*
        }
        /// Every named value of this type, in declaration order.
        pub const $table: &[($ty, &str)] = &[ $( ($ty($val), stringify!($name)) ),* ];
    };
}

named_codes!(Hresult, HRESULT_NAMES,
    /// Success (`S_OK`).
    NOERROR = 0x0000_0000,
    /// "object was not open"; declared, no method documents it.
    VD_E_NOTOPEN = 0x8077_0002,
    /// A wait timed out (GetConfiguration, GetCommand).
    VD_E_TIMEOUT = 0x8077_0003,
    /// Abort in effect; only termination actions possible.
    VD_E_ABORT = 0x8077_0004,
    /// Failed to create the security environment.
    VD_E_SECURITY = 0x8077_0005,
    /// Invalid parameter.
    VD_E_INVALID = 0x8077_0006,
    /// SQL Server instance name not recognised.
    VD_E_INSTANCE_NAME = 0x8077_0007,
    /// Requested configuration invalid or unsupported.
    VD_E_NOTSUPPORTED = 0x8077_0009,
    /// Out of memory.
    VD_E_MEMORY = 0x8077_000A,
    /// Unexpected internal error.
    VD_E_UNEXPECTED = 0x8077_000B,
    /// Call illegal in the current state.
    VD_E_PROTOCOL = 0x8077_000C,
    /// All devices are open (OpenDevice); devices still open (Close).
    VD_E_OPEN = 0x8077_000D,
    /// The device is now closed.
    VD_E_CLOSE = 0x8077_000E,
    /// Resource busy; declared, no method documents it.
    VD_E_BUSY = 0x8077_000F,
    /// `E_ACCESSDENIED`: CreateEx without administrator rights.
    E_ACCESSDENIED = 0x8007_0005,
    /// `E_POINTER`: a required pointer argument was null (COM convention).
    E_POINTER = 0x8000_4003,
    /// `E_NOINTERFACE`: QueryInterface for an interface the object lacks.
    E_NOINTERFACE = 0x8000_4002,
    /// `CLASS_E_CLASSNOTAVAILABLE`: CoCreateInstance, class not available.
    CLASS_E_CLASSNOTAVAILABLE = 0x8004_0111,
    /// `REGDB_E_CLASSNOTREG`: CoCreateInstance, class not registered.
    REGDB_E_CLASSNOTREG = 0x8004_0154,
);

named_codes!(
    Win32,
    WIN32_NAMES,
    ERROR_SUCCESS = 0,
    ERROR_INVALID_HANDLE = 6,
    ERROR_ARENA_TRASHED = 7,
    ERROR_BAD_ENVIRONMENT = 10,
    ERROR_WRITE_FAULT = 29,
    ERROR_READ_FAULT = 30,
    ERROR_HANDLE_EOF = 38,
    ERROR_HANDLE_DISK_FULL = 39,
    ERROR_NOT_SUPPORTED = 50,
    ERROR_DISK_FULL = 112,
    ERROR_OPERATION_ABORTED = 995,
    ERROR_END_OF_MEDIA = 1100,
    ERROR_FILEMARK_DETECTED = 1101,
    ERROR_NO_DATA_DETECTED = 1104,
    ERROR_IO_DEVICE = 1117,
    ERROR_EOM_OVERFLOW = 1129,
    ERROR_NO_SYSTEM_RESOURCES = 1450,
);

impl Hresult {
    /// The facility of every `VD_E_*` code.
    pub const FACILITY_VDI: u32 = 0x77;

    /// `true` for `NOERROR` and any other success HRESULT (severity bit clear).
    pub fn is_success(self) -> bool {
        self.0 & 0x8000_0000 == 0
    }

    /// The registered name, if this value has one.
    pub fn name(self) -> Option<&'static str> {
        HRESULT_NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
    }

    /// Looks a code up by its name (`"VD_E_OPEN"`).
    pub fn from_name(name: &str) -> Option<Hresult> {
        HRESULT_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
    }

    /// The value as the Linux library returns it: a signed `int`.
    pub fn as_linux(self) -> i32 {
        self.0 as i32
    }

    /// A value returned by the Linux library.
    pub fn from_linux(v: i32) -> Hresult {
        Hresult(v as u32)
    }

    /// `HRESULT_FROM_WIN32(code)`.
    pub fn from_win32(code: Win32) -> Hresult {
        if code.0 == 0 {
            Hresult::NOERROR
        } else {
            Hresult((code.0 & 0xFFFF) | (7 << 16) | 0x8000_0000)
        }
    }
}

impl Win32 {
    /// The registered name, if this value has one.
    pub fn name(self) -> Option<&'static str> {
        WIN32_NAMES
            .iter()
            .find(|(c, _)| *c == self)
            .map(|(_, n)| *n)
    }

    /// Looks a code up by its name (`"ERROR_HANDLE_EOF"`).
    pub fn from_name(name: &str) -> Option<Win32> {
        WIN32_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(c, _)| *c)
    }

    /// The short text SQL Server prints after the number in its error messages
    /// (for example "The I/O operation has been aborted ...").
    pub fn message(self) -> &'static str {
        match self {
            Win32::ERROR_SUCCESS => "The operation completed successfully.",
            Win32::ERROR_INVALID_HANDLE => "The handle is invalid.",
            Win32::ERROR_WRITE_FAULT => "The system cannot write to the specified device.",
            Win32::ERROR_READ_FAULT => "The system cannot read from the specified device.",
            Win32::ERROR_HANDLE_EOF => "Reached the end of the file.",
            Win32::ERROR_HANDLE_DISK_FULL => "The disk is full.",
            Win32::ERROR_NOT_SUPPORTED => "The request is not supported.",
            Win32::ERROR_DISK_FULL => "There is not enough space on the disk.",
            Win32::ERROR_OPERATION_ABORTED => {
                "The I/O operation has been aborted because of either a thread exit or an application request."
            }
            Win32::ERROR_END_OF_MEDIA => "The physical end of the tape has been reached.",
            Win32::ERROR_FILEMARK_DETECTED => "A tape access reached a filemark.",
            Win32::ERROR_NO_DATA_DETECTED => "No more data is on the tape.",
            Win32::ERROR_IO_DEVICE => {
                "The request could not be performed because of an I/O device error."
            }
            Win32::ERROR_EOM_OVERFLOW => "Physical end of tape encountered.",
            Win32::ERROR_NO_SYSTEM_RESOURCES => {
                "Insufficient system resources exist to complete the requested service."
            }
            _ => "Unknown error.",
        }
    }
}

impl Serialize for Hresult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.name() {
            Some(n) => s.serialize_str(n),
            None => s.serialize_str(&format!("0x{:08X}", self.0)),
        }
    }
}

impl Serialize for Win32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

/// Reads a code from a name, a `0x` hex string or a number.
struct CodeVisitor<F: Fn(&str) -> Option<u32>>(F, &'static str);

impl<F: Fn(&str) -> Option<u32>> Visitor<'_> for CodeVisitor<F> {
    type Value = u32;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} name, a 0x hex string or a number", self.1)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
        u32::try_from(v).map_err(|_| E::custom(format!("{v} does not fit in 32 bits")))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
        // Linux returns VD_E_* as negative ints.
        if let Ok(x) = i32::try_from(v) {
            return Ok(x as u32);
        }
        u32::try_from(v).map_err(|_| E::custom(format!("{v} does not fit in 32 bits")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
        if let Some(c) = (self.0)(v) {
            return Ok(c);
        }
        let hex = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"));
        match hex {
            Some(h) => {
                u32::from_str_radix(h, 16).map_err(|_| E::custom(format!("bad hex code {v:?}")))
            }
            None => v
                .parse()
                .map_err(|_| E::custom(format!("unknown {} {v:?}", self.1))),
        }
    }
}

impl<'de> Deserialize<'de> for Hresult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CodeVisitor(
            |n| Hresult::from_name(n).map(|c| c.0),
            "HRESULT",
        ))
        .map(Hresult)
    }
}

impl<'de> Deserialize<'de> for Win32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(CodeVisitor(
            |n| Win32::from_name(n).map(|c| c.0),
            "Win32 code",
        ))
        .map(Win32)
    }
}

fn fmt_named(f: &mut fmt::Formatter<'_>, name: Option<&str>, v: u32, width: usize) -> fmt::Result {
    match name {
        Some(n) => write!(f, "{n} (0x{v:0width$X})"),
        None => write!(f, "0x{v:0width$X}"),
    }
}

impl fmt::Display for Hresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_named(f, self.name(), self.0, 8)
    }
}

impl fmt::Debug for Hresult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Win32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Debug for Win32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_vd_e_values_are_exact() {
        // vdi-spec.md §3.1: VD_ERROR(code) = 0x80770000 | code; no code 1 or 8.
        let expect = [
            ("VD_E_NOTOPEN", 2),
            ("VD_E_TIMEOUT", 3),
            ("VD_E_ABORT", 4),
            ("VD_E_SECURITY", 5),
            ("VD_E_INVALID", 6),
            ("VD_E_INSTANCE_NAME", 7),
            ("VD_E_NOTSUPPORTED", 9),
            ("VD_E_MEMORY", 10),
            ("VD_E_UNEXPECTED", 11),
            ("VD_E_PROTOCOL", 12),
            ("VD_E_OPEN", 13),
            ("VD_E_CLOSE", 14),
            ("VD_E_BUSY", 15),
        ];
        for (name, code) in expect {
            assert_eq!(
                Hresult::from_name(name),
                Some(Hresult(0x8077_0000 | code)),
                "{name}"
            );
        }
        let vd: Vec<_> = HRESULT_NAMES
            .iter()
            .filter(|(_, n)| n.starts_with("VD_E_"))
            .collect();
        assert_eq!(vd.len(), expect.len());
        assert_eq!(Hresult(0x8077_0001).name(), None);
        assert_eq!(Hresult(0x8077_0008).name(), None);
    }

    #[test]
    fn codes_print_name_and_hex() {
        assert_eq!(Hresult::VD_E_OPEN.to_string(), "VD_E_OPEN (0x8077000D)");
        assert_eq!(Hresult::NOERROR.to_string(), "NOERROR (0x00000000)");
        assert_eq!(Hresult(0x8077_0008).to_string(), "0x80770008");
        assert_eq!(Win32::ERROR_HANDLE_EOF.to_string(), "ERROR_HANDLE_EOF (38)");
        assert_eq!(Win32(4242).to_string(), "4242");
    }

    #[test]
    fn codes_linux_are_negative_ints() {
        assert_eq!(Hresult::VD_E_TIMEOUT.as_linux(), -2139684861);
        assert_eq!(Hresult::from_linux(-2139684849), Hresult::VD_E_BUSY);
        assert_eq!(Hresult::NOERROR.as_linux(), 0);
    }

    #[test]
    fn codes_serde_by_name_hex_or_number() {
        assert_eq!(
            serde_json::to_string(&Hresult::VD_E_OPEN).unwrap(),
            "\"VD_E_OPEN\""
        );
        assert_eq!(
            serde_json::to_string(&Hresult(0x8077_0008)).unwrap(),
            "\"0x80770008\""
        );
        let h: Hresult = serde_json::from_str("\"VD_E_ABORT\"").unwrap();
        assert_eq!(h, Hresult::VD_E_ABORT);
        let h: Hresult = serde_json::from_str("\"0x8077000C\"").unwrap();
        assert_eq!(h, Hresult::VD_E_PROTOCOL);
        let h: Hresult = serde_json::from_str("-2139684849").unwrap();
        assert_eq!(h, Hresult::VD_E_BUSY);
        assert!(serde_json::from_str::<Hresult>("\"VD_E_NOPE\"").is_err());
        let w: Win32 = serde_json::from_str("\"ERROR_DISK_FULL\"").unwrap();
        assert_eq!(w, Win32::ERROR_DISK_FULL);
        assert_eq!(
            serde_json::to_string(&Win32::ERROR_HANDLE_EOF).unwrap(),
            "38"
        );
    }

    #[test]
    fn codes_win32_values_are_exact() {
        // vdi-spec.md §3.2
        let expect = [
            ("ERROR_SUCCESS", 0),
            ("ERROR_INVALID_HANDLE", 6),
            ("ERROR_ARENA_TRASHED", 7),
            ("ERROR_BAD_ENVIRONMENT", 10),
            ("ERROR_HANDLE_EOF", 38),
            ("ERROR_HANDLE_DISK_FULL", 39),
            ("ERROR_NOT_SUPPORTED", 50),
            ("ERROR_DISK_FULL", 112),
            ("ERROR_OPERATION_ABORTED", 995),
            ("ERROR_END_OF_MEDIA", 1100),
            ("ERROR_FILEMARK_DETECTED", 1101),
            ("ERROR_NO_DATA_DETECTED", 1104),
            ("ERROR_IO_DEVICE", 1117),
            ("ERROR_EOM_OVERFLOW", 1129),
            ("ERROR_NO_SYSTEM_RESOURCES", 1450),
        ];
        for (name, v) in expect {
            assert_eq!(Win32::from_name(name), Some(Win32(v)), "{name}");
        }
        assert_eq!(
            Hresult::from_win32(Win32::ERROR_NOT_SUPPORTED),
            Hresult(0x8007_0032)
        );
    }
}
