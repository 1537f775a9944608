//! The control plane's signature over every staged archive: an installed helper whose
//! configuration names a public key unpacks, tests and activates only archives signed
//! by the matching private key (`[deploy] signing_key`, sealed in the keyring; never the
//! SSH key). The signed statement binds the generation id to the archive's SHA-256:
//! `rpcc-stage-v1 <id> <sha256>\n` (pure Ed25519, as `openssl pkeyutl -verify -rawin`
//! checks it on the server).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use crate::generation::Sha256Digest;

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410), before the 32 key bytes.
const SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// An Ed25519 key that signs staged archives. `Debug` shows only the public key.
#[derive(Clone)]
pub struct ArchiveSigner {
    key: SigningKey,
}

impl std::fmt::Debug for ArchiveSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ArchiveSigner(public {})", B64.encode(self.key.verifying_key().as_bytes()))
    }
}

/// A signing key that is not 32 bytes of base64.
#[derive(Debug, thiserror::Error)]
#[error("the signing key is not an Ed25519 seed (32 bytes, base64): {0}")]
pub struct SigningKeyError(&'static str);

impl ArchiveSigner {
    /// The key from its seed: 32 bytes, base64 (what [`ArchiveSigner::generate`] returns).
    pub fn from_seed(seed: &SecretString) -> Result<Self, SigningKeyError> {
        let bytes = Zeroizing::new(B64.decode(seed.expose_secret().trim()).map_err(|_| SigningKeyError("not base64"))?);
        let seed: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| SigningKeyError("not 32 bytes"))?;
        Ok(Self { key: SigningKey::from_bytes(seed) })
    }

    /// A new random key, and its seed in base64 (to seal into the inventory).
    pub fn generate() -> (Self, SecretString) {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::keyring::keys::fill_random(seed.as_mut_slice());
        let text = SecretString::from(B64.encode(seed.as_slice()));
        (Self { key: SigningKey::from_bytes(&seed) }, text)
    }

    /// The public key as a PEM SubjectPublicKeyInfo, the file the helper verifies with.
    pub fn public_key_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", B64.encode(der))
    }

    /// The statement signed for generation `id`'s archive.
    pub fn statement(id: &str, archive: &[u8]) -> String {
        format!("rpcc-stage-v1 {id} {}\n", Sha256Digest::of(archive))
    }

    /// The base64 signature of [`ArchiveSigner::statement`], the `stage` argument.
    pub fn sign_stage(&self, id: &str, archive: &[u8]) -> String {
        B64.encode(self.key.sign(Self::statement(id, archive).as_bytes()).to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_round_trips_and_wrong_seeds_are_refused() {
        let (signer, seed) = ArchiveSigner::generate();
        let again = ArchiveSigner::from_seed(&seed).unwrap();
        assert_eq!(signer.public_key_pem(), again.public_key_pem());
        assert_eq!(signer.sign_stage("ab", b"x"), again.sign_stage("ab", b"x"));
        assert_ne!(signer.sign_stage("ab", b"x"), signer.sign_stage("ac", b"x"), "the id is signed");
        assert!(ArchiveSigner::from_seed(&SecretString::from("AAAA")).is_err());
        assert!(ArchiveSigner::from_seed(&SecretString::from("not base64!")).is_err());
        assert!(!format!("{signer:?}").contains(seed.expose_secret()));
    }

    /// The helper's check, run here with the same openssl a server has.
    #[test]
    fn openssl_verifies_what_rpcc_signs() {
        let Ok(v) = std::process::Command::new("openssl").arg("version").output() else { return };
        if !v.status.success() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (signer, _) = ArchiveSigner::generate();
        let (other, _) = ArchiveSigner::generate();
        std::fs::write(dir.path().join("k.pem"), signer.public_key_pem()).unwrap();
        let check = |id: &str, archive: &[u8], sig: &str| {
            std::fs::write(dir.path().join("msg"), ArchiveSigner::statement(id, archive)).unwrap();
            std::fs::write(dir.path().join("sig"), B64.decode(sig).unwrap()).unwrap();
            std::process::Command::new("openssl")
                .args(["pkeyutl", "-verify", "-pubin", "-inkey", "k.pem", "-rawin", "-in", "msg", "-sigfile", "sig"])
                .current_dir(dir.path())
                .output()
                .unwrap()
                .status
                .success()
        };
        assert!(check("ab12", b"archive", &signer.sign_stage("ab12", b"archive")));
        assert!(!check("ab12", b"archivf", &signer.sign_stage("ab12", b"archive")), "changed archive");
        assert!(!check("ab13", b"archive", &signer.sign_stage("ab12", b"archive")), "relabelled id");
        assert!(!check("ab12", b"archive", &other.sign_stage("ab12", b"archive")), "another key");
    }
}
