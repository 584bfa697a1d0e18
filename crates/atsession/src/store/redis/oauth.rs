//! OAuth states and grants in Redis: the Lua scripts and the key layout.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `{prefix}os:{state_hash_hex}` | hash | `s` (sealed state), `x` (expiry, Unix ms) |
//! | `{prefix}ox` | sorted set | state hashes scored by expiry, for cleanup |
//! | `{prefix}og:{grant_id}` | hash | `id`, `did`, `iss`, `s` (sealed), `c`, `u` (created, updated, Unix ms), `v` (version) |
//! | `{prefix}od:{did}` | set | the ids of the account's grants |
//!
//! A state key expires (`PEXPIREAT`) at the state's expiry, so Redis drops a state nobody
//! took even if no cleanup runs; the cleanup set expires with its latest member. Taking a
//! state is one script that reads, deletes and checks the expiry against the caller's `now`.
//! As with app sessions, a state whose expiry has passed *by the Redis server's clock* is
//! gone whatever `now` says, and [`delete_expired_states`](StateStore::delete_expired_states)
//! counts only the states that still existed (it also prunes the cleanup set).
//!
//! Grants have no expiry of their own: a grant lives until it is deleted (its refresh token's
//! lifetime is the authorization server's business, and a refused refresh deletes it). The
//! DID set changes with the grant in the same script, so the index is always exact.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds key names from it.

use std::collections::HashMap;
use std::sync::LazyLock;

use redis::Script;
use time::OffsetDateTime;

use super::{BACKEND, RedisStore, err};
use crate::clock::{from_millis, to_millis};
use crate::secret::TokenHash;
use crate::store::oauth::{
    GrantCursor, GrantId, GrantPage, GrantStore, StateStore, StoredAuthState, StoredGrant,
};
use crate::store::{Cas, StoreError, StoreFuture};
use crate::syntax::Did;

/// Expired states handled per cleanup script run.
const CLEANUP_BATCH: usize = 1000;

/// ARGV: prefix, hash hex, sealed, expiry. Returns 1, or 0 if the key exists.
const PUT_STATE: &str = r"
local p, h, sealed, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p .. 'os:' .. h
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 's', sealed, 'x', at)
redis.call('PEXPIREAT', k, at)
local zk = p .. 'ox'
redis.call('ZADD', zk, at, h)
if redis.call('PEXPIRETIME', zk) < tonumber(at) then redis.call('PEXPIREAT', zk, at) end
return 1
";

/// ARGV: prefix, hash hex, now. Deletes the state; returns {sealed, expiry} if it was there
/// and had not expired at `now`, else {}.
const TAKE_STATE: &str = r"
local p, h, now = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'os:' .. h
local v = redis.call('HMGET', k, 's', 'x')
redis.call('ZREM', p .. 'ox', h)
if not v[1] then return {} end
redis.call('DEL', k)
if not v[2] or tonumber(v[2]) <= tonumber(now) then return {} end
return {v[1], v[2]}
";

/// ARGV: prefix, now, batch. Returns {members handled, states that still existed}.
const DELETE_EXPIRED_STATES: &str = r"
local p, now, batch = ARGV[1], ARGV[2], ARGV[3]
local zk = p .. 'ox'
local members = redis.call('ZRANGEBYSCORE', zk, '-inf', now, 'LIMIT', 0, batch)
local n = 0
for _, h in ipairs(members) do
  n = n + redis.call('DEL', p .. 'os:' .. h)
  redis.call('ZREM', zk, h)
end
return {#members, n}
";

/// ARGV: prefix, id, did, field/value pairs. Returns 1, or 0 if the id exists.
const CREATE_GRANT: &str = r"
local p, id, did = ARGV[1], ARGV[2], ARGV[3]
local k = p .. 'og:' .. id
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, unpack(ARGV, 4))
redis.call('SADD', p .. 'od:' .. did, id)
return 1
";

/// ARGV: prefix, id, expected version, did, field/value pairs (every field).
/// Returns 0 missing, 1 conflict, 2 updated. Never inserts.
const UPDATE_GRANT: &str = r"
local p, id, expected, did = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local k = p .. 'og:' .. id
local old = redis.call('HMGET', k, 'v', 'did')
if not old[1] then return 0 end
if old[1] ~= expected then return 1 end
redis.call('HSET', k, unpack(ARGV, 5))
if old[2] ~= did then
  redis.call('SREM', p .. 'od:' .. old[2], id)
  redis.call('SADD', p .. 'od:' .. did, id)
end
return 2
";

/// ARGV: prefix, id. Returns 1 if it existed.
const DELETE_GRANT: &str = r"
local p, id = ARGV[1], ARGV[2]
local k = p .. 'og:' .. id
local did = redis.call('HGET', k, 'did')
if not did then return 0 end
redis.call('DEL', k)
redis.call('SREM', p .. 'od:' .. did, id)
return 1
";

