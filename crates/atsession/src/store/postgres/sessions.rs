//! App sessions in PostgreSQL.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{BACKEND, PostgresStore, cas_from_row, err};
use crate::app::{SessionId, StoredSession};
use crate::secret::TokenHash;
use crate::store::oauth::{GrantId, SessionGrantStore, SessionWithGrant};
use crate::store::{Cas, SessionStore, StoreError, StoreFuture};
use crate::syntax::{Did, Handle};

const COLUMNS: &str = "id, token_hash, access_token_hash, access_expires_at, did, handle, data, \
                       grant_id, created_at, last_seen_at, idle_expires_at, absolute_expires_at, \
                       version";

/// The statements, with the schema name filled in. Built once per store; each is prepared
/// once per pooled connection.
pub(super) struct Sql {
    insert: String,
    by_id: String,
    by_token: String,
    by_access: String,
    by_token_with_grant: String,
    by_access_with_grant: String,
    update: String,
    delete: String,
    list: String,
    delete_by_did: String,
    cleanup: String,
    expired_with_grants: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        let t = format!("\"{schema}\".atsession_app_sessions");
        Self {
            insert: format!(
                "INSERT INTO {t} ({COLUMNS}, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            by_id: format!("SELECT {COLUMNS} FROM {t} WHERE id = $1"),
            by_token: format!("SELECT {COLUMNS} FROM {t} WHERE token_hash = $1"),
            by_access: format!("SELECT {COLUMNS} FROM {t} WHERE access_token_hash = $1"),
            by_token_with_grant: with_grant(&t, schema, "token_hash"),
            by_access_with_grant: with_grant(&t, schema, "access_token_hash"),
            // One round trip: the CTE's UPDATE and the existence check see the same snapshot.
            update: format!(
                "WITH u AS (
                    UPDATE {t} SET token_hash = $2, access_token_hash = $3,
                        access_expires_at = $4, did = $5, handle = $6, data = $7, grant_id = $8,
                        created_at = $9, last_seen_at = $10, idle_expires_at = $11,
                        absolute_expires_at = $12, version = $13, expires_at = $14
                    WHERE id = $1 AND version = $15
                    RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM u), EXISTS (SELECT 1 FROM {t} WHERE id = $1)"
            ),
            delete: format!("DELETE FROM {t} WHERE id = $1"),
            list: format!(
                "SELECT {COLUMNS} FROM {t} WHERE did = $1 ORDER BY created_at, id COLLATE \"C\""
            ),
            delete_by_did: format!("DELETE FROM {t} WHERE did = $1"),
            cleanup: format!(
                "DELETE FROM {t} WHERE id IN (
                    SELECT id FROM {t} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
                 )"
            ),
            expired_with_grants: format!(
                "SELECT id, grant_id FROM {t} \
                 WHERE expires_at <= $1 AND grant_id IS NOT NULL LIMIT $2"
            ),
        }
    }
}

/// A session and its grant, joined: the session's [`COLUMNS`], then the grant's columns
/// from index 13 (NULL when the grant is gone).
fn with_grant(t: &str, schema: &str, key: &str) -> String {
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("s.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {columns}, g.id, g.did, g.issuer, g.sealed, g.created_at, g.updated_at, g.version \
         FROM {t} s LEFT JOIN \"{schema}\".atsession_oauth_grants g ON g.id = s.grant_id \
         WHERE s.{key} = $1"
    )
}

fn corrupt(detail: &'static str) -> StoreError {
    StoreError::corrupt(BACKEND, detail)
}

fn hash(bytes: &[u8], detail: &'static str) -> Result<TokenHash, StoreError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| corrupt(detail))?;
    Ok(TokenHash::from_bytes(arr))
}

