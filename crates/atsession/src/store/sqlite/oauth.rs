//! OAuth states and grants in SQLite (tables `oauth_states` and `oauth_grants`, migration 2).

use rusqlite::{Row, params};
use time::OffsetDateTime;

use super::{BACKEND, SqliteStore, err};
use crate::clock::{from_millis, to_millis};
use crate::secret::TokenHash;
use crate::store::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, StateStore, StoredAuthState, StoredGrant,
};
use crate::store::{Cas, StoreError, StoreFuture};
use crate::syntax::Did;

/// The columns `grant_from_row` reads, in its order.
macro_rules! grant_columns {
    () => {
        "id, did, issuer, sealed, created_at, updated_at, version"
    };
}

fn corrupt(detail: &'static str) -> StoreError {
    StoreError::corrupt(BACKEND, detail)
}

fn column_type(e: rusqlite::Error) -> StoreError {
    StoreError::Corrupt {
        backend: BACKEND,
        detail: "an OAuth grant column has the wrong type",
        source: Some(Box::new(e)),
    }
}

/// A grant from a row of `grant_columns!()`.
fn grant_from_row(row: &Row<'_>) -> Result<StoredGrant, StoreError> {
    let id = row
        .get_ref(0)
        .and_then(|v| Ok(v.as_str()?))
        .map_err(column_type)?;
    let id = GrantId::parse(id).ok_or_else(|| corrupt("malformed grant id"))?;
    grant_fields(row, 1, id)
}

/// A grant from the columns after the id, starting at `at`.
pub(super) fn grant_fields(
    row: &Row<'_>,
    at: usize,
    id: GrantId,
) -> Result<StoredGrant, StoreError> {
    let did = row
        .get_ref(at)
        .map_err(column_type)?
        .as_str()
        .map_err(|e| column_type(e.into()))?;
    let version: i64 = row.get(at + 5).map_err(column_type)?;
    Ok(StoredGrant {
        id,
        did: Did::new(did).map_err(|_| corrupt("malformed DID"))?,
        issuer: row.get(at + 1).map_err(column_type)?,
        sealed: row.get(at + 2).map_err(column_type)?,
        created_at: from_millis(row.get(at + 3).map_err(column_type)?),
        updated_at: from_millis(row.get(at + 4).map_err(column_type)?),
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
    })
}

fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::backend(BACKEND, "write", "version out of range"))
}

impl StateStore for SqliteStore {
    fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            let key = *state.key.as_bytes();
            let sealed = state.sealed.clone();
            let expires = to_millis(state.expires_at);
            self.write("put_state", move |conn| {
                conn.prepare_cached(
                    "INSERT INTO oauth_states (key, sealed, expires_at) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![key, sealed, expires]))
                .map_err(err("put_state"))?;
                Ok(())
            })
            .await
        })
    }

    fn take_state<'a>(
        &'a self,
        key: &'a TokenHash,
        now: OffsetDateTime,
    ) -> StoreFuture<'a, Option<StoredAuthState>> {
        StoreFuture::new(async move {
            let key = *key.as_bytes();
            let now = to_millis(now);
            self.write("take_state", move |conn| {
                // One statement: the delete is the take, so two callers cannot both get it.
                let mut stmt = conn
                    .prepare_cached(
                        "DELETE FROM oauth_states WHERE key = ?1 RETURNING sealed, expires_at",
                    )
                    .map_err(err("take_state"))?;
                let mut rows = stmt.query(params![key]).map_err(err("take_state"))?;
                let Some(row) = rows.next().map_err(err("take_state"))? else {
                    return Ok(None);
                };
                let sealed: Vec<u8> = row.get(0).map_err(err("take_state"))?;
                let expires: i64 = row.get(1).map_err(err("take_state"))?;
                // Drain the statement so the delete completes.
                while rows.next().map_err(err("take_state"))?.is_some() {}
                Ok((expires > now).then(|| StoredAuthState {
                    key: TokenHash::from_bytes(key),
                    sealed,
                    expires_at: from_millis(expires),
                }))
            })
            .await
        })
    }

    fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            /// States deleted per write transaction, so that the writer is never held long.
            const BATCH: i64 = 1000;
            let now = to_millis(now);
            let mut total = 0u64;
            loop {
                let n = self
                    .write("delete_expired_states", move |conn| {
                        let n = conn
                            .prepare_cached(
                                "DELETE FROM oauth_states WHERE key IN \
                             (SELECT key FROM oauth_states WHERE expires_at <= ?1 LIMIT ?2)",
                            )
                            .and_then(|mut s| s.execute(params![now, BATCH]))
                            .map_err(err("delete_expired_states"))?;
                        if (n as i64) < BATCH {
                            super::reclaim(conn)?;
                        }
                        Ok(n)
                    })
                    .await?;
                total += n as u64;
                if (n as i64) < BATCH {
                    return Ok(total);
                }
            }
        })
    }
}

