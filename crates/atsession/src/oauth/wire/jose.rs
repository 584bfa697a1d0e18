//! The small piece of JOSE that atproto OAuth needs, on RustCrypto's curves directly: ES256
//! (P-256) keys for client assertions and DPoP, ES256K (secp256k1) keys for DPoP, both as
//! JWKs, compact JWS signing, and JWK thumbprints (RFC 7638).
//!
//! ```
//! use atsession::oauth::EcKey;
//!
//! let key = EcKey::generate();
//! let jwt = key.sign_jwt(&serde_json::json!({"alg": "ES256", "typ": "JWT"}),
//!                        &serde_json::json!({"iss": "me"})).unwrap();
//! assert_eq!(jwt.split('.').count(), 3);
//! assert_eq!(key.thumbprint().len(), 43);
//! ```

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::presign;
use crate::secret::{SecretString, random_bytes};

/// Why a JWK or a JWT could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoseError {
    /// The JWK is not a P-256 EC key (`kty` `EC`, `crv` `P-256`).
    #[error("the JWK is not a P-256 EC key")]
    NotP256,
    /// A coordinate or the private scalar is not valid base64url of 32 bytes, or the point is
    /// not on the curve.
    #[error("the JWK's key material is invalid")]
    KeyMaterial,
    /// The JWK is neither a P-256 nor a secp256k1 EC key.
    #[error("the JWK is not a P-256 or secp256k1 EC key")]
    UnsupportedKey,
    /// The JWK holds no private part (`d`).
    #[error("the JWK has no private key")]
    NotPrivate,
    /// A header or claims object did not serialize.
    #[error("the JWT did not serialize")]
    Serialize,
}

/// Unpadded base64url.
#[must_use]
pub(crate) fn b64url(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A JSON Web Key, as much of it as atproto OAuth uses (EC: P-256 or secp256k1). `d`, the
/// private scalar, never prints.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type: `EC`.
    pub kty: String,
    /// Curve: `P-256` or `secp256k1`.
    pub crv: String,
    /// The x coordinate, base64url.
    pub x: String,
    /// The y coordinate, base64url.
    pub y: String,
    /// The private scalar, base64url; absent in a public key.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "secret_opt")]
    pub d: Option<SecretString>,
    /// Key id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm: `ES256` or `ES256K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use: `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kty", &self.kty)
            .field("crv", &self.crv)
            .field("x", &self.x)
            .field("y", &self.y)
            .field("d", &self.d.as_ref().map(|_| "<redacted>"))
            .field("kid", &self.kid)
            .finish()
    }
}

mod secret_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::SecretString;

    #[allow(clippy::ref_option)]
    pub(super) fn serialize<S: Serializer>(
        v: &Option<SecretString>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_str(v.expose()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(SecretString::new))
    }
}

impl Jwk {
    /// The same key without its private part, `kid`, `alg` and `use` kept.
    #[must_use]
    pub fn to_public(&self) -> Self {
        Self {
            d: None,
            ..self.clone()
        }
    }

    /// The RFC 7638 thumbprint of this (EC) key: base64url SHA-256 of
    /// `{"crv":…,"kty":…,"x":…,"y":…}`.
    #[must_use]
    pub fn thumbprint(&self) -> String {
        thumbprint(&[
            ("crv", &self.crv),
            ("kty", &self.kty),
            ("x", &self.x),
            ("y", &self.y),
        ])
    }
}

/// RFC 7638: the base64url SHA-256 of the JSON object of a key's required members, which
/// the caller passes in lexicographic order of their names.
#[must_use]
pub(crate) fn thumbprint(members: &[(&str, &str)]) -> String {
    let mut json = String::from("{");
    for (i, (k, v)) in members.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        // Names and values of the required members are base64url or fixed ASCII names, but
        // escape anyway: serde_json writes the canonical JSON string form.
        json.push_str(&serde_json::Value::from(*k).to_string());
        json.push(':');
        json.push_str(&serde_json::Value::from(*v).to_string());
    }
    json.push('}');
    b64url(Sha256::digest(json.as_bytes()))
}

/// A P-256 private key used for ES256: a DPoP key or a confidential client's signing key.
///
/// Invariant: a valid non-zero P-256 scalar. Never printed.
#[derive(Clone)]
pub struct EcKey {
    signing: SigningKey,
    kid: Option<String>,
}

impl fmt::Debug for EcKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcKey")
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

fn decode32(s: &str) -> Result<Zeroizing<[u8; 32]>, JoseError> {
    let mut buf = Zeroizing::new([0u8; 35]);
    let n = URL_SAFE_NO_PAD
        .decode_slice(s.as_bytes(), &mut buf[..])
        .map_err(|_| JoseError::KeyMaterial)?;
    if n != 32 {
        return Err(JoseError::KeyMaterial);
    }
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&buf[..32]);
    Ok(out)
}

