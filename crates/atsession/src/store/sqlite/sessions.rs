//! App sessions in SQLite.

use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, ToSql, params};
use time::OffsetDateTime;

use super::{BACKEND, SqliteStore, err};
use crate::app::{SessionId, StoredSession};
use crate::clock::{from_millis, to_millis};
use crate::secret::TokenHash;
use crate::store::oauth::{GrantId, SessionGrantStore, SessionWithGrant};
use crate::store::{Cas, SessionStore, StoreError, StoreFuture};
use crate::syntax::{Did, Handle};

macro_rules! columns {
    () => {
        "id, token_hash, access_token_hash, access_expires_at, did, handle, data, grant_id, \
         created_at, last_seen_at, idle_expires_at, absolute_expires_at, version"
    };
}
const COLUMNS: &str = columns!();
const SELECT_BY_ID: &str = concat!("SELECT ", columns!(), " FROM app_sessions WHERE id = ?1");
const SELECT_BY_TOKEN: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM app_sessions WHERE token_hash = ?1"
);
const SELECT_BY_ACCESS: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM app_sessions WHERE access_token_hash = ?1"
);

/// A session and its grant's columns (NULL when the grant is gone), for
/// [`SessionGrantStore`]: the session's [`COLUMNS`], then the grant's from index 13.
macro_rules! with_grant {
    ($key:literal) => {
        concat!(
            "SELECT s.id, s.token_hash, s.access_token_hash, s.access_expires_at, s.did, ",
            "s.handle, s.data, s.grant_id, s.created_at, s.last_seen_at, s.idle_expires_at, ",
            "s.absolute_expires_at, s.version, ",
            "g.did, g.issuer, g.sealed, g.created_at, g.updated_at, g.version ",
            "FROM app_sessions s LEFT JOIN oauth_grants g ON g.id = s.grant_id WHERE s.",
            $key,
            " = ?1"
        )
    };
}
const SELECT_BY_TOKEN_WITH_GRANT: &str = with_grant!("token_hash");
const SELECT_BY_ACCESS_WITH_GRANT: &str = with_grant!("access_token_hash");

fn corrupt(detail: &'static str) -> impl FnOnce() -> StoreError {
    move || StoreError::corrupt(BACKEND, detail)
}

fn hash(bytes: &[u8], detail: &'static str) -> Result<TokenHash, StoreError> {
    let arr: [u8; 32] = bytes.try_into().map_err(|_| corrupt(detail)())?;
    Ok(TokenHash::from_bytes(arr))
}

fn from_row(row: &Row<'_>) -> Result<StoredSession, StoreError> {
    // Every column is read in place (no copy, no conversion through `FromSql`); the record
    // owns only what it keeps.
    let value = |i: usize| {
        row.get_ref(i).map_err(|e| StoreError::Corrupt {
            backend: BACKEND,
            detail: "a column is missing",
            source: Some(Box::new(e)),
        })
    };
    let type_err = |e: rusqlite::types::FromSqlError| StoreError::Corrupt {
        backend: BACKEND,
        detail: "a column has the wrong type",
        source: Some(Box::new(e)),
    };
    let text = |i| value(i)?.as_str().map_err(type_err);
    let int = |i| value(i)?.as_i64().map_err(type_err);
    let id = text(0)?;
    let token_hash = value(1)?.as_blob().map_err(type_err)?;
    let access_hash = value(2)?.as_blob_or_null().map_err(type_err)?;
    let access_expires = value(3)?.as_i64_or_null().map_err(type_err)?;
    let did = text(4)?;
    let handle = text(5)?;
    let data = text(6)?;
    let grant_id = value(7)?.as_str_or_null().map_err(type_err)?;
    let version = int(12)?;
    if access_hash.is_some() != access_expires.is_some() {
        return Err(corrupt("access token hash without expiry, or the reverse")());
    }
    Ok(StoredSession {
        id: SessionId::parse(id).ok_or_else(corrupt("malformed session id"))?,
        token_hash: hash(token_hash, "malformed token hash")?,
        access_token_hash: access_hash
            .map(|h| hash(h, "malformed access token hash"))
            .transpose()?,
        access_expires_at: access_expires.map(from_millis),
        did: Did::new(did).map_err(|_| corrupt("malformed DID")())?,
        handle: Handle::new(handle).map_err(|_| corrupt("malformed handle")())?,
        data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt {
            backend: BACKEND,
            detail: "session data is not JSON",
            source: Some(Box::new(e)),
        })?,
        grant_id: grant_id
            .map(|g| GrantId::parse(g).ok_or_else(corrupt("malformed grant id")))
            .transpose()?,
        created_at: from_millis(int(8)?),
        last_seen_at: from_millis(int(9)?),
        idle_expires_at: from_millis(int(10)?),
        absolute_expires_at: from_millis(int(11)?),
        version: u64::try_from(version).map_err(|_| corrupt("negative version")())?,
    })
}

