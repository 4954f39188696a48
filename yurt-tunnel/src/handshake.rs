//! The registration handshake: the only bytes on a session that are not HTTP/2.
//!
//! Right after the transport is up, the agent writes a [`Hello`] (who it is: node name, hostname,
//! addresses) and the server answers with an [`Ack`] (accepted, or refused with a reason). Then
//! the stream becomes an HTTP/2 connection with the agent as the h2 *server*. The frames are tiny
//! and fixed: magic `YTUN`, a version byte, a big-endian length and a body (JSON for the hello,
//! UTF-8 text for the ack reason). Parsing is I/O-free ([`Hello::decode`], [`Ack::decode`] take a
//! buffer and report "need more" / done / error) so it is unit-tested and fuzzed without sockets;
//! [`read_hello`] and friends merely feed it from a stream.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Frame magic.
pub const MAGIC: &[u8; 4] = b"YTUN";
/// Protocol version.
pub const VERSION: u8 = 1;
/// Largest accepted hello body.
pub const MAX_HELLO_LEN: usize = 16 * 1024;
/// Most addresses an agent may report.
pub const MAX_ADDRESSES: usize = 32;
const HELLO_HEADER: usize = 4 + 1 + 4;
const ACK_HEADER: usize = 4 + 1 + 1 + 2;

/// Why a handshake frame was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The stream does not start with `YTUN`.
    #[error("bad magic: not a yurt-tunnel agent")]
    BadMagic,
    /// Unknown protocol version.
    #[error("unsupported protocol version {0} (this side speaks {VERSION})")]
    Version(u8),
    /// Declared body too long.
    #[error("hello too long: {0} bytes (max {MAX_HELLO_LEN})")]
    TooLong(usize),
    /// Body is not valid JSON of the expected shape.
    #[error("malformed hello: {0}")]
    Malformed(String),
    /// The node name is not a DNS-1123 subdomain.
    #[error("invalid node name {0:?}")]
    NodeName(String),
    /// Too many addresses.
    #[error("too many addresses: {0} (max {MAX_ADDRESSES})")]
    TooManyAddresses(usize),
    /// The server refused the registration.
    #[error("registration refused: {0}")]
    Refused(String),
    /// The stream ended mid-frame.
    #[error("connection closed during handshake")]
    Eof,
}

/// What an agent announces about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Kubernetes node name.
    pub node: String,
    /// The node's Hostname address, when it differs from the node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// The node's IP addresses (InternalIP, ExternalIP).
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// Result of feeding bytes to a decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole frame: the value and how many bytes it used.
    Done(T, usize),
    /// At least this many bytes in total are needed.
    NeedMore(usize),
}

/// True for a DNS-1123 subdomain (what Kubernetes accepts as a node name).
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Hello {
    /// Checks the fields an agent controls.
    pub fn validate(&self) -> Result<(), HandshakeError> {
        if !valid_node_name(&self.node) {
            return Err(HandshakeError::NodeName(self.node.clone()));
        }
        if let Some(h) = &self.hostname
            && !valid_node_name(h)
        {
            return Err(HandshakeError::NodeName(h.clone()));
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(HandshakeError::TooManyAddresses(self.addresses.len()));
        }
        Ok(())
    }

    /// Encodes the frame.
    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut out = Vec::with_capacity(HELLO_HEADER + body.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes (and validates) a frame from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Hello>, HandshakeError> {
        check_prefix(buf)?;
        if buf.len() < HELLO_HEADER {
            return Ok(Decoded::NeedMore(HELLO_HEADER));
        }
        let len = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) as usize;
        if len > MAX_HELLO_LEN {
            return Err(HandshakeError::TooLong(len));
        }
        let total = HELLO_HEADER + len;
        if buf.len() < total {
            return Ok(Decoded::NeedMore(total));
        }
        let hello: Hello = serde_json::from_slice(&buf[HELLO_HEADER..total])
            .map_err(|e| HandshakeError::Malformed(e.to_string()))?;
        hello.validate()?;
        Ok(Decoded::Done(hello, total))
    }
}

fn check_prefix(buf: &[u8]) -> Result<(), HandshakeError> {
    let n = buf.len().min(4);
    if buf[..n] != MAGIC[..n] {
        return Err(HandshakeError::BadMagic);
    }
    if let Some(&v) = buf.get(4)
        && v != VERSION
    {
        return Err(HandshakeError::Version(v));
    }
    Ok(())
}

/// The server's answer to a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ack {
    /// Registered; HTTP/2 follows.
    Accepted,
    /// Refused, with a reason for the agent's log.
    Refused(String),
}