/// ARGV: prefix, did. Deletes every grant of the account; returns how many existed.
const DELETE_GRANTS_BY_DID: &str = r"
local p, did = ARGV[1], ARGV[2]
local dk = p .. 'od:' .. did
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', dk)) do
  n = n + redis.call('DEL', p .. 'og:' .. id)
end
redis.call('DEL', dk)
return n
";

/// ARGV: prefix, did. Returns the grants' fields, one array each.
const LIST_GRANTS: &str = r"
local p, did = ARGV[1], ARGV[2]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'od:' .. did)) do
  local rec = redis.call('HGETALL', p .. 'og:' .. id)
  if #rec > 0 then out[#out + 1] = rec end
end
return out
";

struct Scripts {
    put_state: Script,
    take_state: Script,
    delete_expired_states: Script,
    create_grant: Script,
    update_grant: Script,
    delete_grant: Script,
    delete_grants_by_did: Script,
    list_grants: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    put_state: Script::new(PUT_STATE),
    take_state: Script::new(TAKE_STATE),
    delete_expired_states: Script::new(DELETE_EXPIRED_STATES),
    create_grant: Script::new(CREATE_GRANT),
    update_grant: Script::new(UPDATE_GRANT),
    delete_grant: Script::new(DELETE_GRANT),
    delete_grants_by_did: Script::new(DELETE_GRANTS_BY_DID),
    list_grants: Script::new(LIST_GRANTS),
});

/// `text` with the `SCAN MATCH` glob characters escaped.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn corrupt(detail: &'static str) -> StoreError {
    StoreError::corrupt(BACKEND, detail)
}

fn millis(bytes: &[u8]) -> Result<i64, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| corrupt("a time is not a number"))
}

/// The grant's fields as script arguments: field/value pairs, every field.
fn grant_fields(g: &StoredGrant) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(14);
    let mut field = |k: &str, v: Vec<u8>| {
        out.push(k.as_bytes().to_vec());
        out.push(v);
    };
    field("id", g.id.as_str().as_bytes().to_vec());
    field("did", g.did.as_str().as_bytes().to_vec());
    field("iss", g.issuer.as_bytes().to_vec());
    field("s", g.sealed.clone());
    field("c", to_millis(g.created_at).to_string().into_bytes());
    field("u", to_millis(g.updated_at).to_string().into_bytes());
    field("v", g.version.to_string().into_bytes());
    out
}

/// Rebuilds a grant from `HGETALL`'s flat field/value list; `None` for an empty list.
fn grant_from_fields(flat: Vec<Vec<u8>>) -> Result<Option<StoredGrant>, StoreError> {
    if flat.is_empty() {
        return Ok(None);
    }
    if !flat.len().is_multiple_of(2) {
        return Err(corrupt("odd field list"));
    }
    let mut f: HashMap<Vec<u8>, Vec<u8>> = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        f.insert(k, v);
    }
    let mut take = |k: &str| {
        f.remove(k.as_bytes())
            .ok_or_else(|| corrupt("a grant field is missing"))
    };
    let text = |v: Vec<u8>| String::from_utf8(v).map_err(|_| corrupt("a grant field is not UTF-8"));
    let id = text(take("id")?)?;
    let did = text(take("did")?)?;
    let version = text(take("v")?)?;
    Ok(Some(StoredGrant {
        id: GrantId::parse(&id).ok_or_else(|| corrupt("malformed grant id"))?,
        did: Did::new(did).map_err(|_| corrupt("malformed DID"))?,
        issuer: text(take("iss")?)?,
        sealed: take("s")?,
        created_at: from_millis(millis(&take("c")?)?),
        updated_at: from_millis(millis(&take("u")?)?),
        version: version.parse().map_err(|_| corrupt("malformed version"))?,
    }))
}

