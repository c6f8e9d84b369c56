//! The listening socket: where it may go, what it may replace, and its
//! removal when the server is stopped by a signal.

use super::*;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

/// Binds the socket at `path`.
///
/// - A missing parent directory is an error, except the per-user default
///   directory (`vdi_host::remote::default_address`), created mode 0700;
///   an existing default directory must be this user's and not writable by
///   others.
/// - An existing socket that a server answers on: [`ServeError::InUse`].
/// - An existing socket that nothing answers on (left by a server that is
///   gone) is replaced.
/// - Any other existing file is never touched: [`ServeError::NotASocket`].
pub(super) fn prepare_socket(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |err| ServeError::Listen {
        path: path.to_path_buf(),
        err,
    };
    let default = vdi_host::remote::default_address();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let is_default = default.parent() == Some(dir);
        if !dir.exists() {
            if !is_default {
                return Err(ServeError::NoDirectory {
                    dir: dir.to_path_buf(),
                });
            }
            std::fs::create_dir_all(dir).map_err(err)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
        } else if is_default {
            let m = std::fs::metadata(dir).map_err(err)?;
            if m.uid() != frames::own_uid() || m.mode() & 0o022 != 0 {
                return Err(err(io::Error::other(format!(
                    "the per-user directory {} belongs to another user or is writable by others; remove it, or choose another path with --listen or VDISIM_SERVER",
                    dir.display()
                ))));
            }
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(ServeError::InUse(path.to_path_buf()));
            }
            // A socket file left by a server that is gone.
            std::fs::remove_file(path).map_err(err)?;
        }
        Ok(_) => {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}

/// SIGINT and SIGTERM, blocked in every thread and taken by one thread
/// that stops the server (which removes its socket).
///
/// Call [`Signals::block`] before any thread starts (the mask is
/// inherited), then [`Signals::stop_on_signal`] with the running server.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM in this thread (and the threads it starts
    /// from now on).
    pub fn block() -> io::Result<Signals> {
        // SAFETY: sigemptyset/sigaddset write into the set we own;
        // pthread_sigmask reads it; none has other preconditions.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            set
        };
        Ok(Signals { set })
    }

    /// Starts the thread that waits for SIGINT or SIGTERM and then stops
    /// `server` (its socket removed, [`Server::wait`] returning).
    pub fn stop_on_signal(self, server: &Server) -> io::Result<()> {
        let inner = server.inner.clone();
        std::thread::Builder::new()
            .name("vdisim-serve-signals".into())
            .spawn(move || {
                let mut sig: libc::c_int = 0;
                // SAFETY: the set was built by `block`; `sig` is valid for
                // a write. The signals are blocked in every thread, so
                // sigwait is where they are delivered.
                let rc = unsafe { libc::sigwait(&self.set, &mut sig) };
                if rc == 0 {
                    inner.request_stop();
                }
            })
            .map(|_| ())
    }
}