impl Ack {
    /// Encodes the frame (reasons are truncated to 1 KiB).
    pub fn encode(&self) -> Vec<u8> {
        let (code, reason) = match self {
            Ack::Accepted => (0u8, ""),
            Ack::Refused(r) => (1u8, truncate(r, 1024)),
        };
        let mut out = Vec::with_capacity(ACK_HEADER + reason.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(code);
        out.extend_from_slice(&(reason.len() as u16).to_be_bytes());
        out.extend_from_slice(reason.as_bytes());
        out
    }

    /// Decodes a frame from the start of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Decoded<Ack>, HandshakeError> {
        check_prefix(buf)?;
        if buf.len() < ACK_HEADER {
            return Ok(Decoded::NeedMore(ACK_HEADER));
        }
        let len = usize::from(u16::from_be_bytes([buf[6], buf[7]]));
        let total = ACK_HEADER + len;
        if buf.len() < total {
            return Ok(Decoded::NeedMore(total));
        }
        let reason = String::from_utf8_lossy(&buf[ACK_HEADER..total]).into_owned();
        let ack = match buf[5] {
            0 => Ack::Accepted,
            1 => Ack::Refused(reason),
            other => {
                return Err(HandshakeError::Malformed(format!(
                    "unknown ack code {other}"
                )));
            }
        };
        Ok(Decoded::Done(ack, total))
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads one frame with `decode`, reading exactly the bytes it needs (never past the frame, so
/// the HTTP/2 bytes that follow stay in the stream).
async fn read_frame<R, T>(
    io: &mut R,
    decode: fn(&[u8]) -> Result<Decoded<T>, HandshakeError>,
) -> Result<T, crate::TunnelError>
where
    R: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(64);
    let mut want = 4;
    loop {
        let have = buf.len();
        buf.resize(want, 0);
        if let Err(e) = io.read_exact(&mut buf[have..]).await {
            return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                HandshakeError::Eof.into()
            } else {
                e.into()
            });
        }
        match decode(&buf)? {
            Decoded::Done(v, _) => return Ok(v),
            Decoded::NeedMore(n) => want = n,
        }
    }
}

/// Reads a [`Hello`] (server side). The caller applies a deadline.
pub async fn read_hello<R: AsyncRead + Unpin>(io: &mut R) -> Result<Hello, crate::TunnelError> {
    read_frame(io, Hello::decode).await
}

/// Reads an [`Ack`] (agent side); a refusal becomes [`HandshakeError::Refused`].
pub async fn read_ack<R: AsyncRead + Unpin>(io: &mut R) -> Result<(), crate::TunnelError> {
    match read_frame(io, Ack::decode).await? {
        Ack::Accepted => Ok(()),
        Ack::Refused(reason) => Err(HandshakeError::Refused(reason).into()),
    }
}

/// Writes and flushes a frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(io: &mut W, frame: &[u8]) -> std::io::Result<()> {
    io.write_all(frame).await?;
    io.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Hello {
        Hello {
            node: "edge-1".into(),
            hostname: Some("edge-1.lan".into()),
            addresses: vec!["10.0.0.7".parse().unwrap()],
        }
    }

    #[test]
    fn hello_round_trips_byte_by_byte() {
        let bytes = hello().encode();
        for cut in 0..bytes.len() {
            match Hello::decode(&bytes[..cut]).unwrap() {
                Decoded::NeedMore(n) => assert!(n > cut && n <= bytes.len()),
                Decoded::Done(..) => panic!("decoded from a prefix of {cut} bytes"),
            }
        }
        let mut extra = bytes.clone();
        extra.extend_from_slice(b"PRI * HTTP/2.0");
        assert_eq!(
            Hello::decode(&extra).unwrap(),
            Decoded::Done(hello(), bytes.len())
        );
    }

    #[test]
    fn hello_rejections() {
        assert_eq!(Hello::decode(b"GET "), Err(HandshakeError::BadMagic));
        assert_eq!(Hello::decode(b"YTUN\x02"), Err(HandshakeError::Version(2)));
        assert_eq!(
            Hello::decode(b"YTUN\x01\xff\xff\xff\xff"),
            Err(HandshakeError::TooLong(u32::MAX as usize))
        );
        let bad = Hello {
            node: "Edge_1".into(),
            hostname: None,
            addresses: vec![],
        };
        assert!(matches!(
            Hello::decode(&bad.encode()),
            Err(HandshakeError::NodeName(_))
        ));
        let many = Hello {
            node: "a".into(),
            hostname: None,
            addresses: vec!["127.0.0.1".parse().unwrap(); MAX_ADDRESSES + 1],
        };
        assert!(matches!(
            Hello::decode(&many.encode()),
            Err(HandshakeError::TooManyAddresses(_))
        ));
        let mut junk = b"YTUN\x01\x00\x00\x00\x02".to_vec();
        junk.extend_from_slice(b"{]");
        assert!(matches!(
            Hello::decode(&junk),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn ack_round_trips() {
        for ack in [
            Ack::Accepted,
            Ack::Refused("certificate CN mismatch".into()),
        ] {
            let bytes = ack.encode();
            assert_eq!(
                Ack::decode(&bytes).unwrap(),
                Decoded::Done(ack.clone(), bytes.len())
            );
            assert!(matches!(
                Ack::decode(&bytes[..bytes.len() - 1]),
                Ok(Decoded::NeedMore(_)) | Ok(Decoded::Done(Ack::Accepted, _))
            ));
        }
        let long = Ack::Refused("é".repeat(2000)).encode();
        assert!(
            matches!(Ack::decode(&long), Ok(Decoded::Done(Ack::Refused(r), _)) if r.len() <= 1024)
        );
    }

    #[test]
    fn node_names() {
        assert!(valid_node_name("edge-1"));
        assert!(valid_node_name("ip-10-0-0-1.ec2.internal"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name("a..b"));
        assert!(!valid_node_name("A"));
        assert!(!valid_node_name(&"a".repeat(64)));
    }
}
