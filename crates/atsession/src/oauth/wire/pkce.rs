//! PKCE (RFC 7636) with the S256 method, the only one atproto allows.

use sha2::{Digest, Sha256};

use super::jose::b64url;
use crate::secret::{SecretString, random_bytes};

/// A PKCE pair: the verifier kept in the state store, the challenge sent in the PAR.
#[derive(Debug, Clone)]
pub struct Pkce {
    /// The code verifier: 43 characters of base64url (32 random bytes).
    pub verifier: SecretString,
    /// `BASE64URL(SHA256(verifier))`.
    pub challenge: String,
}

impl Pkce {
    /// A fresh pair.
    #[must_use]
    pub fn generate() -> Self {
        let verifier = SecretString::new(b64url(random_bytes::<32>()));
        let challenge = challenge_s256(verifier.expose());
        Self {
            verifier,
            challenge,
        }
    }
}

/// The S256 challenge of a verifier.
#[must_use]
pub(crate) fn challenge_s256(verifier: &str) -> String {
    b64url(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_vector() {
        assert_eq!(
            challenge_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn generated_pairs_match() {
        let p = Pkce::generate();
        assert_eq!(p.verifier.expose().len(), 43);
        assert_eq!(p.challenge, challenge_s256(p.verifier.expose()));
        assert_ne!(p.challenge, Pkce::generate().challenge);
    }
}
