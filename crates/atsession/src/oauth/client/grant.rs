//! One OAuth grant — its token set, DPoP key and client authentication — and how it is
//! sealed at rest.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use super::client_metadata::ClientAuth;
use super::error::OAuthError;
use super::token::{TokenSet, TokenSetRecord};
use crate::crypto::AtRestKeyring;
use crate::oauth::wire::dpop::DpopKey;
use crate::oauth::wire::jose::Jwk;
use crate::store::oauth::{GrantId, StoredGrant};

/// One grant: its token set, its DPoP key and how its client authenticates. This is what
/// [`OAuthClient::callback`](super::oauth_client::OAuthClient::callback) stores, sealed, under
/// the grant id.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The grant id.
    pub grant_id: GrantId,
    /// The tokens.
    pub token_set: TokenSet,
    /// The DPoP key the tokens are bound to.
    pub dpop_key: DpopKey,
    /// The client authentication the grant was made with.
    pub auth: ClientAuth,
    /// When the grant was made.
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct Record {
    v: u8,
    token_set: TokenSetRecord,
    dpop_key: Jwk,
    auth: ClientAuth,
}

pub(super) fn row_key(id: &GrantId) -> Vec<u8> {
    let mut k = b"atsession/oauth-grant/".to_vec();
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

impl Grant {
    /// Seals the session into a stored grant at `version`, written at `now`.
    pub fn seal(
        &self,
        keyring: &AtRestKeyring,
        now: OffsetDateTime,
        version: u64,
    ) -> Result<StoredGrant, OAuthError> {
        let record = Record {
            v: 1,
            token_set: TokenSetRecord::from(&self.token_set),
            dpop_key: self.dpop_key.to_private_jwk(),
            auth: self.auth.clone(),
        };
        let json = Zeroizing::new(
            serde_json::to_vec(&record).map_err(|_| OAuthError::Corrupt("cannot serialize"))?,
        );
        drop(record);
        let sealed = keyring.seal(&row_key(&self.grant_id), &json)?;
        Ok(StoredGrant {
            id: self.grant_id.clone(),
            did: self.token_set.sub.clone(),
            issuer: self.token_set.iss.clone(),
            sealed,
            created_at: self.created_at,
            updated_at: now,
            version,
        })
    }

    /// Opens a stored grant. A grant that does not decrypt is [`OAuthError::AtRest`]; one
    /// that decrypts to something unexpected is [`OAuthError::Corrupt`].
    pub fn open(grant: &StoredGrant, keyring: &AtRestKeyring) -> Result<Self, OAuthError> {
        let json = keyring.open(&row_key(&grant.id), &grant.sealed)?;
        let record: Record = serde_json::from_slice(&json)
            .map_err(|_| OAuthError::Corrupt("the grant does not parse"))?;
        if record.v != 1 {
            return Err(OAuthError::Corrupt("unknown grant record version"));
        }
        let dpop_key = DpopKey::from_jwk(&record.dpop_key)?;
        let token_set = TokenSet::from(record.token_set);
        if token_set.sub != grant.did || token_set.iss != grant.issuer {
            return Err(OAuthError::Corrupt(
                "the grant's clear and sealed fields differ",
            ));
        }
        Ok(Self {
            grant_id: grant.id.clone(),
            token_set,
            dpop_key,
            auth: record.auth,
            created_at: grant.created_at,
        })
    }
}

/// The lock key of a grant's refresh.
///
/// ```
/// use atsession::oauth::refresh_lock_key;
/// use atsession::store::oauth::GrantId;
///
/// let id = GrantId::parse("grant-0123456789abcdef").unwrap();
/// assert_eq!(refresh_lock_key(&id), "atsession:oauth-refresh:grant-0123456789abcdef");
/// ```
#[must_use]
pub fn refresh_lock_key(grant: &GrantId) -> String {
    format!("atsession:oauth-refresh:{grant}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::AtRestKey;
    use crate::secret::SecretString;
    use crate::syntax::Did;

    pub(crate) fn sample() -> Grant {
        Grant {
            grant_id: GrantId::generate(),
            token_set: TokenSet {
                iss: "https://pds.example".into(),
                sub: Did::new("did:plc:abc").unwrap(),
                aud: "https://pds.example/".into(),
                scope: "atproto".into(),
                access_token: SecretString::new("ACCESS-SECRET"),
                refresh_token: Some(SecretString::new("REFRESH-SECRET")),
                expires_at: Some(crate::clock::from_millis(1_700_000_000_000)),
            },
            dpop_key: DpopKey::generate(),
            auth: ClientAuth::PrivateKeyJwt { kid: "k1".into() },
            created_at: crate::clock::from_millis(1_600_000_000_000),
        }
    }

    #[test]
    fn seal_round_trip_hides_secrets() {
        let ring = AtRestKeyring::new(AtRestKey::new("k", [1; 32]).unwrap());
        let s = sample();
        let g = s.seal(&ring, OffsetDateTime::UNIX_EPOCH, 1).unwrap();
        for needle in [
            "ACCESS-SECRET",
            "REFRESH-SECRET",
            s.dpop_key.to_private_jwk().d.unwrap().expose(),
        ] {
            assert!(
                !g.sealed
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
            );
            assert!(!format!("{g:?} {s:?}").contains(needle));
        }
        let back = Grant::open(&g, &ring).unwrap();
        assert_eq!(back.token_set, s.token_set);
        assert_eq!(back.dpop_key.thumbprint(), s.dpop_key.thumbprint());
        assert_eq!(back.auth, s.auth);
        // Another row's sealed data does not open under this id.
        let mut moved = g.clone();
        moved.id = GrantId::generate();
        assert!(matches!(
            Grant::open(&moved, &ring),
            Err(OAuthError::AtRest(_))
        ));
        // A clear DID that disagrees with the sealed one is corrupt.
        let mut other = g.clone();
        other.did = Did::new("did:plc:other").unwrap();
        assert!(matches!(
            Grant::open(&other, &ring),
            Err(OAuthError::Corrupt(_))
        ));
        // The wrong key is a typed error.
        let wrong = AtRestKeyring::new(AtRestKey::new("k", [2; 32]).unwrap());
        assert!(matches!(
            Grant::open(&g, &wrong),
            Err(OAuthError::AtRest(_))
        ));
    }
}
