//! Buffers in shared memory, mapped by both processes.
//!
//! The server creates buffer memory in chunks of [`PER_CHUNK`] buffers, each
//! chunk a file under `/dev/shm` (the temporary directory where there is
//! none) created with mode 0600, sized sparsely (pages cost memory only once
//! touched). Before the first command that uses a chunk reaches the client,
//! the server sends a [`MapChunk`]; the client maps the same file and says
//! so, and the server unlinks it (the mappings live on). Both sides map with
//! the chunk's alignment, so a buffer's data zone has the same alignment in
//! both processes.

//!
//! On Windows (a program under Wine) only the client's side exists: the
//! same files, opened through Wine's view of the Unix file system and
//! mapped with `MapViewOfFile` (`winmap`).

use super::wire::MapChunk;
use crate::buffers::BufferMap;
#[cfg(unix)]
use crate::buffers::ServerBuffers;
use std::collections::BTreeMap;
#[cfg(unix)]
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
#[cfg(unix)]
use std::os::fd::AsRawFd;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
#[cfg(unix)]
use std::path::PathBuf;
use std::ptr::NonNull;
#[cfg(unix)]
use std::sync::Mutex;
use std::sync::RwLock;
#[cfg(unix)]
use std::sync::atomic::{AtomicU64, Ordering};
use vdi_model::msg::BufId;

#[cfg(windows)]
use super::winmap::Mapping;

/// Buffers per chunk.
pub const PER_CHUNK: u32 = 16;

/// The largest alignment a chunk may ask for (1 GiB).
pub const ALIGN_MAX: u64 = 1 << 30;

#[cfg(unix)]
/// One shared mapping, aligned to at least its `align`.
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

#[cfg(unix)]
// SAFETY: the mapping is plain shared memory owned by this value until it
// drops; who touches which bytes when is the VDI protocol's rule (the client
// between GetCommand and CompleteCommand, the server otherwise), ordered by
// the socket's messages.
unsafe impl Send for Mapping {}
#[cfg(unix)]
// SAFETY: as for `Send`.
unsafe impl Sync for Mapping {}

