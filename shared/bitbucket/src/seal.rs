//! The shared token cache holds Bearer tokens, so what Redis stores is sealed: AES-256-GCM under a key
//! derived (HKDF-SHA256) from the consumer's secret. A Redis dump or a `MONITOR` alone hands out nothing; a
//! replica that knows the secret can already mint tokens, so it loses nothing by reading them.

use aes_gcm::{
    Aes256Gcm, KeyInit, Nonce,
    aead::{Aead, AeadCore, OsRng, Payload},
};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Changes whenever the sealed format does, so an old value is a miss rather than garbage.
const VERSION: &[u8] = b"v1:";
const NONCE_LEN: usize = 12;

pub(crate) struct Seal(Aes256Gcm);

impl std::fmt::Debug for Seal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seal(..)")
    }
}

impl Seal {
    pub(crate) fn new(client_id: &str, client_secret: &SecretString) -> Self {
        let hkdf = Hkdf::<Sha256>::new(
            Some(b"bb2snyk token cache"),
            client_secret.expose_secret().as_bytes(),
        );
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 8160, so expand cannot fail.
        let _ = hkdf.expand(client_id.as_bytes(), &mut key);
        Self(Aes256Gcm::new(&key.into()))
    }

    /// `v1:` + nonce + ciphertext. `context` (the Redis key) is authenticated, so a value copied to another
    /// key does not open.
    pub(crate) fn seal(&self, plaintext: &[u8], context: &str) -> Option<Vec<u8>> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .ok()?;
        let mut out = Vec::with_capacity(VERSION.len() + NONCE_LEN + sealed.len());
        out.extend_from_slice(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Some(out)
    }

    /// The plaintext, or `None` for anything not sealed by this key for this context.
    pub(crate) fn open(&self, value: &[u8], context: &str) -> Option<Vec<u8>> {
        let rest = value.strip_prefix(VERSION)?;
        if rest.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.0
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(secret: &str) -> Seal {
        Seal::new("client-id", &SecretString::from(secret.to_owned()))
    }

    #[test]
    fn opens_only_with_the_same_secret_and_context() {
        let sealed = seal("s1").seal(b"bearer-token", "k1").expect("seals");
        assert!(!sealed.windows(12).any(|w| w == b"bearer-token"));
        assert_eq!(
            seal("s1").open(&sealed, "k1").as_deref(),
            Some(&b"bearer-token"[..])
        );
        assert_eq!(seal("s2").open(&sealed, "k1"), None);
        assert_eq!(seal("s1").open(&sealed, "k2"), None);
        assert_eq!(seal("s1").open(b"v1:short", "k1"), None);
        assert_eq!(seal("s1").open(b"plain", "k1"), None);
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let s = seal("s1");
        assert_ne!(s.seal(b"t", "k"), s.seal(b"t", "k"));
    }
}
