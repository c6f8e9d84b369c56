//! TLS inside PRELOGIN (MS-TDS 2.2.6.5 "Encryption", 3.3.5.1–3.3.5.4;
//! `../shared/tds-notes.md` §5): the encryption a session negotiates,
//! the TLS handshake carried in PRELOGIN packets (type 0x12, one reply
//! message per client flight), then TLS records straight on the socket.
//!
//! TLS is capped at 1.2: TDS 7.x clients (ODBC Driver 18, FreeTDS,
//! tiberius) fail when TLS 1.3 is chosen inside PRELOGIN. TDS 8
//! (`Encrypt=strict`, [`accept_strict`]) starts with TLS on the socket
//! (1.3 or 1.2, ALPN `tds/8.0`) and runs everything inside. The certificate
//! is generated at start (self-signed, ECDSA P-256, names `localhost` and
//! `127.0.0.1`, a leaf: `CA:FALSE`) unless PEM files are given
//! (`--tls-cert FILE --tls-key FILE`).
//!
//! Negotiation ([`negotiate`], the client's PRELOGIN ENCRYPTION against
//! the server's setting; the 0x80 client-certificate bit is ignored):
//!
//! | client | server (TLS) | server (`--tls-required`) | server (no TLS) |
//! |---|---|---|---|
//! | OFF | OFF: LOGIN7 encrypted, then plaintext | REQ: all encrypted | NOT_SUP: plaintext |
//! | ON, REQ | ON: all encrypted | ON: all encrypted | NOT_SUP: the client gives up; closed |
//! | NOT_SUP | NOT_SUP: plaintext | REQ, then closed | NOT_SUP: plaintext |
//!
//! Bounds: each handshake flight is a PRELOGIN-sized message
//! ([`packet::LOGIN_BYTES_MAX`]), at most [`HANDSHAKE_FLIGHTS_MAX`]
//! flights, all within the frame deadline; after the handshake a read
//! takes at most [`RECORD_READ_MAX`] bytes off the socket and keeps what
//! they decrypt to (never more than was read). PEM files are at most
//! [`PEM_BYTES_MAX`] bytes.

// The server side (`vdisim serve --tds`) is built for Unix only; on other
// targets only the configuration half is used.
#![cfg_attr(not(unix), allow(dead_code))]

use super::TdsError;
use super::packet::{self, Limits, kind};
use super::prelogin::encrypt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection};
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use thiserror::Error;

/// The most bytes a PEM file (`--tls-cert`, `--tls-key`) may have.
pub const PEM_BYTES_MAX: u64 = 1 << 20;
/// The most client flights a TLS handshake may take (TLS 1.2 needs two).
pub const HANDSHAKE_FLIGHTS_MAX: usize = 4;
/// The most bytes one read takes off the socket once TLS is on (a TLS
/// record is at most 16 KiB of data plus its overhead).
pub const RECORD_READ_MAX: usize = 18 << 10;

/// How TDS clients are offered TLS (`vdisim serve --tds`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A PEM certificate chain and its PEM private key (PKCS#8, PKCS#1 or
    /// SEC1); `None`: a self-signed certificate made at start.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// Refuse clients that do not support encryption, and encrypt the
    /// whole session of clients that offer it only for the login.
    pub required: bool,
}

/// Why the server's TLS cannot be set up.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("cannot read the TLS {what} file {path}: {err}: give a readable PEM file")]
    Read {
        what: &'static str,
        path: PathBuf,
        err: io::Error,
    },
    #[error(
        "the TLS {what} file {path} is larger than {PEM_BYTES_MAX} bytes: give a PEM file with just the {what}"
    )]
    TooLarge { what: &'static str, path: PathBuf },
    #[error(
        "the TLS {what} file {path} holds no usable PEM {what} ({why}): give a PEM file (-----BEGIN ...-----)"
    )]
    Pem {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(
        "the TLS certificate {cert} and key {key} cannot serve together ({why}): give the private key that belongs to the certificate"
    )]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        why: String,
    },
    #[error("cannot make a self-signed TLS certificate: {0}")]
    Generate(String),
}

