//! Reading frames from a peer that may be slow, stuck or hostile, and
//! knowing who the peer is.

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use vdi_host::remote::wire::{self, Frame};

/// A reader that gives the peer up to `idle` (`None`: forever) to start a
/// frame, and then `limit` in all for the rest of it, however the
/// bytes are spread (a peer that drips a byte at a time, or stops mid-frame,
/// is cut off at the deadline).
struct Timed<'a> {
    s: &'a mut UnixStream,
    idle: Option<Duration>,
    limit: Duration,
    deadline: Option<Instant>,
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = match self.deadline {
            None => self.idle,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the frame did not arrive in time",
                    ));
                }
                Some(left)
            }
        };
        self.s.set_read_timeout(wait)?;
        let n = self.s.read(buf)?;
        if n > 0 && self.deadline.is_none() {
            self.deadline = Some(Instant::now() + self.limit);
        }
        Ok(n)
    }
}

/// Reads one frame of at most `max` bytes, waiting `idle` (`None`:
/// forever) for its first byte and `limit` for the rest: `Ok(None)` at a
/// clean end. Nothing is allocated for a length prefix alone.
pub(super) fn read_frame_timed(
    s: &mut UnixStream,
    max: usize,
    idle: Option<Duration>,
    limit: Duration,
) -> io::Result<Option<Frame>> {
    let mut t = Timed {
        s,
        idle,
        limit,
        deadline: None,
    };
    let r = wire::read_frame_capped(&mut t, max);
    // A reader that waits forever between frames waits forever again.
    if idle.is_none() {
        let _ = t.s.set_read_timeout(None);
    }
    r
}

/// Bytes of control frames being received, server-wide: a frame's body is
/// read in pieces, each taken from this budget first and given back once
/// the frame is whole (or dropped), so peers that announce large frames and
/// stop can make the server hold at most the budget
/// (`vdi_spec::bounds::PARTIAL_FRAME_BYTES_MAX`), each for at most the
/// frame deadline.
pub(super) struct Budget {
    held: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl Budget {
    pub(super) fn new(max: usize) -> Budget {
        Budget {
            held: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    fn take(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.held
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |h| {
                h.checked_add(n).filter(|t| *t <= self.max)
            })
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Bytes taken from a [`Budget`], given back when dropped.
struct Taken<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        self.budget.give(self.n);
    }
}

/// As [`read_frame_timed`] with no wait before the first byte, the body
/// read in pieces of at most 64 KiB, each taken from `budget` first (a
/// frame the budget cannot hold ends the connection).
pub(super) fn read_frame_budgeted(
    s: &mut UnixStream,
    max: usize,
    limit: Duration,
    budget: &Budget,
) -> io::Result<Option<Frame>> {
    let mut t = Timed {
        s,
        idle: None,
        limit,
        deadline: None,
    };
    let r = read_budgeted(&mut t, max, budget);
    let _ = t.s.set_read_timeout(None);
    r
}

fn read_budgeted(t: &mut Timed<'_>, max: usize, budget: &Budget) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = t.read(&mut len[got..])?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        got += n;
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max}-byte limit"),
        ));
    }
    let mut taken = Taken { budget, n: 0 };
    let mut body = Vec::new();
    while body.len() < len {
        let piece = (len - body.len()).min(64 * 1024);
        if !budget.take(piece) {
            return Err(io::Error::other(
                "the server holds as many partly received frames as it may",
            ));
        }
        taken.n += piece;
        body.reserve_exact(piece);
        let start = body.len();
        body.resize(start + piece, 0);
        t.read_exact(&mut body[start..])?;
    }
    drop(taken);
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad frame: {e}")))
}

/// The peer's user id and process id (`SO_PEERCRED`).
pub(super) fn peer(s: &UnixStream) -> io::Result<(u32, i32)> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given,
    // and the descriptor is open for the life of `s`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((cred.uid, cred.pid))
}

/// This process's user id.
pub(super) fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A frame the budget cannot hold ends the read before it is whole;
    /// the bytes of a frame that arrived whole are given back.
    #[test]
    fn the_budget_bounds_partly_received_frames() {
        let budget = Budget::new(200 * 1024);
        let (mut a, mut b) = UnixStream::pair().unwrap();
        let f = Frame::Request(vdi_host::remote::wire::Request::Status);
        wire::write_frame(&mut a, &f).unwrap();
        let got = read_frame_budgeted(&mut b, 1 << 20, Duration::from_secs(5), &budget);
        assert!(matches!(got, Ok(Some(Frame::Request(_)))), "{got:?}");
        assert_eq!(budget.held.load(std::sync::atomic::Ordering::SeqCst), 0);
        // Another reader holds most of the budget.
        assert!(budget.take(150 * 1024));
        a.write_all(&(512u32 * 1024).to_le_bytes()).unwrap();
        a.write_all(&[b' '; 100 * 1024]).unwrap();
        let got = read_frame_budgeted(&mut b, 1 << 20, Duration::from_secs(5), &budget);
        let e = got.unwrap_err();
        assert!(e.to_string().contains("partly received"), "{e}");
        assert_eq!(
            budget.held.load(std::sync::atomic::Ordering::SeqCst),
            150 * 1024,
            "what the failed read took is given back"
        );
    }
}
