//! A confidential client's signing keys: ES256 keys with key ids, and the JWKS the client
//! publishes (inline in its metadata or at its `jwks_uri`).
//!
//! ```
//! use atsession::oauth::EcKey;
//! use atsession::oauth::Keyset;
//!
//! let keyset = Keyset::new(vec![EcKey::generate().with_kid("2026-01")]).unwrap();
//! let jwks = keyset.public_jwks();
//! assert_eq!(jwks.keys[0].kid.as_deref(), Some("2026-01"));
//! assert!(jwks.keys[0].d.is_none()); // public keys only
//! ```

use serde::{Deserialize, Serialize};

use super::error::ClientConfigError;
use crate::oauth::wire::jose::{EcKey, Jwk};

/// A JSON Web Key Set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// The signing keys of a confidential client. The first key signs new grants; every key
/// keeps signing for the grants made with it (a grant records its key id).
#[derive(Debug, Clone)]
pub struct Keyset {
    keys: Vec<EcKey>,
}

impl Keyset {
    /// A keyset; every key needs a unique `kid`.
    pub fn new(keys: Vec<EcKey>) -> Result<Self, ClientConfigError> {
        if keys.is_empty() {
            return Err(ClientConfigError::EmptyKeyset);
        }
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            let kid = k.kid().ok_or(ClientConfigError::MissingKid)?;
            if !seen.insert(kid.to_owned()) {
                return Err(ClientConfigError::DuplicateKid(kid.to_owned()));
            }
        }
        Ok(Self { keys })
    }

    /// A keyset from a JWKS of private keys (as a key file holds them).
    pub fn from_private_jwks(jwks: &Jwks) -> Result<Self, ClientConfigError> {
        let keys = jwks
            .keys
            .iter()
            .map(EcKey::from_jwk)
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(keys)
    }

    /// The key that signs new grants.
    #[must_use]
    pub fn signing_key(&self) -> &EcKey {
        &self.keys[0]
    }

    /// The key with this id.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&EcKey> {
        self.keys.iter().find(|k| k.kid() == Some(kid))
    }

    /// The public JWKS to publish.
    #[must_use]
    pub fn public_jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(EcKey::public_jwk).collect(),
        }
    }

    /// The private JWKS, for a key file. Handle as the secret it is.
    #[must_use]
    pub fn private_jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(EcKey::to_private_jwk).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keysets_need_unique_kids() {
        assert!(matches!(
            Keyset::new(vec![]),
            Err(ClientConfigError::EmptyKeyset)
        ));
        assert!(matches!(
            Keyset::new(vec![EcKey::generate()]),
            Err(ClientConfigError::MissingKid)
        ));
        assert!(matches!(
            Keyset::new(vec![
                EcKey::generate().with_kid("a"),
                EcKey::generate().with_kid("a")
            ]),
            Err(ClientConfigError::DuplicateKid(kid)) if kid == "a"
        ));
        let ks = Keyset::new(vec![
            EcKey::generate().with_kid("a"),
            EcKey::generate().with_kid("b"),
        ])
        .unwrap();
        assert_eq!(ks.signing_key().kid(), Some("a"));
        assert!(ks.get("b").is_some() && ks.get("c").is_none());
        let back = Keyset::from_private_jwks(&ks.private_jwks()).unwrap();
        assert_eq!(
            back.get("b").unwrap().thumbprint(),
            ks.get("b").unwrap().thumbprint()
        );
        let public = serde_json::to_string(&ks.public_jwks()).unwrap();
        assert!(!public.contains("\"d\""));
        assert!(Keyset::from_private_jwks(&ks.public_jwks()).is_err());
    }
}
