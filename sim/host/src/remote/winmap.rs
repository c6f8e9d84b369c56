//! The client's shared mapping on Windows, for a program under Wine: the
//! server's chunk file (a Unix path under `/dev/shm`) opened through Wine's
//! view of the Unix file system and mapped with `CreateFileMappingW` +
//! `MapViewOfFileEx`. Wine maps a writable shared view of a file with
//! `mmap(MAP_SHARED)`, so both processes touch the same pages: no byte is
//! copied (measured in `reports/BENCHMARKS.md`).

use std::ffi::c_void;
use std::fs::File;
use std::io;
use std::os::windows::io::AsRawHandle;
use std::ptr::NonNull;
use windows_sys::Win32::Foundation::CloseHandle;
use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleW, GetProcAddress};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, GetProcessHeap, HeapFree, MEM_RELEASE,
    MEM_RESERVE, MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFileEx, PAGE_NOACCESS, PAGE_READWRITE,
    UnmapViewOfFile, VirtualAlloc, VirtualFree,
};

/// Windows maps views at multiples of this (the allocation granularity).
const GRANULARITY: usize = 64 * 1024;

/// Attempts at placing an over-aligned view (another thread may take the
/// address between the probe and the map).
const PLACE_ATTEMPTS: usize = 16;

/// The Windows path of the server's Unix path `unix`: Wine's own
/// translation (`wine_get_dos_file_name`, exported by Wine's kernel32),
/// else the `Z:` drive every Wine prefix maps to `/`. A path that is not
/// absolute Unix is used as given.
pub fn host_path(unix: &str) -> String {
    if !unix.starts_with('/') {
        return unix.to_string();
    }
    if let Some(p) = wine_dos_name(unix) {
        return p;
    }
    format!("Z:{}", unix.replace('/', "\\"))
}

type WineGetDosFileName = unsafe extern "C" fn(*const u8) -> *mut u16;

fn wine_dos_name(unix: &str) -> Option<String> {
    let kernel32: Vec<u16> = "kernel32.dll\0".encode_utf16().collect();
    // SAFETY: a NUL-terminated UTF-16 name; kernel32 is always loaded.
    let module = unsafe { GetModuleHandleW(kernel32.as_ptr()) };
    if module.is_null() {
        return None;
    }
    // SAFETY: a NUL-terminated ASCII name on a loaded module.
    let f = unsafe { GetProcAddress(module, c"wine_get_dos_file_name".as_ptr().cast()) }?;
    // SAFETY: Wine declares `WCHAR * CDECL wine_get_dos_file_name(LPCSTR)`;
    // the transmute gives the address that signature.
    let f: WineGetDosFileName = unsafe { std::mem::transmute(f) };
    let c = std::ffi::CString::new(unix).ok()?;
    // SAFETY: a NUL-terminated string; the result is NULL or a
    // NUL-terminated UTF-16 string on the process heap, freed below.
    let w = unsafe { f(c.as_ptr().cast()) };
    if w.is_null() {
        return None;
    }
    let mut n = 0usize;
    // SAFETY: NUL-terminated, as above.
    while unsafe { *w.add(n) } != 0 {
        n += 1;
    }
    // SAFETY: `n` units were just read.
    let s = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(w, n) });
    // SAFETY: Wine allocated it with HeapAlloc(GetProcessHeap()).
    unsafe { HeapFree(GetProcessHeap(), 0, w.cast()) };
    Some(s)
}

/// One shared view of a file, aligned to at least its `align`.
#[allow(clippy::len_without_is_empty)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: as the Unix mapping: plain shared memory owned by this value
// until it drops; the VDI protocol orders who touches which bytes.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` shared, at an address aligned to `align`
    /// (a power of two).
    pub fn map(file: &File, len: usize, align: usize) -> io::Result<Mapping> {
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let align = align
            .max(GRANULARITY)
            .checked_next_power_of_two()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "alignment too large"))?;
        let reserve = len
            .checked_add(align)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: the handle is the open file's; a mapping object of the
        // file's size, closed below (the view keeps the mapping alive).
        let section = unsafe {
            CreateFileMappingW(
                file.as_raw_handle(),
                std::ptr::null(),
                PAGE_READWRITE,
                0,
                0,
                std::ptr::null(),
            )
        };
        if section.is_null() {
            return Err(io::Error::last_os_error());
        }
        let mut result = Err(io::Error::other("no aligned address found for the view"));
        for _ in 0..PLACE_ATTEMPTS {
            let at = if align == GRANULARITY {
                std::ptr::null_mut()
            } else {
                // SAFETY: reserves and at once releases address space to
                // find a free aligned range; nothing is touched.
                unsafe {
                    let r = VirtualAlloc(std::ptr::null(), reserve, MEM_RESERVE, PAGE_NOACCESS);
                    if r.is_null() {
                        result = Err(io::Error::last_os_error());
                        break;
                    }
                    VirtualFree(r, 0, MEM_RELEASE);
                    (r as usize).next_multiple_of(align) as *mut c_void
                }
            };
            // SAFETY: maps `len` bytes of the section at `at` (or anywhere);
            // fails rather than replacing anything already mapped there.
            let view =
                unsafe { MapViewOfFileEx(section, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, len, at) };
            match NonNull::new(view.Value.cast::<u8>()) {
                Some(base) if (base.as_ptr() as usize).is_multiple_of(align) => {
                    result = Ok(Mapping { base, len });
                    break;
                }
                Some(_) => {
                    // SAFETY: the view just made, unmapped once.
                    unsafe { UnmapViewOfFile(view) };
                }
                None => result = Err(io::Error::last_os_error()),
            }
            if at.is_null() {
                break;
            }
        }
        // SAFETY: the mapping object made above, closed once.
        unsafe { CloseHandle(section) };
        result
    }

    /// The first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the view `map` made, unmapped once here.
        unsafe {
            UnmapViewOfFile(MEMORY_MAPPED_VIEW_ADDRESS {
                Value: self.base.as_ptr().cast(),
            })
        };
    }
}
