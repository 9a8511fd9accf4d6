//! Secret files (node and root keys, the layout's token list) and token hashing.
//!
//! A key file holds the 32-byte ed25519 seed as 64 lowercase hex digits and a newline. Secret
//! files are created with mode 0600 on unix and never overwritten, so a second run of a tool can
//! not silently replace a key that delegations and configs already point at.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use xchg_protocol::Keypair;

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The file does not hold 64 lowercase hex digits.
    #[error(
        "{} does not hold a key: expected 64 lowercase hex digits (an ed25519 seed), {found}",
        path.display()
    )]
    Format {
        /// The key file.
        path: PathBuf,
        /// What was found instead.
        found: String,
    },
}

/// Reads a key file: 64 lowercase hex digits, surrounding whitespace allowed.
///
/// # Errors
/// [`KeyFileError::Io`] if it cannot be read, [`KeyFileError::Format`] if it holds anything else.
pub fn read_key_file(path: &Path) -> Result<Keypair, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_seed(text.trim())
        .map(|seed| Keypair::from_seed(&seed))
        .map_err(|found| KeyFileError::Format {
            path: path.to_owned(),
            found,
        })
}

/// Decodes 64 lowercase hex digits, or says what was found instead.
fn parse_seed(text: &str) -> Result<[u8; 32], String> {
    if !text.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("found characters other than 0-9 and a-f".to_owned());
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text, &mut seed)
        .map_err(|_| format!("found {} characters", text.chars().count()))?;
    Ok(seed)
}

/// Writes `key`'s seed as a key file (mode 0600 on unix); refuses to overwrite.
///
/// # Errors
/// Any IO error, including [`std::io::ErrorKind::AlreadyExists`].
pub fn write_key_file(path: &Path, key: &Keypair) -> std::io::Result<()> {
    write_secret(path, format!("{}\n", hex::encode(key.seed())).as_bytes())
}

/// Creates `path` holding `bytes`, readable and writable by the owner only (mode 0600 on unix).
/// An existing file is never overwritten.
///
/// # Errors
/// Any IO error, including [`std::io::ErrorKind::AlreadyExists`].
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Creates `path` and any missing parents, readable only by the owner (mode 0700 on unix) from
/// the start. An existing directory is left as it is.
///
/// # Errors
/// Any IO error.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(path)
}

/// The permission bits of `path` if group or others have any access to it (unix only; `None`
/// elsewhere, or if it cannot be read).
pub fn loose_mode(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The SHA-256 of a token's text: what configs and the replicated state store instead of the
/// token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_plain_sha256_of_the_text() {
        assert_eq!(
            hex::encode(token_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_seed_must_be_64_lowercase_hex_digits() {
        assert_eq!(parse_seed(&"ab".repeat(32)), Ok([0xab; 32]));
        assert!(parse_seed(&"AB".repeat(32)).is_err());
        assert_eq!(
            parse_seed(&"ab".repeat(31)),
            Err("found 62 characters".to_owned())
        );
    }
}