impl EcKey {
    /// A fresh key from the operating system's random generator.
    #[must_use]
    pub fn generate() -> Self {
        Self {
            signing: generate_scalar(|b| SigningKey::from_slice(b).ok()),
            kid: None,
        }
    }

    /// The same key with a key id (for a confidential client's keyset).
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, if any.
    #[must_use]
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Reads a private P-256 JWK (`kty` `EC`, `crv` `P-256`, `d`); checks that `x` and `y`
    /// match `d`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        if jwk.kty != "EC" || jwk.crv != P256_CRV {
            return Err(JoseError::NotP256);
        }
        let d = private_scalar(jwk)?;
        let signing = SigningKey::from_slice(&d[..]).map_err(|_| JoseError::KeyMaterial)?;
        let key = Self {
            signing,
            kid: jwk.kid.clone(),
        };
        same_public(&key.public_jwk(), jwk)?;
        Ok(key)
    }

    /// The private JWK (with `d`, `kid`, `alg` `ES256`). Handle as the secret it is.
    #[must_use]
    pub fn to_private_jwk(&self) -> Jwk {
        let mut jwk = self.public_jwk();
        jwk.d = Some(SecretString::new(b64url(self.signing.to_bytes())));
        jwk
    }

    /// The public JWK (no `d`), with `kid` if set, `alg` `ES256` and `use` `sig`.
    #[must_use]
    pub fn public_jwk(&self) -> Jwk {
        let point = self.signing.verifying_key().to_sec1_point(false);
        // An uncompressed point always has both coordinates.
        public_jwk(
            P256_CRV,
            "ES256",
            point.x().map(b64url).unwrap_or_default(),
            point.y().map(b64url).unwrap_or_default(),
            self.kid.clone(),
        )
    }

    /// The bare public JWK, as a DPoP proof header carries it: `kty`, `crv`, `x`, `y` only.
    #[must_use]
    pub fn bare_public_jwk(&self) -> serde_json::Value {
        bare(&self.public_jwk())
    }

    /// The RFC 7638 thumbprint of the public key.
    #[must_use]
    pub fn thumbprint(&self) -> String {
        self.public_jwk().thumbprint()
    }

    /// The verifying (public) key.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a compact JWS: `b64url(header).b64url(claims).b64url(r || s)`.
    pub fn sign_jwt(
        &self,
        header: &serde_json::Value,
        claims: &serde_json::Value,
    ) -> Result<String, JoseError> {
        let header = serde_json::to_vec(header).map_err(|_| JoseError::Serialize)?;
        let claims = serde_json::to_vec(claims).map_err(|_| JoseError::Serialize)?;
        Ok(self.sign_encoded(&b64url(header), &claims))
    }

    /// Signs a compact JWS whose header is already encoded (`b64url(header)`) and whose
    /// claims are serialized JSON.
    pub(crate) fn sign_encoded(&self, header_b64: &str, claims: &[u8]) -> String {
        compact_jws(header_b64, claims, |input| {
            let sig = presign::sign(self.signing.as_nonzero_scalar(), &Sha256::digest(input));
            sig.to_bytes().into()
        })
    }
}

/// A secp256k1 private key used for ES256K: a DPoP key, when the authorization server offers
/// ES256K (the reference client prefers it, and it signs in about half the time of P-256).
///
/// Invariant: a valid non-zero secp256k1 scalar. Never printed.
#[derive(Clone)]
pub struct Secp256k1Key {
    signing: k256::ecdsa::SigningKey,
}

impl fmt::Debug for Secp256k1Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secp256k1Key")
            .field("thumbprint", &self.public_jwk().thumbprint())
            .finish_non_exhaustive()
    }
}

impl Secp256k1Key {
    /// A fresh key from the operating system's random generator.
    #[must_use]
    pub fn generate() -> Self {
        Self {
            signing: generate_scalar(|b| k256::ecdsa::SigningKey::from_slice(b).ok()),
        }
    }

