//! OAuth states and grants in PostgreSQL (tables `atsession_oauth_states` and
//! `atsession_oauth_grants`, migration 3).
//!
//! Times are stored as `timestamptz`, truncated to the millisecond as every other backend
//! keeps them. A take is one `DELETE … RETURNING`, so two callers cannot both get a state; a
//! grant update is `UPDATE … WHERE id = $1 AND version = $n` and never inserts.

use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{BACKEND, PostgresStore, cas_from_row, err};
use crate::clock::truncate_ms;
use crate::secret::TokenHash;
use crate::store::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, StateStore, StoredAuthState, StoredGrant,
};
use crate::store::{Cas, StoreError, StoreFuture};
use crate::syntax::Did;

const GRANT_COLUMNS: &str = "id, did, issuer, sealed, created_at, updated_at, version";

/// The statements, with the schema name filled in.
pub(super) struct Sql {
    put_state: String,
    take_state: String,
    cleanup_states: String,
    create_grant: String,
    load_grant: String,
    update_grant: String,
    delete_grant: String,
    list_grants: String,
    all_grants: String,
    delete_grants_by_did: String,
}

impl Sql {
    pub(super) fn new(schema: &str) -> Self {
        let s = format!("\"{schema}\".atsession_oauth_states");
        let g = format!("\"{schema}\".atsession_oauth_grants");
        Self {
            put_state: format!("INSERT INTO {s} (key, sealed, expires_at) VALUES ($1, $2, $3)"),
            // The delete is the take: a concurrent second take waits for the row lock, then
            // finds the row gone. An expired state is deleted all the same.
            take_state: format!(
                "DELETE FROM {s} WHERE key = $1 RETURNING sealed, expires_at, expires_at > $2"
            ),
            cleanup_states: format!(
                "DELETE FROM {s} WHERE key IN (
                    SELECT key FROM {s} WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED
                 )"
            ),
            create_grant: format!(
                "INSERT INTO {g} ({GRANT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            ),
            load_grant: format!("SELECT {GRANT_COLUMNS} FROM {g} WHERE id = $1"),
            // One round trip: the CTE's UPDATE and the existence check see the same snapshot.
            update_grant: format!(
                "WITH u AS (
                    UPDATE {g} SET did = $2, issuer = $3, sealed = $4, created_at = $5,
                        updated_at = $6, version = $7
                    WHERE id = $1 AND version = $8
                    RETURNING 1
                 )
                 SELECT (SELECT count(*) FROM u), EXISTS (SELECT 1 FROM {g} WHERE id = $1)"
            ),
            delete_grant: format!("DELETE FROM {g} WHERE id = $1"),
            list_grants: format!(
                "SELECT {GRANT_COLUMNS} FROM {g} WHERE did = $1 ORDER BY created_at, id COLLATE \"C\""
            ),
            delete_grants_by_did: format!("DELETE FROM {g} WHERE did = $1"),
            all_grants: format!(
                "SELECT {GRANT_COLUMNS} FROM {g} WHERE id COLLATE \"C\" > $1 ORDER BY id COLLATE \"C\" LIMIT $2"
            ),
        }
    }
}

fn corrupt(detail: &'static str) -> StoreError {
    StoreError::corrupt(BACKEND, detail)
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(|e| StoreError::Corrupt {
        backend: BACKEND,
        detail: "an OAuth column has the wrong type",
        source: Some(Box::new(e)),
    })
}

fn grant_from_row(row: &Row) -> Result<StoredGrant, StoreError> {
    grant_at(row, 0)
}

/// The grant whose [`GRANT_COLUMNS`] start at column `at` of `row`.
pub(super) fn grant_at(row: &Row, at: usize) -> Result<StoredGrant, StoreError> {
    let id: &str = get(row, at)?;
    let did: &str = get(row, at + 1)?;
    let version: i64 = get(row, at + 6)?;
    Ok(StoredGrant {
        id: GrantId::parse(id).ok_or_else(|| corrupt("malformed grant id"))?,
        did: Did::new(did).map_err(|_| corrupt("malformed DID"))?,
        issuer: get(row, at + 2)?,
        sealed: get(row, at + 3)?,
        created_at: get(row, at + 4)?,
        updated_at: get(row, at + 5)?,
        version: u64::try_from(version).map_err(|_| corrupt("negative version"))?,
    })
}

fn version(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::backend(BACKEND, "write", "version out of range"))
}

/// A grant as the values bound to `$1..$7`.
struct BoundGrant<'a> {
    g: &'a StoredGrant,
    id: &'a str,
    did: &'a str,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    version: i64,
}

impl<'a> BoundGrant<'a> {
    fn new(g: &'a StoredGrant) -> Result<Self, StoreError> {
        Ok(Self {
            g,
            id: g.id.as_str(),
            did: g.did.as_str(),
            created_at: truncate_ms(g.created_at),
            updated_at: truncate_ms(g.updated_at),
            version: version(g.version)?,
        })
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 7] {
        [
            &self.id,
            &self.did,
            &self.g.issuer,
            &self.g.sealed,
            &self.created_at,
            &self.updated_at,
            &self.version,
        ]
    }
}