fn load_one(
    conn: &Connection,
    sql: &'static str,
    key: &dyn rusqlite::ToSql,
) -> Result<Option<StoredSession>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(err("load"))?;
    let mut rows = stmt.query([key]).map_err(err("load"))?;
    match rows.next().map_err(err("load"))? {
        Some(row) => from_row(row).map(Some),
        None => Ok(None),
    }
}

/// One session and its grant (the grant's columns are NULL when it is gone).
fn load_with_grant(
    conn: &Connection,
    sql: &'static str,
    key: &[u8],
) -> Result<Option<SessionWithGrant>, StoreError> {
    let mut stmt = conn.prepare_cached(sql).map_err(err("load"))?;
    let mut rows = stmt.query([key]).map_err(err("load"))?;
    let Some(row) = rows.next().map_err(err("load"))? else {
        return Ok(None);
    };
    let session = from_row(row)?;
    let grant = match &session.grant_id {
        Some(id) if row.get_ref(13).map_err(err("load"))? != ValueRef::Null => {
            Some(super::oauth::grant_fields(row, 13, id.clone())?)
        }
        _ => None,
    };
    Ok(Some((Arc::new(session), grant)))
}

/// Converts a record to the values bound to the row (in [`COLUMNS`] order, plus expires_at).
struct Bound {
    id: String,
    token_hash: [u8; 32],
    access_token_hash: Option<[u8; 32]>,
    access_expires_at: Option<i64>,
    did: String,
    handle: String,
    data: String,
    grant_id: Option<String>,
    created_at: i64,
    last_seen_at: i64,
    idle_expires_at: i64,
    absolute_expires_at: i64,
    expires_at: i64,
    version: i64,
}

impl Bound {
    /// The values bound to `?1`..`?14`: the columns in [`COLUMNS`] order, then `expires_at`.
    fn values(&self) -> [&dyn ToSql; 14] {
        [
            &self.id,
            &self.token_hash,
            &self.access_token_hash,
            &self.access_expires_at,
            &self.did,
            &self.handle,
            &self.data,
            &self.grant_id,
            &self.created_at,
            &self.last_seen_at,
            &self.idle_expires_at,
            &self.absolute_expires_at,
            &self.version,
            &self.expires_at,
        ]
    }

    fn new(s: &StoredSession) -> Result<Self, StoreError> {
        Ok(Self {
            id: s.id.as_str().to_owned(),
            token_hash: *s.token_hash.as_bytes(),
            access_token_hash: s.access_token_hash.map(|h| *h.as_bytes()),
            access_expires_at: s.access_expires_at.map(to_millis),
            did: s.did.as_str().to_owned(),
            handle: s.handle.as_str().to_owned(),
            data: s.data.to_string(),
            grant_id: s.grant_id.as_ref().map(|g| g.as_str().to_owned()),
            created_at: to_millis(s.created_at),
            last_seen_at: to_millis(s.last_seen_at),
            idle_expires_at: to_millis(s.idle_expires_at),
            absolute_expires_at: to_millis(s.absolute_expires_at),
            expires_at: to_millis(s.expires_at()),
            version: i64::try_from(s.version)
                .map_err(|_| StoreError::backend(BACKEND, "write", "version out of range"))?,
        })
    }
}

