//! App sessions in Redis: the Lua scripts and the record's hash layout.
//!
//! Hash fields of `{prefix}s:{id}`: `id`, `th` (token hash, hex), `ah` (access-token hash,
//! hex, absent when none), `ax` (access expiry), `did`, `h` (handle), `data` (JSON), `g`
//! (grant id, absent when none), `c`, `ls`, `ie`, `ae` (created, last seen, idle and absolute
//! expiry), `v` (version). Times are Unix milliseconds in decimal.
//!
//! Every script takes the key prefix as `ARGV[1]` and builds key names from it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use redis::Script;
use time::OffsetDateTime;

use super::{BACKEND, RedisStore, err};
use crate::app::{SessionId, StoredSession};
use crate::clock::{from_millis, to_millis};
use crate::secret::TokenHash;
use crate::store::oauth::GrantId;
use crate::store::{Cas, SessionStore, StoreError, StoreFuture};
use crate::syntax::{Did, Handle};

/// Expired members handled per cleanup script run.
const CLEANUP_BATCH: usize = 1000;

/// How long past its expiry Redis keeps the record of a session that belongs to an OAuth
/// grant: long enough for the web layer's cleanup (`AtprotoAuth::delete_expired`) to find
/// it with [`SessionStore::expired_with_grants`] and sign the grant out before the record
/// goes. The session cannot be used meanwhile: its token index entries expire at its expiry,
/// and the record is refused as expired. Run the cleanup more often than this.
pub const GRANT_SESSION_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Writes the record (fields from `ARGV[first]` on) and its index entries, all expiring at
/// `at` (the record of a session with a grant [`GRANT_SESSION_GRACE`] later). Shared by
/// create and update. The grace is spliced in as milliseconds.
const WRITE_FN: &str = r"
local function write(p, id, th, ah, did, at, first)
  local sk = p .. 's:' .. id
  redis.call('HSET', sk, unpack(ARGV, first))
  local keep = tonumber(at)
  if redis.call('HEXISTS', sk, 'g') == 1 then keep = keep + GRACE_MS end
  redis.call('PEXPIREAT', sk, keep)
  redis.call('SET', p .. 't:' .. th, id, 'PXAT', at)
  if ah ~= '' then redis.call('SET', p .. 'a:' .. ah, id, 'PXAT', at) end
  local dk = p .. 'd:' .. did
  redis.call('SADD', dk, id)
  local cur = redis.call('PEXPIRETIME', dk)
  if cur == -1 or cur < tonumber(at) then redis.call('PEXPIREAT', dk, at) end
  redis.call('ZADD', p .. 'x', at, id .. did)
end
";

/// ARGV: prefix, id, th, ah or '', did, at, field/value pairs. Returns 1, or 0 on a duplicate.
const CREATE: &str = r"
local p, id, th, ah, did, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
if redis.call('EXISTS', p .. 's:' .. id, p .. 't:' .. th) > 0 then return 0 end
if ah ~= '' and redis.call('EXISTS', p .. 'a:' .. ah) > 0 then return 0 end
write(p, id, th, ah, did, at, 7)
return 1
";

/// ARGV: prefix, id, expected version, th, ah or '', did, at, field/value pairs.
/// Returns 0 missing, 1 conflict, 2 updated, 3 a token hash belongs to another session.
const UPDATE: &str = r"
local p, id, expected, th, ah, did, at = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local sk = p .. 's:' .. id
local old = redis.call('HMGET', sk, 'v', 'th', 'ah', 'did')
if not old[1] then return 0 end
if old[1] ~= expected then return 1 end
if old[2] ~= th then
  local other = redis.call('GET', p .. 't:' .. th)
  if other and other ~= id then return 3 end
end
if ah ~= '' and old[3] ~= ah then
  local other = redis.call('GET', p .. 'a:' .. ah)
  if other and other ~= id then return 3 end
end
redis.call('DEL', sk, p .. 't:' .. old[2])
if old[3] then redis.call('DEL', p .. 'a:' .. old[3]) end
if old[4] ~= did then redis.call('SREM', p .. 'd:' .. old[4], id) end
redis.call('ZREM', p .. 'x', id .. old[4])
write(p, id, th, ah, did, at, 8)
return 2
";

/// Deletes the session `id` (known to exist or not) and its entries; `did` is the DID set it
/// sits in. Returns 1 if the session key existed.
const DROP_FN: &str = r"
local function drop(p, id, did)
  local sk = p .. 's:' .. id
  local old = redis.call('HMGET', sk, 'th', 'ah')
  redis.call('SREM', p .. 'd:' .. did, id)
  redis.call('ZREM', p .. 'x', id .. did)
  if not old[1] then return 0 end
  redis.call('DEL', sk, p .. 't:' .. old[1])
  if old[2] then redis.call('DEL', p .. 'a:' .. old[2]) end
  return 1