/// The server side of TLS: the rustls configuration (TLS 1.2 only, ring)
/// and the policy.
pub struct ServerTls {
    config: Arc<ServerConfig>,
    /// TDS 8 (`Encrypt=strict`): TLS 1.2 or 1.3 first on the socket,
    /// ALPN `tds/8.0`.
    strict: Arc<ServerConfig>,
    required: bool,
    /// Where the certificate came from (for the start line).
    pub origin: String,
    /// The certificate chain, PEM (what a client that validates it is
    /// given to trust).
    pub cert_pem: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("required", &self.required)
            .field("origin", &self.origin)
            .finish()
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    let read = |err| TlsSetupError::Read {
        what,
        path: path.to_path_buf(),
        err,
    };
    let f = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    f.take(PEM_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() as u64 > PEM_BYTES_MAX {
        return Err(TlsSetupError::TooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

impl ServerTls {
    /// From the options: PEM files, or a self-signed certificate.
    pub fn new(o: &TlsOptions) -> Result<ServerTls, TlsSetupError> {
        match &o.cert_key {
            Some((cert, key)) => ServerTls::from_pem(cert, key, o.required),
            None => ServerTls::self_signed(o.required),
        }
    }

    /// A self-signed leaf certificate for `localhost` and `127.0.0.1`.
    pub fn self_signed(required: bool) -> Result<ServerTls, TlsSetupError> {
        let generate = |e: rcgen::Error| TlsSetupError::Generate(e.to_string());
        let key = rcgen::KeyPair::generate().map_err(generate)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .map_err(generate)?;
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        let cert = params.self_signed(&key).map_err(generate)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let (config, strict) = build(vec![cert.der().clone()], key_der)
            .map_err(|e| TlsSetupError::Generate(e.to_string()))?;
        Ok(ServerTls {
            config,
            strict,
            required,
            origin: "a self-signed certificate for localhost and 127.0.0.1, made at start".into(),
            cert_pem: cert.pem(),
        })
    }

    /// A certificate chain and key from PEM files.
    pub fn from_pem(cert: &Path, key: &Path, required: bool) -> Result<ServerTls, TlsSetupError> {
        let pem = |what, path: &Path, why: String| TlsSetupError::Pem {
            what,
            path: path.to_path_buf(),
            why,
        };
        let bytes = read_pem("certificate", cert)?;
        let cert_pem = String::from_utf8_lossy(&bytes).into_owned();
        let chain = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem("certificate", cert, e.to_string()))?;
        if chain.is_empty() {
            return Err(pem("certificate", cert, "no CERTIFICATE block".into()));
        }
        let bytes = read_pem("key", key)?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| pem("key", key, e.to_string()))?;
        let (config, strict) = build(chain, key_der).map_err(|e| TlsSetupError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            why: e.to_string(),
        })?;
        Ok(ServerTls {
            config,
            strict,
            required,
            origin: format!("the certificate {}", cert.display()),
            cert_pem,
        })
    }

    /// Whether clients must encrypt.
    pub fn required(&self) -> bool {
        self.required
    }
}

/// TDS 7.x: TLS 1.2 only; TDS 8: TLS 1.3 or 1.2 with ALPN `tds/8.0`. The
/// ring provider (chosen explicitly: another crate of the build may
/// enable a second provider).
type Configs = (Arc<ServerConfig>, Arc<ServerConfig>);

fn build(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Configs, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())?;
    let mut strict = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    strict.alpn_protocols = vec![b"tds/8.0".to_vec()];
    Ok((Arc::new(config), Arc::new(strict)))
}

/// What a session does about encryption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// No TLS.
    Plain,
    /// TLS for LOGIN7 only, then plaintext (the client said ENCRYPT_OFF).
    LoginOnly,
    /// TLS for the whole session.
    Full,
    /// The PRELOGIN answer, then the connection is closed: one side
    /// requires encryption the other does not support.
    Refused,
}