/// Deletes at most this many expired rows per transaction, so that cleanup never holds the
/// write lock for long.
const CLEANUP_BATCH: i64 = 1000;

impl SessionStore for SqliteStore {
    fn create<'a>(&'a self, session: &'a StoredSession) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            let b = Bound::new(session)?;
            self.write("create", move |conn| {
                let mut stmt = conn
                    .prepare_cached(&format!(
                        "INSERT INTO app_sessions ({COLUMNS}, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                    ))
                    .map_err(err("create"))?;
                stmt.execute(b.values().as_slice()).map_err(err("create"))?;
                Ok(())
            })
            .await
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready(
            self.read(|c| load_one(c, SELECT_BY_ID, &id.as_str()))
                .map(|found| found.map(Arc::new)),
        )
    }

    fn load_by_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready(
            self.read(|c| load_one(c, SELECT_BY_TOKEN, &hash.as_bytes().as_slice()))
                .map(|found| found.map(Arc::new)),
        )
    }

    fn load_by_access_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::ready(
            self.read(|c| load_one(c, SELECT_BY_ACCESS, &hash.as_bytes().as_slice()))
                .map(|found| found.map(Arc::new)),
        )
    }

    fn update<'a>(
        &'a self,
        expected_version: u64,
        session: &'a StoredSession,
    ) -> StoreFuture<'a, Cas> {
        StoreFuture::new(async move {
            let b = Bound::new(session)?;
            let expected = i64::try_from(expected_version)
                .map_err(|_| StoreError::backend(BACKEND, "update", "version out of range"))?;
            self.write("update", move |conn| {
                let tx = conn.transaction().map_err(err("update"))?;
                let n = tx
                    .prepare_cached(
                        "UPDATE app_sessions SET token_hash = ?2, access_token_hash = ?3, \
                     access_expires_at = ?4, did = ?5, handle = ?6, data = ?7, grant_id = ?8, \
                     created_at = ?9, last_seen_at = ?10, idle_expires_at = ?11, \
                     absolute_expires_at = ?12, version = ?13, expires_at = ?14 \
                     WHERE id = ?1 AND version = ?15",
                    )
                    .and_then(|mut s| {
                        let mut values = b.values().to_vec();
                        values.push(&expected);
                        s.execute(values.as_slice())
                    })
                    .map_err(err("update"))?;
                let outcome = if n == 1 {
                    Cas::Updated
                } else {
                    let exists = tx
                        .prepare_cached("SELECT 1 FROM app_sessions WHERE id = ?1")
                        .and_then(|mut s| s.query_row([&b.id], |_| Ok(())).optional())
                        .map_err(err("update"))?;
                    if exists.is_some() {
                        Cas::Conflict
                    } else {
                        Cas::Missing
                    }
                };
                tx.commit().map_err(err("update"))?;
                Ok(outcome)
            })
            .await
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            let id = id.as_str().to_owned();
            self.write("delete", move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM app_sessions WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(err("delete"))?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
        StoreFuture::ready(self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM app_sessions WHERE did = ?1 ORDER BY created_at, id"
                ))
                .map_err(err("list"))?;
            let mut rows = stmt.query([did.as_str()]).map_err(err("list"))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(err("list"))? {
                out.push(from_row(row)?);
            }
            Ok(out)
        }))
    }

    fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            let did = did.as_str().to_owned();
            self.write("delete by DID", move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM app_sessions WHERE did = ?1")
                    .and_then(|mut s| s.execute([did]))
                    .map_err(err("delete by DID"))?;
                Ok(n as u64)
            })
            .await
        })
    }

    fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            let now = to_millis(now);
            let mut total = 0u64;
            loop {
                let n = self
                    .write("cleanup", move |conn| {
                        conn.prepare_cached(
                            "DELETE FROM app_sessions WHERE id IN \
                         (SELECT id FROM app_sessions WHERE expires_at <= ?1 LIMIT ?2)",
                        )
                        .and_then(|mut s| s.execute(params![now, CLEANUP_BATCH]))
                        .map_err(err("cleanup"))
                        .and_then(|n| {
                            if (n as i64) < CLEANUP_BATCH {
                                super::reclaim(conn)?;
                            }
                            Ok(n)
                        })
                    })
                    .await?;
                total += n as u64;
                if (n as i64) < CLEANUP_BATCH {
                    return Ok(total);
                }
            }
        })
    }

    fn expired_with_grants<'a>(
        &'a self,
        now: OffsetDateTime,
        limit: usize,
    ) -> StoreFuture<'a, Vec<(SessionId, GrantId)>> {
        StoreFuture::ready({
            let now = to_millis(now);
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            self.read(move |c| {
                let mut stmt = c
                    .prepare_cached(
                        "SELECT id, grant_id FROM app_sessions \
                     WHERE expires_at <= ?1 AND grant_id IS NOT NULL LIMIT ?2",
                    )
                    .map_err(err("expired_with_grants"))?;
                let rows = stmt
                    .query_map(params![now, limit], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(err("expired_with_grants"))?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, grant) = row.map_err(err("expired_with_grants"))?;
                    let id = SessionId::parse(&id).ok_or_else(corrupt("malformed session id"))?;
                    let grant = GrantId::parse(&grant).ok_or_else(corrupt("malformed grant id"))?;
                    out.push((id, grant));
                }
                Ok(out)
            })
        })
    }
}

