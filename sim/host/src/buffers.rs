//! The server's buffer memory, as each side sees it.
//!
//! The server half names buffers by id ([`BufId`]); real memory stands
//! behind them. The server side ([`ServerBuffers`]) fills a Write's buffer
//! before the command reaches the client and reads a Read's buffer back at
//! completion; the client side ([`BufferMap`]) turns an id into the address
//! a `VDC_Command` carries and back. [`Pool`] is the heap memory of an
//! in-process server (both sides in one process); `remote::shm` is shared
//! memory mapped by the server process and the client process.

use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::Mutex;
use vdi_model::msg::BufId;

/// The server's buffer memory for one set incarnation.
pub trait ServerBuffers: Send + Sync {
    /// Makes buffer `id` exist (the client will be handed its address).
    fn prepare(&self, id: BufId);
    /// Runs `f` on the first `n` data bytes of buffer `id` (clamped to the
    /// buffer). The caller owns the buffer under the protocol.
    fn with_bytes(&self, id: BufId, n: usize, f: &mut dyn FnMut(&mut [u8]));
}

/// Real memory behind the server's buffer ids, as the client sees it: what
/// a `VDC_Command`'s `buffer` points to.
pub trait BufferMap: Send + Sync {
    /// The data-zone address of buffer `id` (the prefix zone lies before it).
    fn address(&self, id: BufId) -> Option<NonNull<u8>>;
    /// The buffer whose data zone starts exactly at `addr`.
    fn lookup(&self, addr: usize) -> Option<BufId>;
}

/// One buffer: a heap allocation handed to the client by address.
struct Buf {
    /// Start of the allocation (from `Box::<[u8]>::into_raw`).
    base: NonNull<u8>,
    len: usize,
    /// Offset of the data zone (after the prefix zone, aligned).
    data: usize,
}

/// The server's buffer pool for one statement: BUFFERCOUNT buffers of
/// prefixZoneSize + MAXTRANSFERSIZE bytes, allocated on first use, data
/// zones aligned to max(alignment, BLOCKSIZE). Freed when the pool drops
/// (after the set is closed and created again, or the object is gone).
pub struct Pool {
    bufs: Mutex<BTreeMap<u32, Buf>>,
    prefix: usize,
    size: usize,
    align: usize,
}

// SAFETY: the pool owns its allocations exclusively (raw pointers obtained
// from `Box::into_raw`, freed only in `Drop`); the map is behind a mutex.
// Who may touch a buffer's bytes when is the VDI protocol's rule (the client
// between GetCommand and CompleteCommand, the server otherwise), with the
// hand-over ordered by the runtime's lock and the server channel.
unsafe impl Send for Pool {}
// SAFETY: as for `Send`: shared access only goes through the mutex or
// through raw pointers whose use the protocol serialises.
unsafe impl Sync for Pool {}

impl Pool {
    /// A pool of buffers with `size` data bytes after a `prefix`-byte zone,
    /// data aligned to `align` (a power of two).
    pub fn new(prefix: u32, size: u32, align: u32) -> Pool {
        Pool {
            bufs: Mutex::new(BTreeMap::new()),
            prefix: prefix as usize,
            size: size as usize,
            align: (align.max(16) as usize).next_power_of_two(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Buf>> {
        self.bufs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Allocates buffer `id` if needed; returns its data-zone address.
    pub(crate) fn ensure(&self, id: BufId) -> NonNull<u8> {
        let mut g = self.lock();
        let b = g.entry(id.0).or_insert_with(|| {
            let len = self.prefix + self.align + self.size;
            let raw = Box::into_raw(vec![0u8; len].into_boxed_slice()) as *mut u8;
            let base = NonNull::new(raw).unwrap_or(NonNull::dangling());
            let addr = base.as_ptr() as usize + self.prefix;
            let data = self.prefix + (addr.next_multiple_of(self.align) - addr);
            Buf { base, len, data }
        });
        // SAFETY: `data + size <= len` by construction, so the offset stays
        // inside the allocation.
        unsafe { NonNull::new_unchecked(b.base.as_ptr().add(b.data)) }
    }

    /// Runs `f` on the first `n` data bytes of buffer `id` (clamped to the
    /// buffer). The caller must own the buffer under the protocol.
    pub(crate) fn with_bytes<T>(&self, id: BufId, n: usize, f: impl FnOnce(&mut [u8]) -> T) -> T {
        let p = self.ensure(id);
        let n = n.min(self.size);
        // SAFETY: `p` points to `size` initialised bytes owned by this pool
        // and alive while `self` is; under the protocol the server thread
        // (the only caller) owns the buffer now: the client got it only in a
        // command not yet delivered, or has completed that command.
        let s = unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), n) };
        f(s)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (_, b) in std::mem::take(&mut *self.lock()) {
            let slice = std::ptr::slice_from_raw_parts_mut(b.base.as_ptr(), b.len);
            // SAFETY: `slice` is exactly the allocation `Box::into_raw` gave
            // in `ensure`, freed once here.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

impl ServerBuffers for Pool {
    fn prepare(&self, id: BufId) {
        self.ensure(id);
    }
    fn with_bytes(&self, id: BufId, n: usize, f: &mut dyn FnMut(&mut [u8])) {
        Pool::with_bytes(self, id, n, |b| f(b));
    }
}

impl BufferMap for Pool {
    fn address(&self, id: BufId) -> Option<NonNull<u8>> {
        let g = self.lock();
        let b = g.get(&id.0)?;
        // SAFETY: in bounds of the allocation, as in `ensure`.
        Some(unsafe { NonNull::new_unchecked(b.base.as_ptr().add(b.data)) })
    }
    fn lookup(&self, addr: usize) -> Option<BufId> {
        self.lock()
            .iter()
            .find(|(_, b)| b.base.as_ptr() as usize + b.data == addr)
            .map(|(k, _)| BufId(*k))
    }
}
