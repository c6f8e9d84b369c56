//! The listening socket.

use super::*;

pub(super) fn prepare_socket(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |err| ServeError::Listen {
        path: path.to_path_buf(),
        err,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(ServeError::InUse(path.to_path_buf()));
        }
        // A socket file left by a server that is gone.
        std::fs::remove_file(path).map_err(err)?;
    }
    UnixListener::bind(path).map_err(err)
}
