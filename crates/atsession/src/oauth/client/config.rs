//! How an [`OAuthClient`](super::OAuthClient) is made: [`OAuthClientConfig`] and its defaults.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::client_metadata::ClientMetadata;
use crate::clock::{Clock, SystemClock};
use crate::crypto::AtRestKeyring;
use crate::oauth::client::keys::Keyset;
use crate::oauth::discovery::identity::IdentityConfig;
use crate::oauth::wire::dpop::DpopAlg;
use crate::oauth::wire::http::{HttpOptions, PdsOptions};

/// How long a pending authorization lives by default.
pub const DEFAULT_STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// How long server metadata is cached by default.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(60);

/// Everything an [`OAuthClient`](super::OAuthClient) is made from.
pub struct OAuthClientConfig {
    /// The client's metadata (its `client_id`, redirect URIs, scope, auth method).
    pub metadata: ClientMetadata,
    /// The signing keys of a `private_key_jwt` client.
    pub keyset: Option<Keyset>,
    /// Where identities are resolved.
    pub identity: IdentityConfig,
    /// Request limits and development mode of discovery and authorization-server requests.
    pub http: HttpOptions,
    /// Limits of the calls to a grant's PDS: no body cap by default, a connect timeout and
    /// an idle timeout (see [`PdsOptions`]).
    pub pds: PdsOptions,
    /// Your own HTTP client, instead of the ones [`build_client`](crate::oauth::build_client) and [`build_pds_client`](crate::oauth::build_pds_client)
    /// make; it is used for PDS calls too. It should not follow redirects nor have a
    /// whole-call timeout shorter than your largest PDS transfer; the URL policy, size
    /// limits and idle timeouts are applied either way, but only the built-in clients also
    /// refuse host names resolving to private addresses.
    pub http_client: Option<reqwest::Client>,
    /// The keys that seal states and grants at rest.
    pub keyring: AtRestKeyring,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// How long a pending authorization lives (10 minutes by default).
    pub state_ttl: Duration,
    /// How long server metadata is cached (1 minute by default).
    pub metadata_ttl: Duration,
    /// The algorithm of new grants' DPoP keys when the authorization server offers it
    /// (`ES256K` by default, as the reference client); otherwise the other one. Grants keep
    /// the key they were made with.
    pub dpop_alg: DpopAlg,
}

impl fmt::Debug for OAuthClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClientConfig")
            .field("client_id", &self.metadata.client_id)
            .field("http", &self.http)
            .field("pds", &self.pds)
            .finish_non_exhaustive()
    }
}

impl OAuthClientConfig {
    /// A configuration with defaults: the public PLC directory, standard handle resolution,
    /// production HTTP policy, system clock.
    #[must_use]
    pub fn new(metadata: ClientMetadata, keyring: AtRestKeyring) -> Self {
        Self {
            metadata,
            keyset: None,
            identity: IdentityConfig::default(),
            http: HttpOptions::default(),
            pds: PdsOptions::default(),
            http_client: None,
            keyring,
            clock: Arc::new(SystemClock),
            state_ttl: DEFAULT_STATE_TTL,
            metadata_ttl: DEFAULT_METADATA_TTL,
            dpop_alg: DpopAlg::Es256k,
        }
    }

    /// Sets the keyset (required for `private_key_jwt`).
    #[must_use]
    pub fn keyset(mut self, keyset: Keyset) -> Self {
        self.keyset = Some(keyset);
        self
    }

    /// Sets where identities are resolved.
    #[must_use]
    pub fn identity(mut self, identity: IdentityConfig) -> Self {
        self.identity = identity;
        self
    }

    /// Development mode: allows `http` and loopback addresses. Never in production.
    #[must_use]
    pub fn dev_mode(mut self, on: bool) -> Self {
        self.http.dev_mode = on;
        self
    }

    /// Sets the limits of PDS calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::PdsOptions;
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("2026-11", [7; 32])?);
    /// let config = OAuthClientConfig::new(metadata, keyring).pds_options(PdsOptions {
    ///     idle_timeout: Duration::from_secs(120),
    ///     max_body: Some(512 * 1024 * 1024),
    ///     ..PdsOptions::default()
    /// });
    /// assert_eq!(config.pds.idle_timeout, Duration::from_secs(120));
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn pds_options(mut self, pds: PdsOptions) -> Self {
        self.pds = pds;
        self
    }

    /// Uses your own HTTP client.
    #[must_use]
    pub fn http_client(mut self, client: reqwest::Client) -> Self {
        self.http_client = Some(client);
        self
    }

    /// Sets the clock.
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the algorithm new grants' DPoP keys use when the authorization server offers it
    /// (`ES256K` by default); a server that offers only the other gets the other.
    ///
    /// ```
    /// use atsession::crypto::{AtRestKey, AtRestKeyring};
    /// use atsession::oauth::DpopAlg;
    /// use atsession::oauth::{ClientMetadata, OAuthClientConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let metadata = ClientMetadata::loopback(&["http://127.0.0.1:8080/callback"], "atproto")?;
    /// let keyring = AtRestKeyring::new(AtRestKey::new("2026-11", [7; 32])?);
    /// let config = OAuthClientConfig::new(metadata, keyring).dpop_alg(DpopAlg::Es256);
    /// assert_eq!(config.dpop_alg, DpopAlg::Es256);
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn dpop_alg(mut self, alg: DpopAlg) -> Self {
        self.dpop_alg = alg;
        self
    }
}