/// Reads one row into a record; a malformed column is [`StoreError::Corrupt`].
fn from_row(row: &Row) -> Result<StoredSession, StoreError> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a Row,
        i: usize,
    ) -> Result<T, StoreError> {
        row.try_get(i).map_err(|e| StoreError::Corrupt {
            backend: BACKEND,
            detail: "a column has the wrong type",
            source: Some(Box::new(e)),
        })
    }
    let id: &str = get(row, 0)?;
    let token_hash: &[u8] = get(row, 1)?;
    let access_hash: Option<&[u8]> = get(row, 2)?;
    let access_expires: Option<OffsetDateTime> = get(row, 3)?;
    let did: &str = get(row, 4)?;
    let handle: &str = get(row, 5)?;
    let data: &str = get(row, 6)?;
    let version: i64 = get(row, 12)?;
    if access_hash.is_some() != access_expires.is_some() {
        return Err(corrupt("access token hash without expiry, or the reverse"));
    }
    Ok(StoredSession {
        id: SessionId::parse(id).ok_or_else(|| corrupt("malformed session id"))?,
        token_hash: hash(token_hash, "malformed token hash")?,
        access_token_hash: access_hash
            .map(|h| hash(h, "malformed access token hash"))
            .transpose()?,
        access_expires_at: access_expires,
        did: Did::new(did).map_err(|_| corrupt("malformed DID"))?,
        handle: Handle::new(handle).map_err(|_| corrupt("malformed handle"))?,
        data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt {
            backend: BACKEND,
            detail: "session data is not JSON",
            source: Some(Box::new(e)),
        })?,
        grant_id: get::<Option<&str>>(row, 7)?
            .map(|g| GrantId::parse(g).ok_or_else(|| corrupt("malformed grant id")))
            .transpose()?,
        created_at: get(row, 8)?,
        last_seen_at: get(row, 9)?,
        idle_expires_at: get(row, 10)?,
        absolute_expires_at: get(row, 11)?,
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
    })
}

/// A record as the values bound to `$1..$14` (the columns, then `expires_at`).
struct Bound<'a> {
    s: &'a StoredSession,
    id: &'a str,
    token_hash: &'a [u8],
    access_token_hash: Option<&'a [u8]>,
    did: &'a str,
    handle: &'a str,
    data: String,
    grant_id: Option<&'a str>,
    expires_at: OffsetDateTime,
    version: i64,
}

impl<'a> Bound<'a> {
    fn new(s: &'a StoredSession) -> Result<Self, StoreError> {
        Ok(Self {
            s,
            id: s.id.as_str(),
            token_hash: s.token_hash.as_bytes(),
            access_token_hash: s
                .access_token_hash
                .as_ref()
                .map(|h| h.as_bytes().as_slice()),
            did: s.did.as_str(),
            handle: s.handle.as_str(),
            data: s.data.to_string(),
            grant_id: s.grant_id.as_ref().map(GrantId::as_str),
            expires_at: s.expires_at(),
            version: version(s.version)?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        let s = self.s;
        [
            &self.id,
            &self.token_hash,
            &self.access_token_hash,
            &s.access_expires_at,
            &self.did,
            &self.handle,
            &self.data,
            &self.grant_id,
            &s.created_at,
            &s.last_seen_at,
            &s.idle_expires_at,
            &s.absolute_expires_at,
            &self.version,
            &self.expires_at,
        ]
    }
}

fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::backend(BACKEND, "write", "version out of range"))
}

impl PostgresStore {
    async fn load_with_grant(
        &self,
        sql: &str,
        key: &(dyn ToSql + Sync),
    ) -> Result<Option<SessionWithGrant>, StoreError> {
        let client = self.client("load").await?;
        let stmt = client.prepare_cached(sql).await.map_err(err("load"))?;
        let Some(row) = client.query_opt(&stmt, &[key]).await.map_err(err("load"))? else {
            return Ok(None);
        };
        let session = from_row(&row)?;
        let grant = match row.try_get::<_, Option<&str>>(13) {
            Ok(Some(_)) => Some(super::oauth::grant_at(&row, 13)?),
            Ok(None) => None,
            Err(e) => {
                return Err(StoreError::Corrupt {
                    backend: BACKEND,
                    detail: "an OAuth column has the wrong type",
                    source: Some(Box::new(e)),
                });
            }
        };
        Ok(Some((Arc::new(session), grant)))
    }

    async fn load_one(
        &self,
        sql: &str,
        key: &(dyn ToSql + Sync),
    ) -> Result<Option<StoredSession>, StoreError> {
        let client = self.client("load").await?;
        let stmt = client.prepare_cached(sql).await.map_err(err("load"))?;
        let row = client.query_opt(&stmt, &[key]).await.map_err(err("load"))?;
        row.as_ref().map(from_row).transpose()
    }

    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client(operation).await?;
        let stmt = client.prepare_cached(sql).await.map_err(err(operation))?;
        client.execute(&stmt, params).await.map_err(err(operation))
    }

    fn sql(&self) -> &Sql {
        &self.inner.sessions
    }
}

