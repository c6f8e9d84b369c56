//! A control connection to `vdisim serve`: T-SQL batches (what `vdisim
//! sqlcmd` sends) and harness case control.

use super::wire::{self, Frame, PROTOCOL, Request, Response};
use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;

/// One control connection.
pub struct Control {
    s: UnixStream,
}

impl Control {
    /// Connects to the server at `path`, introducing itself as `client`.
    pub fn connect(path: &Path, client: &str) -> io::Result<Control> {
        let mut s = UnixStream::connect(path)?;
        wire::write_frame(
            &mut s,
            &Frame::HelloControl {
                protocol: PROTOCOL,
                client: client.to_string(),
            },
        )?;
        Ok(Control { s })
    }

    /// Sends `r` and waits for its response.
    pub fn request(&mut self, r: Request) -> io::Result<Response> {
        wire::write_frame(&mut self.s, &Frame::Request(r))?;
        match wire::read_frame(&mut self.s)? {
            Some(Frame::Response(resp)) => Ok(resp),
            Some(Frame::Refused { reason, .. }) => {
                Err(io::Error::new(io::ErrorKind::ConnectionRefused, reason))
            }
            Some(other) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected frame from the server: {other:?}"),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            )),
        }
    }
}
