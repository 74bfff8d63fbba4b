//! Encryption of cluster credentials at rest (AES-256-GCM).
//!
//! A sealed value is `version(1) || nonce(12) || ciphertext+tag`; the field
//! name is bound as associated data, so a token cannot be swapped into the
//! key column. Plaintext never leaves this module except to `upstream/`.
//! Nothing here logs.

use std::path::Path;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The key that seals credentials. Its `Debug` does not print the key.
#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretBox(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("KUBEPORTAL_SECRET_KEY must be the base64 encoding of exactly 32 bytes")]
    BadKey,
    #[error("cannot use the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored credential cannot be decrypted with this secret key (was the key changed?)")]
    Undecryptable,
}

/// Which credential field a sealed value belongs to.
#[derive(Debug, Clone, Copy)]
pub enum SecretField {
    ServiceAccountToken,
    ClientKeyData,
    /// A list's `continue` token, sealed so that a caller who sees only
    /// part of the list cannot read the names in it.
    ContinueToken,
    /// A one-time ticket's claims, sealed so that any replica can read
    /// them and no caller can forge them.
    Ticket,
}

impl SecretField {
    fn associated_data(self) -> &'static [u8] {
        match self {
            SecretField::ServiceAccountToken => b"kubeportal:serviceAccountToken",
            SecretField::ClientKeyData => b"kubeportal:clientKeyData",
            SecretField::ContinueToken => b"kubeportal:continue",
            SecretField::Ticket => b"kubeportal:ticket",
        }
    }
}

impl SecretBox {
    /// From the base64 text of a 32-byte key (`KUBEPORTAL_SECRET_KEY`).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| SecretError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretError::BadKey);
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// Reads the key file, or creates it (mode 0600) with a fresh random key.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let key_file_error = |source| SecretError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_base64(&text),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng);
                let text = STANDARD.encode(key);
                write_private_file(path, text.as_bytes()).map_err(key_file_error)?;
                Ok(Self {
                    cipher: Aes256Gcm::new(&key),
                })
            }
            Err(error) => Err(key_file_error(error)),
        }
    }

    pub fn seal(&self, field: SecretField, plaintext: &SecretString) -> Vec<u8> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.expose_secret().as_bytes(),
                    aad: field.associated_data(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT_VERSION);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        sealed
    }

    pub fn open(&self, field: SecretField, sealed: &[u8]) -> Result<SecretString, SecretError> {
        if sealed.len() < 1 + NONCE_LEN || sealed[0] != FORMAT_VERSION {
            return Err(SecretError::Undecryptable);
        }
        let (nonce, ciphertext) = sealed[1..].split_at(NONCE_LEN);
        let plaintext = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: field.associated_data(),
                },
            )
            .map_err(|_| SecretError::Undecryptable)?;
        String::from_utf8(plaintext)
            .map(SecretString::from)
            .map_err(|_| SecretError::Undecryptable)
    }
}

#[cfg(unix)]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret_box() -> SecretBox {
        SecretBox::from_base64(&STANDARD.encode([7u8; 32])).unwrap()
    }

    #[test]
    fn seal_then_open_round_trips_and_hides_the_plaintext() {
        let sealed = secret_box().seal(
            SecretField::ServiceAccountToken,
            &SecretString::from("token-value-123"),
        );
        assert!(!sealed
            .windows(b"token-value-123".len())
            .any(|window| window == b"token-value-123"));
        let opened = secret_box()
            .open(SecretField::ServiceAccountToken, &sealed)
            .unwrap();
        assert_eq!(opened.expose_secret(), "token-value-123");
    }

    #[test]
    fn a_value_sealed_for_one_field_does_not_open_as_another() {
        let sealed = secret_box().seal(SecretField::ServiceAccountToken, &SecretString::from("x"));
        assert!(secret_box()
            .open(SecretField::ClientKeyData, &sealed)
            .is_err());
    }

    #[test]
    fn another_key_cannot_open() {
        let sealed = secret_box().seal(SecretField::ClientKeyData, &SecretString::from("x"));
        let other = SecretBox::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(other.open(SecretField::ClientKeyData, &sealed).is_err());
    }

    #[test]
    fn keys_must_be_32_bytes() {
        assert!(SecretBox::from_base64(&STANDARD.encode([1u8; 16])).is_err());
        assert!(SecretBox::from_base64("not base64!").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("kp-key-{}", uuid::Uuid::new_v4()));
        let path = dir.join("kubeportal.key");
        let first = SecretBox::load_or_create(&path).unwrap();
        let sealed = first.seal(SecretField::ClientKeyData, &SecretString::from("k"));
        let second = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(
            second
                .open(SecretField::ClientKeyData, &sealed)
                .unwrap()
                .expose_secret(),
            "k"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
