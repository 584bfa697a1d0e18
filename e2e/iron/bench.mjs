// Unseals one seal in a loop with iron-webcrypto and @hapi/iron, and prints unseals per second.
//
//   node e2e/iron/bench.mjs <seal> [seconds per library, default 3]
//
// The password is the benchmark password (also in crates/atsession/benches/seal.rs). Output:
// one line per library, "<lib> <unseals per second>".

import Iron from "@hapi/iron";
import * as webcrypto from "iron-webcrypto";

const PW = "some_not_random_password_that_is_at_least_32_characters";
const sealed = (process.argv[2] ?? "").replace(/~2$/, "");
const seconds = Number(process.argv[3] ?? 3);
if (!sealed.startsWith("Fe26.2*")) {
  console.error("usage: node e2e/iron/bench.mjs <seal> [seconds]");
  process.exit(2);
}

async function measure(name, unseal) {
  await unseal(); // fail early if the seal does not open
  for (let i = 0; i < 200; i++) await unseal(); // warm up
  let n = 0;
  const start = process.hrtime.bigint();
  const budget = BigInt(Math.round(seconds * 1e9));
  let elapsed = 0n;
  while (elapsed < budget) {
    for (let i = 0; i < 100; i++) await unseal();
    n += 100;
    elapsed = process.hrtime.bigint() - start;
  }
  const perSec = n / (Number(elapsed) / 1e9);
  console.log(`${name} ${Math.round(perSec)}`);
}

await measure("iron-webcrypto", () => webcrypto.unseal(sealed, PW, webcrypto.defaults));
await measure("@hapi/iron", () => Iron.unseal(sealed, PW, Iron.defaults));
