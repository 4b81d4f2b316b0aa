//! A loopback HTTP server for the tests of outgoing `wasi:http`, plain or
//! over TLS with a certificate from a CA made in the test ([`TestCa`]). It
//! serves one connection on a thread and gives back what reached it: each
//! request's head and body. A TLS handshake that fails reaches nothing.

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the server waits for a client, and for each read or write.
const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority made for one test.
pub struct TestCa {
    cert: Certificate,
    key: KeyPair,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// The CA's certificate in PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Writes the CA's certificate to `dir/name`, and gives the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A server configuration with a certificate this CA issued for `names`
    /// (host names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.cert, &self.key)
            .unwrap();
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        Arc::new(config)
    }
}

/// How the server answers a request.
#[derive(Clone)]
pub enum Answer {
    /// `200` with this body and its `Content-Length`.
    Body(Vec<u8>),
    /// `200` with this body, chunked: its length is not said in advance.
    Chunked(Vec<u8>),
    /// Nothing, until the client goes away (or [`WAIT`] passes).
    Stall,
    /// `200` with a `Content-Length` one byte longer than this body, then
    /// nothing more until the client goes away.
    StallInBody(Vec<u8>),
    /// Reads whatever comes (a TLS handshake included) and never says a
    /// word, until the client goes away; nothing counts as received.
    Silent,
}

/// One request as the server received it.
#[derive(Debug, Clone, Default)]
pub struct Received {
    /// The request line, then each header line as sent.
    pub head: Vec<String>,
    /// The body, de-chunked; `None` when it did not arrive whole.
    pub body: Option<Vec<u8>>,
}

/// A server thread started by [`serve`].
pub struct Server {
    thread: JoinHandle<Option<Vec<Received>>>,
    done: Arc<AtomicBool>,
}

impl Server {
    /// The requests that reached the server: none when nobody came or the
    /// TLS handshake failed. Call it once the client is done: a connection
    /// not made by then is not waited for.
    pub fn join(self) -> Vec<Received> {
        self.join_connection().unwrap_or_default()
    }

    /// Like [`Server::join`], but `None` when nobody even connected.
    pub fn join_connection(self) -> Option<Vec<Received>> {
        self.done.store(true, Ordering::SeqCst);
        self.thread.join().unwrap()
    }
}

/// A loopback server for one connection, over TLS with `tls`: its port, and
/// the [`Server`] that tells what reached it.
pub fn serve(tls: Option<Arc<rustls::ServerConfig>>, answer: Answer) -> (u16, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let done = Arc::new(AtomicBool::new(false));
    let client_done = Arc::clone(&done);
    let thread = std::thread::spawn(move || {
        let stream = accept(&listener, &client_done)?;
        Some(match tls {
            Some(config) => {
                let connection = rustls::ServerConnection::new(config).unwrap();
                exchange(rustls::StreamOwned::new(connection, stream), &answer)
            }
            None => exchange(stream, &answer),
        })
    });
    (port, Server { thread, done })
}

/// The first client of `listener`, or `None` once the client side is `done`
/// with none waiting (or after [`WAIT`]).
fn accept(listener: &TcpListener, done: &AtomicBool) -> Option<TcpStream> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        // Read before accepting: a connection made before `done` is queued.
        let finished = done.load(Ordering::SeqCst);
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                stream.set_write_timeout(Some(WAIT)).unwrap();
                return Some(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && finished => return None,
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("accept: {e}"),
        }
    }
    None
}

/// Reads one request on `stream` and answers it. A read that fails (a
/// handshake refused, a client gone) ends the exchange with what arrived.
fn exchange<S: Read + Write>(mut stream: S, answer: &Answer) -> Vec<Received> {
    if let Answer::Silent = answer {
        while stream.read(&mut [0; 4096]).is_ok_and(|n| n > 0) {}
        return Vec::new();
    }
    let mut reader = BufReader::new(stream);
    let mut received = Received::default();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => {
                return if received.head.is_empty() {
                    Vec::new()
                } else {
                    vec![received]
                };
            }
            Ok(_) if line.trim_end().is_empty() => break,
            Ok(_) => received.head.push(line.trim_end().to_string()),
        }
    }
    let header = |name: &str| {
        received.head.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let length = header("content-length").and_then(|v| v.parse::<usize>().ok());
    let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    received.body = read_body(&mut reader, length, chunked);
    let stream = reader.get_mut();
    let reply = match answer {
        Answer::Body(body) => [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes(),
            body.clone(),
        ]
        .concat(),
        Answer::Chunked(body) => [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec(),
            body.chunks(4096)
                .flat_map(|c| [format!("{:x}\r\n", c.len()).into_bytes(), c.to_vec(), b"\r\n".to_vec()].concat())
                .collect(),
            b"0\r\n\r\n".to_vec(),
        ]
        .concat(),
        Answer::Stall | Answer::StallInBody(_) | Answer::Silent => {
            if let Answer::StallInBody(body) = answer {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len() + 1);
                let _ = stream
                    .write_all(&[head.as_bytes(), body].concat())
                    .and_then(|()| stream.flush());
            }
            // Until the client hangs up: a read then ends.
            let _ = stream.read(&mut [0; 1]);
            return vec![received];
        }
    };
    // The client may hang up first (a body over its limit): not an error here.
    let _ = stream.write_all(&reply).and_then(|()| stream.flush());
    vec![received]
}

/// A request's body: `length` bytes, or chunks until the last; `None` when
/// the client stopped before it ended (or sent none of either).
fn read_body(reader: &mut impl BufRead, length: Option<usize>, chunked: bool) -> Option<Vec<u8>> {
    if !chunked {
        let mut body = vec![0; length.unwrap_or(0)];
        return reader.read_exact(&mut body).ok().map(|()| body);
    }
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim_end(), 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}