impl GrantStore for SqliteStore {
    fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            let g = grant.clone();
            let v = version(g.version)?;
            self.write("create_grant", move |conn| {
                conn.prepare_cached(concat!(
                    "INSERT INTO oauth_grants (",
                    grant_columns!(),
                    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        g.id.as_str(),
                        g.did.as_str(),
                        g.issuer,
                        g.sealed,
                        to_millis(g.created_at),
                        to_millis(g.updated_at),
                        v
                    ])
                })
                .map_err(err("create_grant"))?;
                Ok(())
            })
            .await
        })
    }

    fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        StoreFuture::ready(self.read(|conn| {
            // The hot path: a constant statement text (the statement cache is keyed by it),
            // and the id is the one asked for, not parsed again from the row.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT did, issuer, sealed, created_at, updated_at, version \
                     FROM oauth_grants WHERE id = ?1",
                )
                .map_err(err("load_grant"))?;
            let mut rows = stmt.query([id.as_str()]).map_err(err("load_grant"))?;
            match rows.next().map_err(err("load_grant"))? {
                Some(row) => grant_fields(row, 0, id.clone()).map(Some),
                None => Ok(None),
            }
        }))
    }

    fn update_grant<'a>(
        &'a self,
        expected_version: u64,
        grant: &'a StoredGrant,
    ) -> StoreFuture<'a, Cas> {
        StoreFuture::new(async move {
            let g = grant.clone();
            let expected = version(expected_version)?;
            let v = version(g.version)?;
            self.write("update_grant", move |conn| {
                let tx = conn.transaction().map_err(err("update_grant"))?;
                let n = tx
                    .prepare_cached(
                        "UPDATE oauth_grants SET did = ?2, issuer = ?3, sealed = ?4, \
                     created_at = ?5, updated_at = ?6, version = ?7 \
                     WHERE id = ?1 AND version = ?8",
                    )
                    .and_then(|mut s| {
                        s.execute(params![
                            g.id.as_str(),
                            g.did.as_str(),
                            g.issuer,
                            g.sealed,
                            to_millis(g.created_at),
                            to_millis(g.updated_at),
                            v,
                            expected
                        ])
                    })
                    .map_err(err("update_grant"))?;
                let out = if n == 1 {
                    Cas::Updated
                } else {
                    let exists: bool = tx
                        .prepare_cached("SELECT EXISTS (SELECT 1 FROM oauth_grants WHERE id = ?1)")
                        .and_then(|mut s| s.query_row([g.id.as_str()], |r| r.get(0)))
                        .map_err(err("update_grant"))?;
                    if exists { Cas::Conflict } else { Cas::Missing }
                };
                tx.commit().map_err(err("update_grant"))?;
                Ok(out)
            })
            .await
        })
    }

    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            let id = id.as_str().to_owned();
            self.write("delete_grant", move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM oauth_grants WHERE id = ?1")
                    .and_then(|mut s| s.execute([id]))
                    .map_err(err("delete_grant"))?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        StoreFuture::ready({
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(concat!(
                        "SELECT ",
                        grant_columns!(),
                        " FROM oauth_grants WHERE did = ?1 ORDER BY created_at, id"
                    ))
                    .map_err(err("list_grants_by_did"))?;
                let mut rows = stmt
                    .query([did.as_str()])
                    .map_err(err("list_grants_by_did"))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(err("list_grants_by_did"))? {
                    out.push(grant_from_row(row)?);
                }
                Ok(out)
            })
        })
    }

    fn list_grants<'a>(
        &'a self,
        cursor: Option<&'a GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, GrantPage> {
        let after = cursor.map_or("", GrantCursor::as_str);
        let limit = limit.clamp(1, 10_000);
        StoreFuture::ready(
            self.read(|conn| {
                let mut stmt = conn
                    .prepare_cached(concat!(
                        "SELECT ",
                        grant_columns!(),
                        " FROM oauth_grants WHERE id > ?1 ORDER BY id LIMIT ?2"
                    ))
                    .map_err(err("list_grants"))?;
                let mut rows = stmt
                    .query(params![after, limit as i64])
                    .map_err(err("list_grants"))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next().map_err(err("list_grants"))? {
                    out.push(grant_from_row(row)?);
                }
                Ok(out)
            })
            .map(|grants| {
                let next = (grants.len() == limit)
                    .then(|| grants.last().map(|g| GrantCursor::new(g.id.as_str())))
                    .flatten();
                GrantPage { grants, next }
            }),
        )
    }

    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            let did = did.as_str().to_owned();
            self.write("delete_grants_by_did", move |conn| {
                let n = conn
                    .prepare_cached("DELETE FROM oauth_grants WHERE did = ?1")
                    .and_then(|mut s| s.execute([did]))
                    .map_err(err("delete_grants_by_did"))?;
                Ok(n as u64)
            })
            .await
        })
    }
}
