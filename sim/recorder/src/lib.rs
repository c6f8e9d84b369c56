//! # vdi-recorder — a pass-through recording `libsqlvdi.so`
//!
//! A library with the Linux class ABI of SQL Server's `libsqlvdi.so` (the
//! Itanium-mangled members of `ClientVirtualDeviceSet` and
//! `ClientVirtualDevice`, vdi-abi-and-field-notes.md §1.2) that loads the
//! real library, forwards every call to it unchanged, and appends each
//! call and its return to a recording, one JSON line per call. `vdisim
//! judge` checks a recording against the specification. The format, its
//! version and an example are in `docs/RECORDING.md`.
//!
//! On Windows the same crate builds `sqlvdi_record.dll`: an in-process
//! COM server registered over `CLSID_MSSQL_ClientVirtualDeviceSet` whose
//! objects wrap the real DLL's and record every call in the same format
//! (`windows.rs`; docs/RECORDING.md §6). The variables below are the same
//! there, with Windows paths (`VDISIM_RECORD_REAL` the real DLL's full
//! path, loaded with `LoadLibraryW`).
//!
//! # Variables
//!
//! Read once, at the first call:
//!
//! - `VDISIM_RECORD_REAL=<path>`: the real library (required). Loaded with
//!   `dlopen(RTLD_LAZY | RTLD_LOCAL)` by path, so it may itself be named
//!   `libsqlvdi.so` in another directory.
//! - `VDISIM_RECORD_FILE=<path>`: the recording; created with mode 0600 if
//!   missing, always appended to (`O_APPEND`), never truncated. Unset or
//!   unusable: calls are forwarded and nothing is recorded.
//! - `VDISIM_RECORD_DIGEST=full|sample|none`: how buffers are digested:
//!   every byte, the first and last 4 KiB and the length, or not at all
//!   (default `sample`: `full` reads every byte the backup moves once
//!   more, which costs more than the 5 % overhead budget on a fast
//!   stream; see [`digest`] and reports/BENCHMARKS.md).
//! - `VDISIM_RECORD_FLUSH=batch|call`: `batch` (default) holds the lines
//!   of data round trips that went well (GetCommand and CompleteCommand
//!   returning NOERROR) up to 64 KiB and writes them before any other
//!   line and at exit; `call` writes every line as its call returns.
//! - `VDISIM_TIME_SCALE=<N>`: copied into the header (the clock the real
//!   library's timeouts run on, when it is vdisim's stand-in; 1 for a real
//!   one).
//!
//! A problem is reported on stderr in one line (what, which variable, how
//! to fix it). Without a real library every method returns
//! `VD_E_UNEXPECTED` and constructors leave a null object: the recorder
//! never invents a success.
//!
//! # What it must not do
//!
//! Change behaviour: arguments reach the real library as the program
//! passed them and results reach the program as the real library returned
//! them. The recorder reads what the program passed (names, the VDConfig)
//! and the command blocks the real library delivered, never writes them,
//! and never reads a block that is not one it saw delivered and not yet
//! completed. Lines are written whole (lines of several threads and
//! processes never interleave); with `VDISIM_RECORD_FLUSH=call` a killed
//! program loses nothing already returned, with `batch` at most the held
//! data round trips since its last other call.

#![cfg_attr(not(unix), allow(dead_code))]

pub mod digest;
#[cfg(unix)]
mod linux;
#[cfg(unix)]
mod real;
#[cfg(any(unix, windows))]
mod record;
#[cfg(windows)]
mod windows;

/// The recording format version the library writes (docs/RECORDING.md).
pub const FORMAT_VERSION: u32 = 1;
/// The `format` value of a recording's header line.
pub const FORMAT_NAME: &str = "vdisim-recording";
/// Names the real library.
pub const ENV_REAL: &str = "VDISIM_RECORD_REAL";
/// Names the recording.
pub const ENV_FILE: &str = "VDISIM_RECORD_FILE";
/// `full`, `sample` (default) or `none`: how buffers are digested.
pub const ENV_DIGEST: &str = "VDISIM_RECORD_DIGEST";
/// `batch` (default) or `call`: when lines are written.
pub const ENV_FLUSH: &str = "VDISIM_RECORD_FLUSH";
/// The longest name recorded, in bytes (longer ones are cut and flagged).
pub const NAME_RECORDED_MAX: usize = 1024;
/// The largest buffer digested, in bytes (MAXTRANSFERSIZE's upper bound,
/// vdi-spec.md §3.8); a larger `size` is recorded without a digest.
pub const DIGEST_BYTES_MAX: usize = vdi_spec::layout::limits::MAX_TRANSFER_MAX as usize;