end
";

/// ARGV: prefix, id. Returns 1 if it existed.
const DELETE: &str = r"
local p, id = ARGV[1], ARGV[2]
local did = redis.call('HGET', p .. 's:' .. id, 'did')
if not did then return 0 end
return drop(p, id, did)
";

/// ARGV: prefix, did. Deletes every session of the account; returns how many existed.
const DELETE_BY_DID: &str = r"
local p, did = ARGV[1], ARGV[2]
local dk = p .. 'd:' .. did
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', dk)) do
  n = n + drop(p, id, did)
end
redis.call('DEL', dk)
return n
";

/// ARGV: prefix, now, batch. Returns {members handled, sessions that still existed}.
const DELETE_EXPIRED: &str = r"
local p, now, batch = ARGV[1], ARGV[2], ARGV[3]
local members = redis.call('ZRANGEBYSCORE', p .. 'x', '-inf', now, 'LIMIT', 0, batch)
local n = 0
for _, m in ipairs(members) do
  n = n + drop(p, string.sub(m, 1, 22), string.sub(m, 23))
end
return {#members, n}
";

/// ARGV: prefix, now, limit. Returns id, grant id, id, grant id, … of up to `limit` expired
/// sessions that have a grant, reading the expiry index a page at a time.
const EXPIRED_WITH_GRANTS: &str = r"
local p, now, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out, offset, found = {}, 0, 0
while found < limit do
  local members = redis.call('ZRANGEBYSCORE', p .. 'x', '-inf', now, 'LIMIT', offset, 500)
  for _, m in ipairs(members) do
    local id = string.sub(m, 1, 22)
    local g = redis.call('HGET', p .. 's:' .. id, 'g')
    if g and found < limit then
      out[#out + 1] = id
      out[#out + 1] = g
      found = found + 1
    end
  end
  if #members < 500 then break end
  offset = offset + 500
end
return out
";

/// ARGV: prefix, index ('t:' or 'a:'), hash hex. Returns the record's fields, or {}.
const LOAD_VIA: &str = r"
local p = ARGV[1]
local id = redis.call('GET', p .. ARGV[2] .. ARGV[3])
if not id then return {} end
return redis.call('HGETALL', p .. 's:' .. id)
";

/// ARGV: prefix, did. Returns the records' fields, one array each; prunes ids whose session
/// key Redis has expired.
const LIST: &str = r"
local p, did = ARGV[1], ARGV[2]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'd:' .. did)) do
  local rec = redis.call('HGETALL', p .. 's:' .. id)
  if #rec > 0 then
    out[#out + 1] = rec
  else
    redis.call('SREM', p .. 'd:' .. did, id)
    redis.call('ZREM', p .. 'x', id .. did)
  end
end
return out
";

/// ARGV: prefix, did. [`LIST`] without the pruning: reads only.
const LIST_ONLY: &str = r"
local p, did = ARGV[1], ARGV[2]
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', p .. 'd:' .. did)) do
  local rec = redis.call('HGETALL', p .. 's:' .. id)
  if #rec > 0 then out[#out + 1] = rec end
end
return out
";

struct Scripts {
    create: Script,
    update: Script,
    delete: Script,
    delete_by_did: Script,
    delete_expired: Script,
    expired_with_grants: Script,
    load_via: Script,
    list: Script,
    list_only: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    create: Script::new(&format!("{}{CREATE}", write_fn())),
    update: Script::new(&format!("{}{UPDATE}", write_fn())),
    delete: Script::new(&format!("{DROP_FN}{DELETE}")),
    delete_by_did: Script::new(&format!("{DROP_FN}{DELETE_BY_DID}")),
    delete_expired: Script::new(&format!("{DROP_FN}{DELETE_EXPIRED}")),
    expired_with_grants: Script::new(EXPIRED_WITH_GRANTS),
    load_via: Script::new(LOAD_VIA),
    list: Script::new(LIST),
    list_only: Script::new(LIST_ONLY),
});

/// [`WRITE_FN`] with the grace filled in.
fn write_fn() -> String {
    WRITE_FN.replace("GRACE_MS", &GRANT_SESSION_GRACE.as_millis().to_string())
}

fn corrupt(detail: &'static str) -> StoreError {
    StoreError::corrupt(BACKEND, detail)
}

fn duplicate() -> StoreError {
    StoreError::backend(
        BACKEND,
        "create",
        "a session with this id or token hash already exists",
    )
}

/// The script arguments shared by create and update: th, ah, did, at, then the fields.
fn record_args(s: &StoredSession) -> Vec<String> {
    let th = s.token_hash.to_hex();
    let ah = s.access_token_hash.map(|h| h.to_hex());
    let at = to_millis(s.expires_at()).to_string();
    let mut args = vec![
        th.clone(),
        ah.clone().unwrap_or_default(),
        s.did.as_str().to_owned(),
        at,
    ];
    let mut field = |k: &str, v: String| {
        args.push(k.to_owned());
        args.push(v);
    };
    field("id", s.id.as_str().to_owned());
    field("th", th);
    if let (Some(ah), Some(ax)) = (ah, s.access_expires_at) {
        field("ah", ah);
        field("ax", to_millis(ax).to_string());
    }
    field("did", s.did.as_str().to_owned());
    field("h", s.handle.as_str().to_owned());
    field("data", s.data.to_string());
    if let Some(g) = &s.grant_id {
        field("g", g.as_str().to_owned());
    }
    field("c", to_millis(s.created_at).to_string());
    field("ls", to_millis(s.last_seen_at).to_string());
    field("ie", to_millis(s.idle_expires_at).to_string());
    field("ae", to_millis(s.absolute_expires_at).to_string());
    field("v", s.version.to_string());
    args
}

fn parse_hash(hex: &str, detail: &'static str) -> Result<TokenHash, StoreError> {
    if hex.len() != 64 {
        return Err(corrupt(detail));
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| corrupt(detail))?;
    }
    Ok(TokenHash::from_bytes(out))
}

