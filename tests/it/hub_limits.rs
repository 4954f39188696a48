//! `yurthub --max-connections` and `--read-header-timeout` as an operator sets them: beyond the
//! cap a connection is answered 429, and a connection that sends nothing is closed. Both ports
//! get the same limits; the management port is used here because its `/v1/healthz` answers
//! without the (sandbox) apiserver being healthy yet.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Bound of every wait on the daemon and its sockets.
const WAIT: Duration = Duration::from_secs(30);

/// A sandbox hub started with `flags`; killed when dropped.
struct Hub {
    child: Child,
    management: String,
}

impl Hub {
    fn start(flags: &[&str]) -> Hub {
        let mut child = Command::new(crate::example("yurthub"))
            .args(["--sandbox", "--proxy-port", "0", "--serve-port", "0"])
            .args(flags)
            .env_remove("NODE_NAME")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start yurthub");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("yurthub: management on http://") {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let management = match rx.recv_timeout(WAIT) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!("yurthub did not print its management address");
            }
        };
        Hub { child, management }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.management).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads until the hub closes the connection; a connection still open after [`WAIT`] fails.
fn until_closed(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("the hub kept the connection open for {WAIT:?}")
            }
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn healthz(s: &mut TcpStream) -> String {
    s.write_all(
        b"GET /v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: kubectl/v1.36.0\r\n\
          Connection: close\r\n\r\n",
    )
    .unwrap();
    until_closed(s)
}

#[test]
fn max_connections_answers_429_beyond_the_cap() {
    let hub = Hub::start(&["--max-connections", "1", "--read-header-timeout", "1h"]);
    // Accepted first (the kernel queues connections in order), it holds the only slot.
    let mut held = hub.connect();
    let refused = healthz(&mut hub.connect());
    assert!(refused.starts_with("HTTP/1.1 429"), "{refused}");
    assert!(
        refused.contains("\"reason\":\"TooManyRequests\""),
        "{refused}"
    );
    let answer = healthz(&mut held);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn read_header_timeout_closes_a_silent_connection() {
    let hub = Hub::start(&["--read-header-timeout", "300ms"]);
    assert_eq!(until_closed(&mut hub.connect()), "");
    let answer = healthz(&mut hub.connect());
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
