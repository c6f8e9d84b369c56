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