impl SessionStore for PostgresStore {
    fn create<'a>(&'a self, session: &'a StoredSession) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded("create", async move {
                let b = Bound::new(session)?;
                self.execute("create", &self.sql().insert, &b.params())
                    .await
                    .map(drop)
            })
            .await
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded("load", async move {
                self.load_one(&self.sql().by_id, &id.as_str()).await
            });
            Ok(found.await?.map(Arc::new))
        })
    }

    fn load_by_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded("load_by_token", async move {
                self.load_one(&self.sql().by_token, &hash.as_bytes().as_slice())
                    .await
            });
            Ok(found.await?.map(Arc::new))
        })
    }

    fn load_by_access_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded("load_by_access_token", async move {
                self.load_one(&self.sql().by_access, &hash.as_bytes().as_slice())
                    .await
            });
            Ok(found.await?.map(Arc::new))
        })
    }

    fn update<'a>(
        &'a self,
        expected_version: u64,
        session: &'a StoredSession,
    ) -> StoreFuture<'a, Cas> {
        StoreFuture::new(async move {
            self.bounded("update", async move {
                let b = Bound::new(session)?;
                let expected = version(expected_version)?;
                let mut params: Vec<&(dyn ToSql + Sync)> = b.params().to_vec();
                params.push(&expected);
                let client = self.client("update").await?;
                let stmt = client
                    .prepare_cached(&self.sql().update)
                    .await
                    .map_err(err("update"))?;
                let row = client
                    .query_one(&stmt, &params)
                    .await
                    .map_err(err("update"))?;
                cas_from_row(&row, "update")
            })
            .await
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            self.bounded("delete", async move {
                let n = self
                    .execute("delete", &self.sql().delete, &[&id.as_str()])
                    .await?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
        StoreFuture::new(async move {
            self.bounded("list_by_did", async move {
                let client = self.client("list").await?;
                let stmt = client
                    .prepare_cached(&self.sql().list)
                    .await
                    .map_err(err("list"))?;
                let rows = client
                    .query(&stmt, &[&did.as_str()])
                    .await
                    .map_err(err("list"))?;
                rows.iter().map(from_row).collect()
            })
            .await
        })
    }

    fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded("delete_by_did", async move {
                self.execute("delete by DID", &self.sql().delete_by_did, &[&did.as_str()])
                    .await
            })
            .await
        })
    }

    fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded("delete_expired", async move {
                self.delete_in_batches("cleanup", &self.sql().cleanup, now)
                    .await
            })
            .await
        })
    }

    fn expired_with_grants<'a>(
        &'a self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(SessionId, GrantId)>> {
        StoreFuture::new(async move {
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.bounded("expired_with_grants", async move {
                let client = self.client("expired_with_grants").await?;
                let stmt = client
                    .prepare_cached(&self.sql().expired_with_grants)
                    .await
                    .map_err(err("expired_with_grants"))?;
                let rows = client
                    .query(&stmt, &[&now, &limit])
                    .await
                    .map_err(err("expired_with_grants"))?;
                rows.iter()
                    .map(|row| {
                        let id: String = row.try_get(0).map_err(err("expired_with_grants"))?;
                        let grant: String = row.try_get(1).map_err(err("expired_with_grants"))?;
                        Ok((
                            SessionId::parse(&id).ok_or_else(|| corrupt("malformed session id"))?,
                            GrantId::parse(&grant).ok_or_else(|| corrupt("malformed grant id"))?,
                        ))
                    })
                    .collect()
            })
            .await
        })
    }
}

/// One query: the session and its grant, joined.
impl SessionGrantStore for PostgresStore {
    fn reads_together(&self) -> bool {
        true
    }

    fn load_by_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        StoreFuture::new(async move {
            self.bounded("load_by_token", async move {
                self.load_with_grant(&self.sql().by_token_with_grant, &hash.as_bytes().as_slice())
                    .await
            })
            .await
        })
    }

    fn load_by_access_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        StoreFuture::new(async move {
            self.bounded("load_by_access_token", async move {
                self.load_with_grant(
                    &self.sql().by_access_with_grant,
                    &hash.as_bytes().as_slice(),
                )
                .await
            })
            .await
        })
    }
}