    /// Reads a private secp256k1 JWK (`kty` `EC`, `crv` `secp256k1`, `d`); checks that `x`
    /// and `y` match `d`.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, JoseError> {
        if jwk.kty != "EC" || jwk.crv != SECP256K1_CRV {
            return Err(JoseError::UnsupportedKey);
        }
        let d = private_scalar(jwk)?;
        let signing =
            k256::ecdsa::SigningKey::from_slice(&d[..]).map_err(|_| JoseError::KeyMaterial)?;
        let key = Self { signing };
        same_public(&key.public_jwk(), jwk)?;
        Ok(key)
    }

    /// The private JWK (with `d` and `alg` `ES256K`). Handle as the secret it is.
    #[must_use]
    pub fn to_private_jwk(&self) -> Jwk {
        let mut jwk = self.public_jwk();
        jwk.d = Some(SecretString::new(b64url(self.signing.to_bytes())));
        jwk
    }

    /// The public JWK (no `d`), with `alg` `ES256K` and `use` `sig`.
    #[must_use]
    pub fn public_jwk(&self) -> Jwk {
        let point = self.signing.verifying_key().to_sec1_point(false);
        // An uncompressed point always has both coordinates.
        public_jwk(
            SECP256K1_CRV,
            "ES256K",
            point.x().map(b64url).unwrap_or_default(),
            point.y().map(b64url).unwrap_or_default(),
            None,
        )
    }

    /// The bare public JWK, as a DPoP proof header carries it: `kty`, `crv`, `x`, `y` only.
    #[must_use]
    pub fn bare_public_jwk(&self) -> serde_json::Value {
        bare(&self.public_jwk())
    }

    /// The verifying (public) key.
    #[must_use]
    pub fn verifying_key(&self) -> &k256::ecdsa::VerifyingKey {
        self.signing.verifying_key()
    }

    /// Signs a compact JWS whose header is already encoded: ES256K, SHA-256 and `r || s`.
    pub(crate) fn sign_encoded(&self, header_b64: &str, claims: &[u8]) -> String {
        compact_jws(header_b64, claims, |input| {
            let sig = presign::sign(self.signing.as_nonzero_scalar(), &Sha256::digest(input));
            sig.to_bytes().into()
        })
    }
}

/// JOSE's name of the P-256 curve.
const P256_CRV: &str = "P-256";
/// JOSE's name of the secp256k1 curve (RFC 8812).
const SECP256K1_CRV: &str = "secp256k1";

/// A key from 32 random bytes, drawn again in the rare case they are no valid scalar (zero,
/// or not below the group order: probability below 2^-127 on either curve).
fn generate_scalar<K>(parse: impl Fn(&[u8]) -> Option<K>) -> K {
    loop {
        let bytes = Zeroizing::new(random_bytes::<32>());
        if let Some(key) = parse(&bytes[..]) {
            return key;
        }
    }
}

/// The private scalar `d` of a JWK, decoded.
fn private_scalar(jwk: &Jwk) -> Result<Zeroizing<[u8; 32]>, JoseError> {
    let d = jwk.d.as_ref().ok_or(JoseError::NotPrivate)?;
    decode32(d.expose())
}

/// A JWK's `x` and `y` must be those of the key its `d` makes.
fn same_public(derived: &Jwk, given: &Jwk) -> Result<(), JoseError> {
    if derived.x == given.x && derived.y == given.y {
        Ok(())
    } else {
        Err(JoseError::KeyMaterial)
    }
}

fn public_jwk(crv: &str, alg: &str, x: String, y: String, kid: Option<String>) -> Jwk {
    Jwk {
        kty: "EC".into(),
        crv: crv.into(),
        x,
        y,
        d: None,
        kid,
        alg: Some(alg.into()),
        use_: Some("sig".into()),
    }
}

fn bare(jwk: &Jwk) -> serde_json::Value {
    serde_json::json!({"kty": jwk.kty, "crv": jwk.crv, "x": jwk.x, "y": jwk.y})
}

/// `header_b64.b64url(claims).b64url(signature)`, the signature made by `sign` over the first
/// two parts.
fn compact_jws(header_b64: &str, claims: &[u8], sign: impl FnOnce(&[u8]) -> [u8; 64]) -> String {
    // Header, claims and the 64-byte signature (86 characters), and the two dots.
    let mut jwt = String::with_capacity(header_b64.len() + claims.len().div_ceil(3) * 4 + 88);
    jwt.push_str(header_b64);
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut jwt);
    let sig = sign(jwt.as_bytes());
    jwt.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut jwt);
    jwt
}

/// A random identifier for `jti` and `state`: 128 bits, base64url.
#[must_use]
pub(crate) fn random_id() -> String {
    b64url(random_bytes::<16>())
}