impl PostgresStore {
    fn oauth_sql(&self) -> &Sql {
        &self.inner.oauth
    }

    async fn oauth_execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let client = self.client(operation).await?;
        let stmt = client.prepare_cached(sql).await.map_err(err(operation))?;
        client.execute(&stmt, params).await.map_err(err(operation))
    }

    async fn oauth_query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let client = self.client(operation).await?;
        let stmt = client.prepare_cached(sql).await.map_err(err(operation))?;
        client.query(&stmt, params).await.map_err(err(operation))
    }
}

impl StateStore for PostgresStore {
    fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded("put_state", async move {
                let key = state.key.as_bytes().as_slice();
                let expires = truncate_ms(state.expires_at);
                self.oauth_execute(
                    "put_state",
                    &self.oauth_sql().put_state,
                    &[&key, &state.sealed, &expires],
                )
                .await
                .map(drop)
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
            self.bounded("take_state", async move {
                let k = key.as_bytes().as_slice();
                let now = truncate_ms(now);
                let rows = self
                    .oauth_query("take_state", &self.oauth_sql().take_state, &[&k, &now])
                    .await?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let live: bool = get(row, 2)?;
                if !live {
                    return Ok(None);
                }
                Ok(Some(StoredAuthState {
                    key: *key,
                    sealed: get(row, 0)?,
                    expires_at: get(row, 1)?,
                }))
            })
            .await
        })
    }

    fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded("delete_expired_states", async move {
                let now = truncate_ms(now);
                self.delete_in_batches(
                    "delete_expired_states",
                    &self.oauth_sql().cleanup_states,
                    now,
                )
                .await
            })
            .await
        })
    }
}

impl GrantStore for PostgresStore {
    fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded("create_grant", async move {
                let b = BoundGrant::new(grant)?;
                self.oauth_execute("create_grant", &self.oauth_sql().create_grant, &b.params())
                    .await
                    .map(drop)
            })
            .await
        })
    }

    fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        StoreFuture::new(async move {
            self.bounded("load_grant", async move {
                let rows = self
                    .oauth_query("load_grant", &self.oauth_sql().load_grant, &[&id.as_str()])
                    .await?;
                rows.first().map(grant_from_row).transpose()
            })
            .await
        })
    }

    fn update_grant<'a>(
        &'a self,
        expected_version: u64,
        grant: &'a StoredGrant,
    ) -> StoreFuture<'a, Cas> {
        StoreFuture::new(async move {
            self.bounded("update_grant", async move {
                let b = BoundGrant::new(grant)?;
                let expected = version(expected_version)?;
                let mut params: Vec<&(dyn ToSql + Sync)> = b.params().to_vec();
                params.push(&expected);
                let rows = self
                    .oauth_query("update_grant", &self.oauth_sql().update_grant, &params)
                    .await?;
                let row = rows
                    .first()
                    .ok_or_else(|| corrupt("the update returned no row"))?;
                cas_from_row(row, "update_grant")
            })
            .await
        })
    }

    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            self.bounded("delete_grant", async move {
                let n = self
                    .oauth_execute(
                        "delete_grant",
                        &self.oauth_sql().delete_grant,
                        &[&id.as_str()],
                    )
                    .await?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        StoreFuture::new(async move {
            self.bounded("list_grants_by_did", async move {
                self.oauth_query(
                    "list_grants_by_did",
                    &self.oauth_sql().list_grants,
                    &[&did.as_str()],
                )
                .await?
                .iter()
                .map(grant_from_row)
                .collect()
            })
            .await
        })
    }

    fn list_grants<'a>(
        &'a self,
        cursor: Option<&'a GrantCursor>,
        limit: usize,
    ) -> StoreFuture<'a, GrantPage> {
        StoreFuture::new(async move {
            let after = cursor.map_or("", GrantCursor::as_str);
            let limit = limit.clamp(1, 10_000);
            self.bounded("list_grants", async move {
                let grants = self
                    .oauth_query(
                        "list_grants",
                        &self.oauth_sql().all_grants,
                        &[&after, &(limit as i64)],
                    )
                    .await?
                    .iter()
                    .map(grant_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let next = (grants.len() == limit)
                    .then(|| grants.last().map(|g| GrantCursor::new(g.id.as_str())))
                    .flatten();
                Ok(GrantPage { grants, next })
            })
            .await
        })
    }

    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded("delete_grants_by_did", async move {
                self.oauth_execute(
                    "delete_grants_by_did",
                    &self.oauth_sql().delete_grants_by_did,
                    &[&did.as_str()],
                )
                .await
            })
            .await
        })
    }
}