impl StateStore for RedisStore {
    fn put_state<'a>(&'a self, state: &'a StoredAuthState) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded_write("put_state", async move {
                let put: i64 = SCRIPTS
                    .put_state
                    .arg(&*self.prefix)
                    .arg(state.key.to_hex())
                    .arg(state.sealed.as_slice())
                    .arg(to_millis(state.expires_at))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("put_state"))?;
                if put == 1 {
                    Ok(())
                } else {
                    Err(StoreError::backend(
                        BACKEND,
                        "put_state",
                        "a state with this key exists",
                    ))
                }
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
            self.bounded_write("take_state", async move {
                let got: Vec<Vec<u8>> = SCRIPTS
                    .take_state
                    .arg(&*self.prefix)
                    .arg(key.to_hex())
                    .arg(to_millis(now))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("take_state"))?;
                let mut it = got.into_iter();
                match (it.next(), it.next()) {
                    (None, _) => Ok(None),
                    (Some(sealed), Some(expires)) => Ok(Some(StoredAuthState {
                        key: *key,
                        sealed,
                        expires_at: from_millis(millis(&expires)?),
                    })),
                    (Some(_), None) => Err(corrupt("a state has no expiry")),
                }
            })
            .await
        })
    }

    fn delete_expired_states<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded_write("delete_expired_states", async move {
                let now = to_millis(now);
                let mut total = 0;
                loop {
                    let (handled, existed): (usize, u64) = SCRIPTS
                        .delete_expired_states
                        .arg(&*self.prefix)
                        .arg(now)
                        .arg(CLEANUP_BATCH)
                        .invoke_async(&mut self.conn.clone())
                        .await
                        .map_err(err("delete_expired_states"))?;
                    total += existed;
                    if handled < CLEANUP_BATCH {
                        return Ok(total);
                    }
                }
            })
            .await
        })
    }
}

impl GrantStore for RedisStore {
    fn create_grant<'a>(&'a self, grant: &'a StoredGrant) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded_write("create_grant", async move {
                let created: i64 = SCRIPTS
                    .create_grant
                    .arg(&*self.prefix)
                    .arg(grant.id.as_str())
                    .arg(grant.did.as_str())
                    .arg(grant_fields(grant))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("create_grant"))?;
                if created == 1 {
                    Ok(())
                } else {
                    Err(StoreError::backend(
                        BACKEND,
                        "create_grant",
                        "a grant with this id exists",
                    ))
                }
            })
            .await
        })
    }

    fn load_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, Option<StoredGrant>> {
        StoreFuture::new(async move {
            self.bounded("load_grant", async move {
                let flat: Vec<Vec<u8>> = redis::cmd("HGETALL")
                    .arg(format!("{}og:{}", self.prefix, id.as_str()))
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(err("load_grant"))?;
                grant_from_fields(flat)
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
            self.bounded_write("update_grant", async move {
                let outcome: i64 = SCRIPTS
                    .update_grant
                    .arg(&*self.prefix)
                    .arg(grant.id.as_str())
                    .arg(expected_version.to_string())
                    .arg(grant.did.as_str())
                    .arg(grant_fields(grant))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("update_grant"))?;
                match outcome {
                    0 => Ok(Cas::Missing),
                    1 => Ok(Cas::Conflict),
                    _ => Ok(Cas::Updated),
                }
            })
            .await
        })
    }

    fn delete_grant<'a>(&'a self, id: &'a GrantId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            self.bounded_write("delete_grant", async move {
                let n: i64 = SCRIPTS
                    .delete_grant
                    .arg(&*self.prefix)
                    .arg(id.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("delete_grant"))?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredGrant>> {
        StoreFuture::new(async move {
            self.bounded("list_grants_by_did", async move {
                let recs: Vec<Vec<Vec<u8>>> = SCRIPTS
                    .list_grants
                    .arg(&*self.prefix)
                    .arg(did.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("list_grants_by_did"))?;
                let mut out = Vec::with_capacity(recs.len());
                for flat in recs {
                    out.extend(grant_from_fields(flat)?);
                }
                out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(out)
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
            let start: u64 = match cursor {
                None => 0,
                Some(c) => c.as_str().parse().map_err(|_| {
                    StoreError::backend(BACKEND, "list_grants", "not a Redis cursor")
                })?,
            };
            self.bounded("list_grants", async move {
                let mut conn = self.conn.clone();
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(start)
                    .arg("MATCH")
                    .arg(format!("{}og:*", glob_escape(&self.prefix)))
                    .arg("COUNT")
                    .arg(limit.clamp(1, 10_000))
                    .query_async(&mut conn)
                    .await
                    .map_err(err("list_grants"))?;
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGETALL").arg(k);
                }
                let recs: Vec<Vec<Vec<u8>>> = if keys.is_empty() {
                    Vec::new()
                } else {
                    pipe.query_async(&mut conn)
                        .await
                        .map_err(err("list_grants"))?
                };
                let mut grants = Vec::with_capacity(recs.len());
                for flat in recs {
                    grants.extend(grant_from_fields(flat)?);
                }
                Ok(GrantPage {
                    grants,
                    next: (next != 0).then(|| GrantCursor::new(next.to_string())),
                })
            })
            .await
        })
    }

    fn delete_grants_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded_write("delete_grants_by_did", async move {
                SCRIPTS
                    .delete_grants_by_did
                    .arg(&*self.prefix)
                    .arg(did.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("delete_grants_by_did"))
            })
            .await
        })
    }
}

/// Two reads: a session, then its grant (its id is inside the session's record).
impl crate::store::oauth::SessionGrantStore for RedisStore {}