/// The PRELOGIN ENCRYPTION answer to a client's `client` value, and what
/// follows (the table in the module docs).
pub fn negotiate(client: Option<u8>, tls: Option<&ServerTls>) -> (u8, Mode) {
    let client = client.map(|e| e & 0x7F).unwrap_or(encrypt::NOT_SUP);
    match (tls, client) {
        (None, encrypt::ON | encrypt::REQ) => (encrypt::NOT_SUP, Mode::Refused),
        (None, _) => (encrypt::NOT_SUP, Mode::Plain),
        (Some(_), encrypt::ON | encrypt::REQ) => (encrypt::ON, Mode::Full),
        (Some(t), encrypt::OFF) if t.required => (encrypt::REQ, Mode::Full),
        (Some(_), encrypt::OFF) => (encrypt::OFF, Mode::LoginOnly),
        (Some(t), _) if t.required => (encrypt::REQ, Mode::Refused),
        (Some(_), _) => (encrypt::NOT_SUP, Mode::Plain),
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

/// Feeds `data` (TLS records) to `conn`; what it decrypts to is appended
/// to `plain`; whatever rustls has to send (handshake flights, alerts) is
/// written to `out`. Returns whether the peer closed TLS (close_notify).
fn feed(
    conn: &mut ServerConnection,
    mut data: &[u8],
    plain: &mut Vec<u8>,
    out: &mut dyn Write,
) -> io::Result<bool> {
    let mut closed = false;
    while !data.is_empty() {
        conn.read_tls(&mut data)?;
        if let Err(e) = conn.process_new_packets() {
            // Tell the client why (the alert), then fail.
            let _ = conn.write_tls(out);
            return Err(tls_error(e));
        }
        let mut buf = [0u8; 4096];
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
    }
    while conn.wants_write() {
        conn.write_tls(out)?;
    }
    Ok(closed)
}

/// Runs the TLS handshake carried in PRELOGIN messages: each client
/// flight is one 0x12 message, each answer one 0x12 message.
pub(crate) fn accept<R: Read>(
    r: &mut R,
    w: &mut dyn Write,
    tls: &ServerTls,
    spid: u16,
) -> Result<ServerConnection, TdsError> {
    let mut conn = ServerConnection::new(tls.config.clone()).map_err(tls_error)?;
    for _ in 0..HANDSHAKE_FLIGHTS_MAX {
        let Some(m) = packet::read_message(r, &Limits::LOGIN)? else {
            return Err(TdsError::malformed(
                "TLS handshake",
                "the client left before it finished (did it reject the certificate? self-signed: connect with TrustServerCertificate=yes)",
            ));
        };
        if m.kind != kind::PRELOGIN {
            return Err(TdsError::malformed(
                "TLS handshake",
                format!(
                    "a message of type 0x{:02x} where PRELOGIN (0x12) carrying TLS was due",
                    m.kind
                ),
            ));
        }
        let mut out = Vec::new();
        let mut plain = Vec::new();
        let fed = feed(&mut conn, &m.payload, &mut plain, &mut out);
        if !out.is_empty() {
            let bytes = packet::encode_message(kind::PRELOGIN, &out, packet::PACKET_DEFAULT, spid);
            w.write_all(&bytes)?;
        }
        fed?;
        if !plain.is_empty() {
            return Err(TdsError::malformed(
                "TLS handshake",
                "application data before the handshake finished",
            ));
        }
        if !conn.is_handshaking() {
            return Ok(conn);
        }
    }
    Err(TdsError::malformed(
        "TLS handshake",
        format!("not finished after {HANDSHAKE_FLIGHTS_MAX} client flights"),
    ))
}

/// TDS 8 (`Encrypt=strict`): the TLS handshake straight on the socket,
/// its first byte (`first`, 0x16) already read; at most
/// [`packet::LOGIN_BYTES_MAX`] bytes, within the reader's deadline.
/// Returns the connection and what the client sent after its Finished
/// (with TLS 1.3 the PRELOGIN may come in the same flight).
pub(crate) fn accept_strict<R: Read>(
    first: u8,
    r: &mut R,
    w: &mut dyn Write,
    tls: &ServerTls,
) -> Result<(ServerConnection, Vec<u8>), TdsError> {
    let mut conn = ServerConnection::new(tls.strict.clone()).map_err(tls_error)?;
    let mut plain = Vec::new();
    feed(&mut conn, &[first], &mut plain, w)?;
    let mut buf = vec![0u8; RECORD_READ_MAX];
    let mut total = 1;
    while conn.is_handshaking() {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Err(TdsError::malformed(
                "TLS handshake (TDS 8)",
                "the client left before it finished",
            ));
        }
        total += n;
        if total > packet::LOGIN_BYTES_MAX {
            return Err(TdsError::MessageTooLarge(packet::LOGIN_BYTES_MAX));
        }
        feed(&mut conn, &buf[..n], &mut plain, w)?;
    }
    Ok((conn, plain))
}

/// The socket's write side, through TLS while it is on.
pub(crate) struct Wire {
    stream: TcpStream,
    tls: Option<ServerConnection>,
}

impl Wire {
    pub(crate) fn new(stream: TcpStream) -> Wire {
        Wire { stream, tls: None }
    }

    /// TLS on (after [`accept`]).
    pub(crate) fn start_tls(&mut self, conn: ServerConnection) {
        self.tls = Some(conn);
    }

    /// TLS off without a close_notify (the login-only mode's switch back
    /// to plaintext after LOGIN7).
    pub(crate) fn drop_tls(&mut self) {
        self.tls = None;
    }

    pub(crate) fn has_tls(&self) -> bool {
        self.tls.is_some()
    }

    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(conn) = &mut self.tls else {
            return self.stream.write_all(bytes);
        };
        let mut rest = bytes;
        while !rest.is_empty() {
            // rustls buffers a bounded amount: write, then flush, until
            // everything went out.
            let n = conn.writer().write(rest)?;
            let mut flushed = false;
            while conn.wants_write() {
                conn.write_tls(&mut self.stream)?;
                flushed = true;
            }
            if n == 0 && !flushed {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS took no bytes",
                ));
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Ends the connection (a close_notify first when TLS is on).
    pub(crate) fn shutdown(&mut self) {
        if let Some(conn) = &mut self.tls {
            conn.send_close_notify();
            while conn.wants_write() {
                if conn.write_tls(&mut self.stream).is_err() {
                    break;
                }
            }
        }
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// The socket's read side: plaintext, decrypted while TLS is on. Without
/// TLS it reads the socket directly and never takes the write side's
/// lock; with TLS it takes it only to decrypt what it has read (the TLS
/// state is shared with the writers).
pub(crate) struct Reader<'a, R: Read> {
    /// The raw socket (with its deadline).
    pub(crate) raw: R,
    wire: &'a Mutex<Wire>,
    /// Whether TLS is on (the session switches it with the wire's).
    tls: bool,
    /// Raw bytes read, [`RECORD_READ_MAX`] (allocated once TLS is on).
    raw_buf: Vec<u8>,
    plain: Vec<u8>,
    at: usize,
    closed: bool,
}

impl<'a, R: Read> Reader<'a, R> {
    pub(crate) fn new(raw: R, wire: &'a Mutex<Wire>) -> Self {
        let tls = lock(wire).has_tls();
        Reader {
            raw,
            wire,
            tls,
            raw_buf: Vec::new(),
            plain: Vec::new(),
            at: 0,
            closed: false,
        }
    }

    /// Plaintext already decrypted (by [`accept_strict`]), read first.
    pub(crate) fn push_plain(&mut self, bytes: Vec<u8>) {
        self.plain.drain(..self.at);
        self.at = 0;
        self.plain.extend(bytes);
    }

    /// Follows the wire: TLS was switched on or off.
    pub(crate) fn set_tls(&mut self, on: bool) {
        self.tls = on;
    }

    /// Whether decrypted bytes wait to be read.
    pub(crate) fn has_buffered(&self) -> bool {
        self.at < self.plain.len()
    }
}

fn lock(m: &Mutex<Wire>) -> std::sync::MutexGuard<'_, Wire> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<R: Read> Read for Reader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.has_buffered() {
                let n = buf.len().min(self.plain.len() - self.at);
                buf[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            if self.closed {
                return Ok(0);
            }
            if !self.tls {
                return self.raw.read(buf);
            }
            self.raw_buf.resize(RECORD_READ_MAX, 0);
            let n = self.raw.read(&mut self.raw_buf)?;
            if n == 0 {
                return Ok(0);
            }
            self.plain.clear();
            self.at = 0;
            let mut w = lock(self.wire);
            let Wire { stream, tls } = &mut *w;
            let Some(conn) = tls else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "plaintext bytes arrived while TLS was being switched off",
                ));
            };
            self.closed = feed(conn, &self.raw_buf[..n], &mut self.plain, stream)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_negotiation_table() {
        let tls = ServerTls::self_signed(false).unwrap();
        let req = ServerTls::self_signed(true).unwrap();
        use encrypt::*;
        let t = |c, s| negotiate(c, s);
        assert_eq!(t(Some(OFF), Some(&tls)), (OFF, Mode::LoginOnly));
        assert_eq!(t(Some(ON), Some(&tls)), (ON, Mode::Full));
        assert_eq!(t(Some(REQ), Some(&tls)), (ON, Mode::Full));
        assert_eq!(t(Some(ON | 0x80), Some(&tls)), (ON, Mode::Full));
        assert_eq!(t(Some(NOT_SUP), Some(&tls)), (NOT_SUP, Mode::Plain));
        assert_eq!(t(None, Some(&tls)), (NOT_SUP, Mode::Plain));
        assert_eq!(t(Some(OFF), Some(&req)), (REQ, Mode::Full));
        assert_eq!(t(Some(ON), Some(&req)), (ON, Mode::Full));
        assert_eq!(t(Some(NOT_SUP), Some(&req)), (REQ, Mode::Refused));
        assert_eq!(t(Some(OFF), None), (NOT_SUP, Mode::Plain));
        assert_eq!(t(Some(NOT_SUP), None), (NOT_SUP, Mode::Plain));
        assert_eq!(t(Some(ON), None), (NOT_SUP, Mode::Refused));
        assert_eq!(t(Some(REQ), None), (NOT_SUP, Mode::Refused));
    }

    #[test]
    fn bad_pem_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("vdisim-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not a pem file\n").unwrap();
        let missing = dir.join("missing.pem");
        let e = ServerTls::from_pem(&missing, &junk, false).unwrap_err();
        assert!(matches!(e, TlsSetupError::Read { .. }), "{e}");
        assert!(e.to_string().contains("missing.pem"), "{e}");
        let e = ServerTls::from_pem(&junk, &junk, false).unwrap_err();
        assert!(matches!(e, TlsSetupError::Pem { .. }), "{e}");
        // A certificate with another certificate's key.
        let a = rcgen::generate_simple_self_signed(vec!["a".into()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b".into()]).unwrap();
        let (cert, key) = (dir.join("a.pem"), dir.join("b.key"));
        std::fs::write(&cert, a.cert.pem()).unwrap();
        std::fs::write(&key, b.key_pair.serialize_pem()).unwrap();
        let e = ServerTls::from_pem(&cert, &key, false).unwrap_err();
        assert!(matches!(e, TlsSetupError::Pair { .. }), "{e}");
        // The right pair serves.
        std::fs::write(&key, a.key_pair.serialize_pem()).unwrap();
        let ok = ServerTls::from_pem(&cert, &key, true).unwrap();
        assert!(ok.required());
        for f in [junk, cert, key] {
            std::fs::remove_file(f).unwrap();
        }
        std::fs::remove_dir(&dir).unwrap();
    }
}
