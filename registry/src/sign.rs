//! Signatures: ed25519 over a component's digest (`sha256:…` as text), so
//! a signature covers the component and its embedded manifest.
//!
//! Key files are one line of text: `ed25519-secret:<64 hex>` (keep private,
//! written with mode 0600) and `ed25519:<64 hex>` (public). A key's id is
//! `ed25519:` plus the first 16 hex digits of the SHA-256 of the public key.

use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Digest, Error, Result, io};

/// A stored signature of one digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    pub key_id: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
    /// Hex of the 64-byte signature.
    pub signature: String,
}

/// A public key as written in key files and policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

fn bad_key(what: &str, msg: impl std::fmt::Display) -> Error {
    Error::BadReference {
        reference: what.to_string(),
        message: msg.to_string(),
    }
}

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey> {
        let hex_part = text
            .trim()
            .strip_prefix("ed25519:")
            .ok_or_else(|| bad_key(text, "a public key is `ed25519:` followed by 64 hex digits"))?;
        let bytes: [u8; 32] = hex::decode(hex_part)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad_key(text, "a public key is `ed25519:` followed by 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|e| bad_key(text, e))
    }

    pub fn id(&self) -> String {
        let h = hex::encode(Sha256::digest(self.0.as_bytes()));
        format!("ed25519:{}", &h[..16])
    }

    pub fn to_text(&self) -> String {
        format!("ed25519:{}", hex::encode(self.0.as_bytes()))
    }

    /// Whether `sig` is a valid signature of `digest` by this key.
    pub fn verifies(&self, digest: &Digest, sig: &Signature) -> bool {
        let Some(bytes) = hex::decode(&sig.signature)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        sig.public_key == self.to_text()
            && self
                .0
                .verify(
                    digest.as_str().as_bytes(),
                    &ed25519_dalek::Signature::from_bytes(&bytes),
                )
                .is_ok()
    }
}

/// A private signing key.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Unsupported(format!("no randomness for a key: {e}")))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let bytes: [u8; 32] = text
            .trim()
            .strip_prefix("ed25519-secret:")
            .and_then(|h| hex::decode(h).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                bad_key(
                    &path.display().to_string(),
                    "not a secret key file (`ed25519-secret:<hex>`)",
                )
            })?;
        Ok(SecretKey(SigningKey::from_bytes(&bytes)))
    }

    /// Write `BASE.key` (mode 0600) and `BASE.pub`.
    pub fn write(&self, base: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let key = base.with_extension("key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .map_err(io(&key))?;
        writeln!(f, "ed25519-secret:{}", hex::encode(self.0.to_bytes())).map_err(io(&key))?;
        let public = base.with_extension("pub");
        std::fs::write(&public, format!("{}\n", self.public().to_text())).map_err(io(&public))?;
        Ok((key, public))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, digest: &Digest) -> Signature {
        let public = self.public();
        Signature {
            key_id: public.id(),
            public_key: public.to_text(),
            signature: hex::encode(self.0.sign(digest.as_str().as_bytes()).to_bytes()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reject() {
        let dir = tempfile::tempdir().unwrap();
        let k = SecretKey::generate().unwrap();
        let (key, public) = k.write(&dir.path().join("team")).unwrap();
        let k2 = SecretKey::load(&key).unwrap();
        let p = PublicKey::parse(&std::fs::read_to_string(public).unwrap()).unwrap();
        let d = Digest::of(b"component");
        let sig = k2.sign(&d);
        assert!(p.verifies(&d, &sig));
        assert!(
            !p.verifies(&Digest::of(b"other"), &sig),
            "bound to the digest"
        );
        let other = SecretKey::generate().unwrap().public();
        assert!(!other.verifies(&d, &sig), "bound to the key");
        let mut forged = sig.clone();
        forged.signature.replace_range(
            0..2,
            if &forged.signature[0..2] == "00" {
                "01"
            } else {
                "00"
            },
        );
        assert!(!p.verifies(&d, &forged));
        assert!(PublicKey::parse("ed25519:zz").is_err());
        assert!(
            k.write(&dir.path().join("team")).is_err(),
            "never overwrites a key"
        );
    }
}
