//! A moto server (PyPI `moto[server]`) on a free loopback port, one per process, which stops by
//! itself when that process exits (a shell watchdog polls the parent's pid).
//!
//! Tests get a single-threaded server: moto checks a DynamoDB condition and then writes without
//! a lock, so with concurrent requests two conditional puts can both succeed, which DynamoDB
//! never allows. Serving one request at a time makes moto's conditional writes atomic, as
//! DynamoDB's are. The local run, whose pollers long-poll SQS, gets the threaded server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
}

static MOTO: OnceLock<Result<Moto, String>> = OnceLock::new();
static MOTO_THREADED: OnceLock<Result<Moto, String>> = OnceLock::new();

/// The process's single-threaded moto server, started on first use. `MOTO_ENDPOINT` names an
/// already running one instead.
pub fn moto() -> Result<&'static Moto, String> {
    MOTO.get_or_init(|| start(false)).as_ref().map_err(Clone::clone)
}

/// The process's threaded moto server (for long polls), started on first use.
pub fn moto_threaded() -> Result<&'static Moto, String> {
    MOTO_THREADED.get_or_init(|| start(true)).as_ref().map_err(Clone::clone)
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"HTTP/1.") && buf[..n].windows(3).any(|w| w == b"200"))
}

fn start(threaded: bool) -> Result<Moto, String> {
    if let Ok(ep) = std::env::var("MOTO_ENDPOINT") {
        return Ok(Moto { endpoint: ep });
    }
    let port = free_port()?;
    let server = if threaded {
        format!("moto_server -H 127.0.0.1 -p {port}")
    } else {
        format!(
            "python3 -c 'from werkzeug.serving import run_simple; \
             from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app; \
             run_simple(\"127.0.0.1\", {port}, DomainDispatcherApplication(create_backend_app), threaded=False)'"
        )
    };
    let script = format!(
        "{server} >/dev/null 2>&1 & m=$!; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done; kill $m 2>/dev/null",
        parent = std::process::id()
    );
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("could not start moto_server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if healthy(port) {
            return Ok(Moto { endpoint: format!("http://127.0.0.1:{port}") });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("moto_server did not become ready within 30 s; is `moto[server]` installed (pip install 'moto[server]')?"
        .into())
}