#[cfg(test)]
pub(crate) use tests::decode_jwt;

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier as _;

    use super::*;

    /// Splits and decodes a compact JWS (test helper).
    pub(crate) fn decode_jwt(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>) {
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);
        let h = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let c = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let s = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        (
            serde_json::from_slice(&h).unwrap(),
            serde_json::from_slice(&c).unwrap(),
            s,
        )
    }

    #[test]
    fn rfc7638_section_3_1_vector() {
        // The RSA key of RFC 7638 §3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        assert_eq!(
            thumbprint(&[("e", "AQAB"), ("kty", "RSA"), ("n", n)]),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    #[test]
    fn jwk_round_trip_and_redaction() {
        let k = EcKey::generate().with_kid("k1");
        let jwk = k.to_private_jwk();
        let back = EcKey::from_jwk(&jwk).unwrap();
        assert_eq!(back.thumbprint(), k.thumbprint());
        assert_eq!(back.kid(), Some("k1"));
        let d = jwk.d.as_ref().unwrap().expose().to_owned();
        assert!(!format!("{jwk:?} {k:?}").contains(&d));
        // Serialized private JWK carries d; the public one does not.
        let s = serde_json::to_string(&jwk).unwrap();
        assert!(s.contains(&d));
        let p = serde_json::to_string(&jwk.to_public()).unwrap();
        assert!(!p.contains("\"d\""));
        let parsed: Jwk = serde_json::from_str(&s).unwrap();
        assert_eq!(parsed, jwk);
        // A JWK whose x does not match d is refused.
        let mut wrong = jwk.clone();
        wrong.x = EcKey::generate().public_jwk().x;
        assert_eq!(
            EcKey::from_jwk(&wrong).map(|_| ()),
            Err(JoseError::KeyMaterial)
        );
        assert_eq!(
            EcKey::from_jwk(&jwk.to_public()).map(|_| ()),
            Err(JoseError::NotPrivate)
        );
        let mut rsa = jwk;
        rsa.kty = "RSA".into();
        assert_eq!(EcKey::from_jwk(&rsa).map(|_| ()), Err(JoseError::NotP256));
    }

    #[test]
    fn secp256k1_jwk_round_trip_and_es256k_signature() {
        use k256::ecdsa::signature::Verifier as _;

        let k = Secp256k1Key::generate();
        let jwk = k.to_private_jwk();
        assert_eq!(
            (jwk.crv.as_str(), jwk.alg.as_deref()),
            ("secp256k1", Some("ES256K"))
        );
        let back = Secp256k1Key::from_jwk(&jwk).unwrap();
        assert_eq!(back.public_jwk(), k.public_jwk());
        let d = jwk.d.as_ref().unwrap().expose().to_owned();
        assert!(!format!("{jwk:?} {k:?}").contains(&d));
        // The wrong curve, a mismatched point, or no private part: refused.
        let mut wrong = jwk.clone();
        wrong.x = Secp256k1Key::generate().public_jwk().x;
        assert_eq!(
            Secp256k1Key::from_jwk(&wrong).map(|_| ()),
            Err(JoseError::KeyMaterial)
        );
        assert_eq!(
            Secp256k1Key::from_jwk(&jwk.to_public()).map(|_| ()),
            Err(JoseError::NotPrivate)
        );
        assert_eq!(
            Secp256k1Key::from_jwk(&EcKey::generate().to_private_jwk()).map(|_| ()),
            Err(JoseError::UnsupportedKey)
        );
        // A P-256 scalar under a secp256k1 label does not pass as one.
        let mut relabelled = EcKey::generate().to_private_jwk();
        relabelled.crv = "secp256k1".into();
        assert_eq!(
            Secp256k1Key::from_jwk(&relabelled).map(|_| ()),
            Err(JoseError::KeyMaterial)
        );

        let header = b64url(br#"{"alg":"ES256K"}"#);
        let jwt = k.sign_encoded(&header, br#"{"a":1}"#);
        let (h, c, sig) = decode_jwt(&jwt);
        assert_eq!(
            (h["alg"].as_str(), c["a"].as_i64()),
            (Some("ES256K"), Some(1))
        );
        let sig = k256::ecdsa::Signature::from_slice(&sig).unwrap();
        let signing_input = jwt.rsplit_once('.').unwrap().0;
        k.verifying_key()
            .verify(signing_input.as_bytes(), &sig)
            .unwrap();
        // Verified against the JWK's own coordinates, as a server does.
        let mut sec1 = vec![4u8];
        sec1.extend(URL_SAFE_NO_PAD.decode(&jwk.x).unwrap());
        sec1.extend(URL_SAFE_NO_PAD.decode(&jwk.y).unwrap());
        k256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
            .unwrap()
            .verify(signing_input.as_bytes(), &sig)
            .unwrap();
    }

    #[test]
    fn es256_signature_verifies_as_raw_r_s() {
        let k = EcKey::generate();
        let jwt = k
            .sign_jwt(
                &serde_json::json!({"alg": "ES256"}),
                &serde_json::json!({"a": 1}),
            )
            .unwrap();
        let (h, c, sig) = decode_jwt(&jwt);
        assert_eq!(h["alg"], "ES256");
        assert_eq!(c["a"], 1);
        assert_eq!(sig.len(), 64);
        let signing_input = jwt.rsplit_once('.').unwrap().0;
        let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        k.verifying_key()
            .verify(signing_input.as_bytes(), &sig)
            .unwrap();
    }
}
