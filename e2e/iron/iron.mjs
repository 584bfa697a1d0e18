// Seals and unseals with the Node Iron libraries, for the Rust compatibility tests.
//
//   node e2e/iron/iron.mjs < jobs.json > results.json
//
// stdin: a JSON array of jobs; stdout: a JSON array of results, one per job, in order:
// {"ok": true, ...} or {"ok": false, "error": "<message>"}.
//
// Jobs ("lib" is one of hapi, webcrypto, session8, session9):
//   {"op": "seal",   "lib", "password", "data", "ttl_ms"?, "now_offset_ms"?}  -> {"sealed"}
//   {"op": "unseal", "lib", "password", "sealed", "now_offset_ms"?}           -> {"data"}
//   {"op": "cookie_write", "lib": "session8"|"session9", "password", "data",
//    "cookie_name"?, "ttl_s"?, "chunk"?, "cookie"?}                           -> {"set_cookie": [..]}
//   {"op": "cookie_read",  "lib": "session8"|"session9", "password", "cookie",
//    "cookie_name"?, "ttl_s"?}                                                -> {"data"}
//
// "password" is what the library takes: a string, {"id", "secret"} (seal with hapi/webcrypto),
// or a map {id: secret}. For hapi and webcrypto "ttl_ms" is Iron's ttl in milliseconds and
// "now_offset_ms" its localtimeOffsetMsec. For iron-session, "ttl_ms" is rounded to seconds
// (its unit) and unsealData answers {} for a refused seal, as the library does.

import Iron from "@hapi/iron";
import * as webcrypto from "iron-webcrypto";
import * as session8 from "iron-session";
import * as session9 from "iron-session-9";

const sessions = { session8, session9 };

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function ironLib(lib) {
  if (lib === "hapi") return { seal: Iron.seal, unseal: Iron.unseal, defaults: Iron.defaults };
  if (lib === "webcrypto") return webcrypto;
  throw new Error(`unknown lib ${lib}`);
}

function fakeReqRes(cookie) {
  const req = { headers: cookie ? { cookie } : {} };
  const set = [];
  const res = {
    headersSent: false,
    getHeader: (name) => (name.toLowerCase() === "set-cookie" ? [...set] : undefined),
    setHeader: (name, value) => {
      if (name.toLowerCase() === "set-cookie") {
        set.length = 0;
        set.push(...(Array.isArray(value) ? value : [value]));
      }
    },
  };
  return { req, res, set };
}

function sessionOptions(job) {
  const options = {
    cookieName: job.cookie_name ?? "sid",
    password: job.password,
  };
  if (job.ttl_s !== undefined) options.ttl = job.ttl_s;
  if (job.chunk) options.chunk = true;
  return options;
}

async function run(job) {
  const { op, lib } = job;
  if (op === "seal" || op === "unseal") {
    if (lib === "session8" || lib === "session9") {
      const s = sessions[lib];
      const ttl = job.ttl_ms === undefined ? undefined : Math.round(job.ttl_ms / 1000);
      if (op === "seal") {
        return { sealed: await s.sealData(job.data, { password: job.password, ...(ttl === undefined ? {} : { ttl }) }) };
      }
      return { data: await s.unsealData(job.sealed, { password: job.password }) };
    }
    const iron = ironLib(lib);
    const options = { ...iron.defaults, localtimeOffsetMsec: job.now_offset_ms ?? 0 };
    if (op === "seal") {
      return { sealed: await iron.seal(job.data, job.password, { ...options, ttl: job.ttl_ms ?? 0 }) };
    }
    return { data: await iron.unseal(job.sealed, job.password, options) };
  }
  if (op === "cookie_write" || op === "cookie_read") {
    const s = sessions[lib];
    if (!s) throw new Error(`unknown lib ${lib}`);
    const { req, res, set } = fakeReqRes(job.cookie);
    const session = await s.getIronSession(req, res, sessionOptions(job));
    if (op === "cookie_read") return { data: { ...session } };
    for (const key of Object.keys(session)) delete session[key];
    Object.assign(session, job.data);
    await session.save();
    return { set_cookie: set };
  }
  throw new Error(`unknown op ${op}`);
}

const jobs = JSON.parse(await readStdin());
const results = [];
for (const job of jobs) {
  try {
    results.push({ ok: true, ...(await run(job)) });
  } catch (err) {
    results.push({ ok: false, error: String(err?.message ?? err) });
  }
}
process.stdout.write(JSON.stringify(results) + "\n");