/// Rebuilds a record from `HGETALL`'s flat field/value list; `None` for an empty list.
fn from_fields(flat: Vec<String>) -> Result<Option<StoredSession>, StoreError> {
    if flat.is_empty() {
        return Ok(None);
    }
    if !flat.len().is_multiple_of(2) {
        return Err(corrupt("odd field list"));
    }
    let mut f: HashMap<String, String> = HashMap::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        f.insert(k, v);
    }
    let text = |k: &str| f.get(k).ok_or_else(|| corrupt("a field is missing"));
    let millis = |k: &str| -> Result<OffsetDateTime, StoreError> {
        let v = text(k)?
            .parse::<i64>()
            .map_err(|_| corrupt("a time is not a number"))?;
        Ok(from_millis(v))
    };
    let access_token_hash = f
        .get("ah")
        .map(|h| parse_hash(h, "malformed access token hash"))
        .transpose()?;
    let access_expires_at = f.contains_key("ax").then(|| millis("ax")).transpose()?;
    if access_token_hash.is_some() != access_expires_at.is_some() {
        return Err(corrupt("access token hash without expiry, or the reverse"));
    }
    Ok(Some(StoredSession {
        id: SessionId::parse(text("id")?).ok_or_else(|| corrupt("malformed session id"))?,
        token_hash: parse_hash(text("th")?, "malformed token hash")?,
        access_token_hash,
        access_expires_at,
        did: Did::new(text("did")?.as_str()).map_err(|_| corrupt("malformed DID"))?,
        handle: Handle::new(text("h")?.as_str()).map_err(|_| corrupt("malformed handle"))?,
        data: serde_json::from_str(text("data")?).map_err(|e| StoreError::Corrupt {
            backend: BACKEND,
            detail: "session data is not JSON",
            source: Some(Box::new(e)),
        })?,
        grant_id: f
            .get("g")
            .map(|g| GrantId::parse(g).ok_or_else(|| corrupt("malformed grant id")))
            .transpose()?,
        created_at: millis("c")?,
        last_seen_at: millis("ls")?,
        idle_expires_at: millis("ie")?,
        absolute_expires_at: millis("ae")?,
        version: text("v")?
            .parse()
            .map_err(|_| corrupt("malformed version"))?,
    }))
}

impl RedisStore {
    async fn load_via(
        &self,
        index: &str,
        hash: &TokenHash,
    ) -> Result<Option<StoredSession>, StoreError> {
        let flat: Vec<String> = SCRIPTS
            .load_via
            .arg(&*self.prefix)
            .arg(index)
            .arg(hash.to_hex())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(err("load"))?;
        let found = from_fields(flat)?;
        // The index and the record change together, so this holds; checked all the same.
        Ok(found.filter(|s| match index {
            "t:" => s.token_hash == *hash,
            _ => s.access_token_hash.as_ref() == Some(hash),
        }))
    }
}