/// One query: the session and its grant, joined.
impl SessionGrantStore for SqliteStore {
    fn reads_together(&self) -> bool {
        true
    }

    fn load_by_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        StoreFuture::ready(
            self.read(|c| load_with_grant(c, SELECT_BY_TOKEN_WITH_GRANT, hash.as_bytes())),
        )
    }

    fn load_by_access_token_with_grant<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<SessionWithGrant>> {
        StoreFuture::ready(
            self.read(|c| load_with_grant(c, SELECT_BY_ACCESS_WITH_GRANT, hash.as_bytes())),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::app::SessionManager;
    use crate::store::oauth::{GrantStore, StoredGrant};

    /// The joined lookup runs on its cached statement as prepared: a statement prepared
    /// again on every execution (what SQLite did before the planner stability guarantee
    /// was set) costs more than the lookup itself.
    #[tokio::test]
    async fn the_joined_lookup_is_never_prepared_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).await.unwrap();
        let now = crate::clock::truncate_ms(OffsetDateTime::now_utc());
        let grant = StoredGrant {
            id: GrantId::generate(),
            did: Did::new("did:plc:ewvi7nxzyoun6zhxrhs64oiz").unwrap(),
            issuer: "https://pds.example".into(),
            sealed: vec![1, 2, 3],
            created_at: now,
            updated_at: now,
            version: 1,
        };
        store.create_grant(&grant).await.unwrap();
        let sessions = SessionManager::new(store.clone());
        let options = crate::app::CreateOptions::new().grant_id(grant.id.clone());
        let mut hashes = Vec::new();
        for _ in 0..4 {
            let new = sessions
                .create_with(
                    "did:plc:ewvi7nxzyoun6zhxrhs64oiz",
                    "alice.test",
                    (),
                    options.clone(),
                )
                .await
                .unwrap();
            hashes.push(new.token.hash());
        }
        let reprepared = store
            .read(|conn| {
                for _ in 0..5 {
                    for hash in &hashes {
                        let (_, g) =
                            load_with_grant(conn, SELECT_BY_TOKEN_WITH_GRANT, hash.as_bytes())?
                                .unwrap();
                        assert_eq!(g.as_ref(), Some(&grant));
                    }
                }
                let stmt = conn
                    .prepare_cached(SELECT_BY_TOKEN_WITH_GRANT)
                    .map_err(err("test"))?;
                Ok(stmt.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .unwrap();
        assert_eq!(reprepared, 0);
    }
}