#[cfg(unix)]
impl Mapping {
    /// Maps `len` bytes of `file` shared, at an address aligned to `align`
    /// (a power of two).
    pub fn map(file: &File, len: usize, align: usize) -> io::Result<Mapping> {
        let page = 4096usize;
        let align = align
            .max(page)
            .checked_next_power_of_two()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "alignment too large"))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty mapping"));
        }
        let reserve = len
            .checked_add(align)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: an anonymous PROT_NONE reservation at an address of the
        // kernel's choosing; no memory is touched.
        let r = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if r == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = r as usize;
        let aligned = start.next_multiple_of(align);
        // SAFETY: [aligned, aligned+len) lies inside the reservation we own;
        // MAP_FIXED replaces exactly that part of it with the file.
        let m = unsafe {
            libc::mmap(
                aligned as *mut libc::c_void,
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                file.as_raw_fd(),
                0,
            )
        };
        let fail = (m == libc::MAP_FAILED).then(io::Error::last_os_error);
        // Give back the reservation's slack on both sides (and everything
        // on failure).
        let (head, tail_at, tail) = if fail.is_some() {
            (reserve, start + reserve, 0)
        } else {
            (
                aligned - start,
                aligned + len,
                start + reserve - (aligned + len),
            )
        };
        // SAFETY: these ranges are parts of our own reservation not used by
        // the file mapping.
        unsafe {
            if head > 0 {
                libc::munmap(start as *mut libc::c_void, head);
            }
            if tail > 0 {
                libc::munmap(tail_at as *mut libc::c_void, tail);
            }
        }
        if let Some(e) = fail {
            return Err(e);
        }
        Ok(Mapping {
            base: NonNull::new(aligned as *mut u8)
                .ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    /// The first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (never, for a mapping that exists).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(unix)]
impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: exactly the range `map` mapped, unmapped once here.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// The buffer layout of one set incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub stride: u64,
    pub data_offset: u64,
    pub size: u64,
    pub align: u64,
}

impl Geometry {
    /// Buffers of `size` data bytes after a `prefix`-byte zone, data zones
    /// aligned to `align`.
    pub fn new(prefix: u32, size: u32, align: u32) -> Geometry {
        let align = u64::from(align.max(4096)).next_power_of_two();
        let data_offset = u64::from(prefix).next_multiple_of(align);
        let stride = data_offset + u64::from(size).next_multiple_of(align);
        Geometry {
            stride,
            data_offset,
            size: u64::from(size),
            align,
        }
    }

    #[cfg(unix)]
    fn chunk_len(&self) -> u64 {
        self.stride * u64::from(PER_CHUNK)
    }
}

#[cfg(unix)]
fn shm_dir() -> PathBuf {
    let d = PathBuf::from("/dev/shm");
    if d.is_dir() { d } else { std::env::temp_dir() }
}

#[cfg(unix)]
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

#[cfg(unix)]
struct ServerChunk {
    map: Mapping,
    path: PathBuf,
    announced: bool,
    unlinked: bool,
}

#[cfg(unix)]
/// The server's side: chunks created on demand.
pub struct ServerPool {
    geo: Geometry,
    chunks: Mutex<BTreeMap<u32, ServerChunk>>,
}

#[cfg(unix)]
impl ServerPool {
    pub fn new(geo: Geometry) -> ServerPool {
        ServerPool {
            geo,
            chunks: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, ServerChunk>> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn create(&self, chunk: u32) -> io::Result<ServerChunk> {
        // Unique even when a killed server left files behind under a pid
        // the system has since reused: the process's start time is part of
        // the name.
        static STAMP: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        let stamp = *STAMP.get_or_init(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
        let n = NEXT_FILE.fetch_add(1, Ordering::Relaxed);
        let path = shm_dir().join(format!(
            "vdisim-{}-{stamp:x}-{n}-{chunk}",
            std::process::id()
        ));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        file.set_len(self.geo.chunk_len())?;
        let len = usize::try_from(self.geo.chunk_len())
            .map_err(|_| io::Error::other("chunk too large"))?;
        let map = Mapping::map(&file, len, self.geo.align as usize).inspect_err(|_| {
            let _ = std::fs::remove_file(&path);
        })?;
        Ok(ServerChunk {
            map,
            path,
            announced: false,
            unlinked: false,
        })
    }

    /// The data zone of buffer `id`, creating its chunk if needed.
    fn data(&self, id: BufId) -> Option<NonNull<u8>> {
        let chunk = id.0 / PER_CHUNK;
        let ix = u64::from(id.0 % PER_CHUNK);
        let mut g = self.lock();
        if let std::collections::btree_map::Entry::Vacant(v) = g.entry(chunk) {
            match self.create(chunk) {
                Ok(c) => {
                    v.insert(c);
                }
                Err(e) => {
                    eprintln!("vdisim serve: cannot create shared buffer memory: {e}");
                    return None;
                }
            }
        }
        let c = g.get(&chunk)?;
        let off = usize::try_from(ix * self.geo.stride + self.geo.data_offset).ok()?;
        // SAFETY: `off + size <= chunk_len` by the geometry, inside the mapping.
        Some(unsafe { NonNull::new_unchecked(c.map.base().as_ptr().add(off)) })
    }

    /// Chunks the client has not been told about yet (marked told).
    pub fn take_announcements(&self) -> Vec<MapChunk> {
        let mut g = self.lock();
        let geo = self.geo;
        g.iter_mut()
            .filter(|(_, c)| !c.announced)
            .map(|(k, c)| {
                c.announced = true;
                MapChunk {
                    chunk: *k,
                    path: c.path.display().to_string(),
                    len: geo.chunk_len(),
                    stride: geo.stride,
                    data_offset: geo.data_offset,
                    per_chunk: PER_CHUNK,
                    align: geo.align,
                }
            })
            .collect()
    }

    /// The client mapped `chunk`: its file can go.
    pub fn unlink(&self, chunk: u32) {
        if let Some(c) = self.lock().get_mut(&chunk)
            && !c.unlinked
        {
            c.unlinked = true;
            let _ = std::fs::remove_file(&c.path);
        }
    }
}

#[cfg(unix)]
impl ServerPool {
    /// The set is over: no process will map its chunks any more, their
    /// files can go (the mappings stay until the pool is dropped).
    pub fn unlink_all(&self) {
        for c in self.lock().values_mut() {
            if !c.unlinked {
                c.unlinked = true;
                let _ = std::fs::remove_file(&c.path);
            }
        }
    }
}

#[cfg(unix)]
impl Drop for ServerPool {
    fn drop(&mut self) {
        for c in self.lock().values_mut() {
            if !c.unlinked {
                let _ = std::fs::remove_file(&c.path);
            }
        }
    }
}

#[cfg(unix)]
impl ServerBuffers for ServerPool {
    fn prepare(&self, id: BufId) {
        let _ = self.data(id);
    }
    fn with_bytes(&self, id: BufId, n: usize, f: &mut dyn FnMut(&mut [u8])) {
        let Some(p) = self.data(id) else { return };
        let n = n.min(self.geo.size as usize);
        // SAFETY: `p` points to `size` bytes of a live mapping this pool
        // owns; under the protocol the server owns the buffer now.
        let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) };
        f(s);
    }
}

/// The client's side: the chunks the server announced, mapped.
#[derive(Default)]
pub struct ClientMap {
    chunks: RwLock<BTreeMap<u32, (Mapping, MapChunk)>>,
}

impl ClientMap {
    /// Maps an announced chunk. The announcement comes from the peer, so
    /// its geometry is checked before anything is mapped: buffers that fit
    /// the chunk (`per_chunk * stride == len`, the data zone inside each),
    /// a power-of-two alignment of at most [`ALIGN_MAX`], a file at least
    /// `len` long (touching a mapping past the end of its file is SIGBUS),
    /// buffer ids that fit a `u32`, the same `per_chunk` as the chunks
    /// mapped before, and a chunk not mapped yet (mapping it again would
    /// unmap buffers the client may hold). Found by the `shm` fuzz target.
    pub fn add(&self, m: MapChunk) -> io::Result<()> {
        let bad = |why: &str| Err(io::Error::new(io::ErrorKind::InvalidData, why.to_string()));
        if m.stride == 0
            || m.per_chunk == 0
            || u64::from(m.per_chunk).checked_mul(m.stride) != Some(m.len)
            || m.data_offset >= m.stride
        {
            return bad("inconsistent chunk geometry");
        }
        if !m.align.is_power_of_two() || m.align > ALIGN_MAX {
            return bad("chunk alignment is not a power of two up to 1 GiB");
        }
        if m.chunk
            .checked_mul(m.per_chunk)
            .and_then(|first| first.checked_add(m.per_chunk - 1))
            .is_none()
        {
            return bad("chunk number out of range");
        }
        {
            let g = self.chunks.read().unwrap_or_else(|e| e.into_inner());
            if g.contains_key(&m.chunk) {
                return bad("chunk already mapped");
            }
            if g.values().any(|(_, o)| o.per_chunk != m.per_chunk) {
                return bad("buffers per chunk differ from the earlier chunks'");
            }
        }
        #[cfg(unix)]
        let file = OpenOptions::new().read(true).write(true).open(&m.path)?;
        #[cfg(windows)]
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(super::winmap::host_path(&m.path))?;
        let len = usize::try_from(m.len).map_err(|_| io::Error::other("chunk too large"))?;
        if file.metadata()?.len() < m.len {
            return bad("chunk file shorter than the chunk");
        }
        let map = Mapping::map(&file, len, m.align as usize)?;
        let mut g = self.chunks.write().unwrap_or_else(|e| e.into_inner());
        if g.contains_key(&m.chunk) || g.values().any(|(_, o)| o.per_chunk != m.per_chunk) {
            return bad("chunk already mapped");
        }
        g.insert(m.chunk, (map, m));
        Ok(())
    }
}

impl BufferMap for ClientMap {
    fn address(&self, id: BufId) -> Option<NonNull<u8>> {
        let g = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        let per = g.values().next()?.1.per_chunk;
        let (map, m) = g.get(&(id.0 / per))?;
        let off = u64::from(id.0 % m.per_chunk) * m.stride + m.data_offset;
        let off = usize::try_from(off).ok().filter(|o| *o < map.len())?;
        // SAFETY: in bounds of the mapping (checked above).
        Some(unsafe { NonNull::new_unchecked(map.base().as_ptr().add(off)) })
    }
    fn lookup(&self, addr: usize) -> Option<BufId> {
        let g = self.chunks.read().unwrap_or_else(|e| e.into_inner());
        for (k, (map, m)) in g.iter() {
            let base = map.base().as_ptr() as usize;
            if addr < base || addr >= base + map.len() {
                continue;
            }
            let rel = (addr - base) as u64;
            if rel % m.stride != m.data_offset {
                return None;
            }
            let ix = u32::try_from(rel / m.stride).ok()?;
            return k.checked_mul(m.per_chunk)?.checked_add(ix).map(BufId);
        }
        None
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn both_sides_see_the_same_bytes_aligned() {
        let geo = Geometry::new(512, 65536, 65536);
        let server = ServerPool::new(geo);
        server.with_bytes(BufId(17), 4, &mut |b| b.copy_from_slice(b"vdi!"));
        let ann = server.take_announcements();
        assert_eq!(ann.len(), 1);
        assert_eq!(ann[0].chunk, 1);
        assert!(server.take_announcements().is_empty(), "told once");
        let client = ClientMap::default();
        client.add(ann[0].clone()).unwrap();
        server.unlink(1);
        assert!(!std::path::Path::new(&ann[0].path).exists());
        let p = client.address(BufId(17)).unwrap();
        assert_eq!(p.as_ptr() as usize % 65536, 0, "data zone aligned");
        // SAFETY: 4 bytes of a live mapping.
        let got = unsafe { std::slice::from_raw_parts(p.as_ptr(), 4) };
        assert_eq!(got, b"vdi!");
        assert_eq!(client.lookup(p.as_ptr() as usize), Some(BufId(17)));
        assert_eq!(client.lookup(p.as_ptr() as usize + 1), None);
        assert_eq!(
            client.address(BufId(3)),
            None,
            "chunk 0 was never announced"
        );
    }

    /// Geometry the peer announces is checked before anything is mapped
    /// (found by the `shm` fuzz target).
    #[test]
    fn bad_geometry_is_refused() {
        let path = std::env::temp_dir().join(format!("vdisim-shm-geo-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(2 * 4096).unwrap();
        let ok = MapChunk {
            chunk: 0,
            path: path.display().to_string(),
            len: 2 * 4096,
            stride: 4096,
            data_offset: 512,
            per_chunk: 2,
            align: 4096,
        };
        let c = ClientMap::default();
        for bad in [
            MapChunk {
                len: 4 * 4096,
                stride: 2 * 4096,
                ..ok.clone()
            }, // past the file's end
            MapChunk {
                align: 3 << 12,
                ..ok.clone()
            },
            MapChunk {
                align: u64::MAX,
                ..ok.clone()
            },
            MapChunk {
                align: 1 << 40,
                ..ok.clone()
            },
            MapChunk {
                chunk: u32::MAX,
                ..ok.clone()
            },
            MapChunk {
                data_offset: 4096,
                ..ok.clone()
            },
        ] {
            assert!(c.add(bad.clone()).is_err(), "{bad:?}");
        }
        c.add(ok.clone()).unwrap();
        assert!(c.add(ok.clone()).is_err(), "a chunk mapped again");
        let other = MapChunk {
            chunk: 1,
            len: 4096,
            per_chunk: 1,
            ..ok.clone()
        };
        assert!(c.add(other).is_err(), "another per_chunk");
        let p = c.address(BufId(1)).unwrap();
        assert_eq!(c.lookup(p.as_ptr() as usize), Some(BufId(1)));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_bad_announcement_is_an_error() {
        let c = ClientMap::default();
        let m = MapChunk {
            chunk: 0,
            path: "/nonexistent/vdisim".into(),
            len: 4096,
            stride: 4096,
            data_offset: 0,
            per_chunk: 1,
            align: 4096,
        };
        assert!(c.add(m).is_err());
    }
}