impl SessionStore for RedisStore {
    fn create<'a>(&'a self, session: &'a StoredSession) -> StoreFuture<'a, ()> {
        StoreFuture::new(async move {
            self.bounded_write("create", async move {
                let created: i64 = SCRIPTS
                    .create
                    .arg(&*self.prefix)
                    .arg(session.id.as_str())
                    .arg(record_args(session))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("create"))?;
                if created == 1 {
                    Ok(())
                } else {
                    Err(duplicate())
                }
            })
            .await
        })
    }

    fn load<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded("load", async move {
                let flat: Vec<String> = redis::cmd("HGETALL")
                    .arg(format!("{}s:{}", self.prefix, id.as_str()))
                    .query_async(&mut self.conn.clone())
                    .await
                    .map_err(err("load"))?;
                from_fields(flat)
            });
            Ok(found.await?.map(Arc::new))
        })
    }

    fn load_by_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded(
                "load_by_token",
                async move { self.load_via("t:", hash).await },
            );
            Ok(found.await?.map(Arc::new))
        })
    }

    fn load_by_access_token<'a>(
        &'a self,
        hash: &'a TokenHash,
    ) -> StoreFuture<'a, Option<Arc<StoredSession>>> {
        StoreFuture::new(async move {
            let found = self.bounded("load_by_access_token", async move {
                self.load_via("a:", hash).await
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
            self.bounded_write("update", async move {
                let outcome: i64 = SCRIPTS
                    .update
                    .arg(&*self.prefix)
                    .arg(session.id.as_str())
                    .arg(expected_version.to_string())
                    .arg(record_args(session))
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("update"))?;
                match outcome {
                    0 => Ok(Cas::Missing),
                    1 => Ok(Cas::Conflict),
                    2 => Ok(Cas::Updated),
                    _ => Err(StoreError::backend(
                        BACKEND,
                        "update",
                        "the new token hash belongs to another session",
                    )),
                }
            })
            .await
        })
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> StoreFuture<'a, bool> {
        StoreFuture::new(async move {
            self.bounded_write("delete", async move {
                let n: i64 = SCRIPTS
                    .delete
                    .arg(&*self.prefix)
                    .arg(id.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("delete"))?;
                Ok(n > 0)
            })
            .await
        })
    }

    fn list_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, Vec<StoredSession>> {
        StoreFuture::new(async move {
            self.bounded("list_by_did", async move {
                // A read-only store lists without pruning what Redis has expired.
                let script = if self.read_only {
                    &SCRIPTS.list_only
                } else {
                    &SCRIPTS.list
                };
                let recs: Vec<Vec<String>> = script
                    .arg(&*self.prefix)
                    .arg(did.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("list"))?;
                let mut out = Vec::with_capacity(recs.len());
                for flat in recs {
                    out.extend(from_fields(flat)?);
                }
                out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
                Ok(out)
            })
            .await
        })
    }

    fn delete_by_did<'a>(&'a self, did: &'a Did) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded_write("delete_by_did", async move {
                let n: u64 = SCRIPTS
                    .delete_by_did
                    .arg(&*self.prefix)
                    .arg(did.as_str())
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("delete by DID"))?;
                Ok(n)
            })
            .await
        })
    }

    fn delete_expired<'a>(&'a self, now: OffsetDateTime) -> StoreFuture<'a, u64> {
        StoreFuture::new(async move {
            self.bounded_write("delete_expired", async move {
                let now = to_millis(now);
                let mut total = 0;
                loop {
                    let (handled, existed): (usize, u64) = SCRIPTS
                        .delete_expired
                        .arg(&*self.prefix)
                        .arg(now)
                        .arg(CLEANUP_BATCH)
                        .invoke_async(&mut self.conn.clone())
                        .await
                        .map_err(err("cleanup"))?;
                    total += existed;
                    if handled < CLEANUP_BATCH {
                        return Ok(total);
                    }
                }
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
            self.bounded("expired_with_grants", async move {
                let flat: Vec<String> = SCRIPTS
                    .expired_with_grants
                    .arg(&*self.prefix)
                    .arg(to_millis(now))
                    .arg(limit)
                    .invoke_async(&mut self.conn.clone())
                    .await
                    .map_err(err("expired_with_grants"))?;
                flat.chunks_exact(2)
                    .map(|pair| {
                        Ok((
                            SessionId::parse(&pair[0])
                                .ok_or_else(|| corrupt("malformed session id"))?,
                            GrantId::parse(&pair[1])
                                .ok_or_else(|| corrupt("malformed grant id"))?,
                        ))
                    })
                    .collect()
            })
            .await
        })
    }
}
