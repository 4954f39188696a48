//! Keys of the WireGuard tunnel: the node's X25519 key pair, kept in a file so the public key
//! published in its Gateway endpoint (`config["publicKey"]`) stays valid across agent restarts,
//! and the preshared key every gateway derives from the cluster's `vpn-connection-psk` secret
//! (SHA-256 of the secret text, as upstream Raven does).
//!
//! The key file holds the private key as one line of standard base64 (the format of
//! `wg genkey`), mode 0600; a directory the loader has to create gets mode 0700.

use std::fmt;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use boringtun::x25519::{PublicKey, StaticSecret};
use ring::rand::{SecureRandom, SystemRandom};

/// Where the agent keeps its private key unless told otherwise.
pub const DEFAULT_KEY_PATH: &str = "/var/lib/raven/wireguard/private.key";

/// Environment variable carrying the `vpn-connection-psk` key of Secret `raven-agent-secret`
/// (as upstream's agent DaemonSet sets it).
pub const PSK_ENV: &str = "VPN_CONNECTION_PSK";

/// Why a key string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not 44 characters of standard, padded base64.
    #[error("a WireGuard key is 44 characters of padded base64, got {0} characters")]
    Length(usize),
    /// Not base64, or not exactly 32 bytes once decoded.
    #[error("a WireGuard key must be base64 of exactly 32 bytes")]
    Encoding,
}

/// Decodes a base64 WireGuard key (public, private or preshared) into its 32 bytes. Strict:
/// exactly 44 characters of standard padded base64 with zero trailing bits, so every key has
/// one spelling (the same rule as the planner's [`crate::l3::is_wireguard_key`]).
pub fn decode_key(text: &str) -> Result<[u8; 32], KeyError> {
    if text.len() != 44 {
        return Err(KeyError::Length(text.len()));
    }
    let bytes = STANDARD.decode(text).map_err(|_| KeyError::Encoding)?;
    bytes.try_into().map_err(|_| KeyError::Encoding)
}

/// Encodes 32 key bytes as standard padded base64 (44 characters).
pub fn encode_key(key: &[u8; 32]) -> String {
    STANDARD.encode(key)
}

/// The preshared key all gateways share: SHA-256 of the `vpn-connection-psk` text.
pub fn preshared_key(psk: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, psk.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// [`preshared_key`] of [`PSK_ENV`], or `None` when it is unset or empty (then the tunnel runs
/// without a preshared key, like upstream with no secret).
pub fn preshared_key_from_env() -> Option<[u8; 32]> {
    std::env::var(PSK_ENV)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| preshared_key(&v))
}

/// A node's X25519 key pair. `Debug` shows only the public half.
#[derive(Clone)]
pub struct WireGuardKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for WireGuardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WireGuardKey")
            .field("public", &self.public_key_base64())
            .finish_non_exhaustive()
    }
}

impl WireGuardKey {
    /// A fresh key pair from the operating system's random source.
    pub fn generate() -> io::Result<Self> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| io::Error::other("the system random source failed"))?;
        Ok(Self::from_private(bytes))
    }

    /// The key pair of a private key (clamped as X25519 requires).
    pub fn from_private(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        Self { secret, public }
    }

    /// Parses a base64 private key (as `wg genkey` prints it).
    pub fn from_private_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self::from_private)
    }

    /// The private key as base64 (what the key file holds).
    pub fn private_base64(&self) -> String {
        encode_key(&self.secret.to_bytes())
    }

    /// The public key's bytes.
    pub fn public_key(&self) -> [u8; 32] {
        self.public.to_bytes()
    }

    /// The public key as base64: the value of `config["publicKey"]` in the node's Gateway
    /// endpoint, which remote gateways use as this node's peer key.
    pub fn public_key_base64(&self) -> String {
        encode_key(self.public.as_bytes())
    }

    /// Parses the contents of a key file: one base64 private key, surrounding whitespace
    /// ignored.
    pub fn from_key_file(text: &str) -> Result<Self, KeyError> {
        Self::from_private_base64(text.trim())
    }

    pub(crate) fn secret(&self) -> &StaticSecret {
        &self.secret
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.public
    }

    /// Loads the key pair at `path`, or creates and stores a new one when the file does not
    /// exist, so a node keeps its identity across restarts. The file is written atomically with
    /// mode 0600 (an existing file with group or other bits gets 0600); missing directories are
    /// created with mode 0700. A file that is not one base64 private key is an error, never
    /// silently replaced (that would change the node's published identity). File I/O runs on
    /// tokio's blocking pool.
    pub async fn load_or_create(path: impl Into<PathBuf>) -> io::Result<Self> {
        let path = path.into();
        tokio::task::spawn_blocking(move || load_or_create_blocking(&path))
            .await
            .map_err(io::Error::other)?
    }
}

fn load_or_create_blocking(path: &Path) -> io::Result<WireGuardKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = WireGuardKey::from_key_file(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("WireGuard key file {}: {e}", path.display()),
                )
            })?;
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(key)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = WireGuardKey::generate()?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
            let tmp = path.with_extension("tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(format!("{}\n", key.private_base64()).as_bytes())?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, path)?;
            Ok(key)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psk_is_sha256_of_the_secret_text() {
        // SHA-256("abc") and SHA-256("") from FIPS 180-2.
        assert_eq!(
            encode_key(&preshared_key("abc")),
            encode_key(&hex32(
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
            ))
        );
        assert_eq!(
            preshared_key(""),
            hex32("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn public_key_follows_rfc7748_vectors() {
        // RFC 7748 section 6.1: Alice's private and public key.
        let key = WireGuardKey::from_private(hex32(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
        ));
        assert_eq!(
            key.public_key(),
            hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        let round = WireGuardKey::from_private_base64(&key.private_base64()).unwrap();
        assert_eq!(round.public_key_base64(), key.public_key_base64());
        assert!(crate::l3::is_wireguard_key(&key.public_key_base64()));
    }

    #[test]
    fn decode_key_is_strict() {
        let good = encode_key(&[7u8; 32]);
        assert_eq!(decode_key(&good).unwrap(), [7u8; 32]);
        assert_eq!(decode_key("abc"), Err(KeyError::Length(3)));
        let mut bad = good.clone();
        bad.replace_range(0..1, "*");
        assert_eq!(decode_key(&bad), Err(KeyError::Encoding));
        // 33 bytes never fit in 44 characters; non-zero trailing bits are refused.
        let mut trailing = good.clone();
        trailing.replace_range(42..43, "B");
        assert_eq!(decode_key(&trailing), Err(KeyError::Encoding));
    }

    fn hex32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }
}
