// The verdict on a node's heartbeat entry (src/cluster/protocol.ts heartbeatVerdict): lost from the entry's own
// timestamp and revision, never from a clock skew alone. Pure: the entries are built here, the clocks passed in.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { encodeJson, heartbeatVerdict, type Sighting } from "../../src/cluster/protocol.js";

const BUCKET_TTL = 3000;

function entry(revision: number, ageMs: number, record: Record<string, unknown> = { heartbeatMs: 500, ttlMs: 3000 }): { revision: number; created: Date; value: Uint8Array } {
  return { revision, created: new Date(Date.now() - ageMs), value: encodeJson(record) };
}

describe("heartbeatVerdict", () => {
  test("a fresh entry is alive; the next look is due when it would pass the TTL", () => {
    const v = heartbeatVerdict(entry(7, 400), BUCKET_TTL, undefined, 1000);
    assert.equal(v.lost, false);
    assert.equal(v.ttlMs, 3000);
    assert.ok(v.nextMs > 2500 && v.nextMs <= 2602, `next look in ${v.nextMs} ms`);
    assert.deepEqual(v.sighting, { revision: 7, since: 1000 });
  });

  test("older than the TTL and the same revision for min(2 heartbeats, TTL/2): lost", () => {
    const first = heartbeatVerdict(entry(7, 3200), BUCKET_TTL, undefined, 1000);
    assert.equal(first.lost, false, "first sight of this revision: not yet (a clock skew could explain its age)");
    assert.ok(first.nextMs >= 1000 && first.nextMs <= 1001, `confirmed 2 heartbeats later: ${first.nextMs}`);
    const early = heartbeatVerdict(entry(7, 3900), BUCKET_TTL, first.sighting, 1999);
    assert.equal(early.lost, false);
    const later = heartbeatVerdict(entry(7, 4200), BUCKET_TTL, first.sighting, 2000);
    assert.equal(later.lost, true);
  });

  test("a live node seen through a clock far ahead (every entry looks 10 s old) is never lost: its revision moves", () => {
    let seen: Sighting | undefined;
    for (let i = 0; i < 20; i++) {
      const v = heartbeatVerdict(entry(100 + i, 10_000 + 100), BUCKET_TTL, seen, 1000 + i * 500);
      assert.equal(v.lost, false, `look ${i}`);
      seen = v.sighting;
    }
  });

  test("the node's own TTL when shorter than the bucket's; the bucket's when the record says more or nothing", () => {
    const short = heartbeatVerdict(entry(1, 700, { heartbeatMs: 150, ttlMs: 600 }), BUCKET_TTL, { revision: 1, since: 0 }, 300);
    assert.equal(short.ttlMs, 600);
    assert.equal(short.lost, true, "600 ms TTL, 700 ms old, unchanged for 300 ms = min(2 × 150, 300)");
    const long = heartbeatVerdict(entry(1, 3500, { heartbeatMs: 500, ttlMs: 60_000 }), BUCKET_TTL, { revision: 1, since: 0 }, 5000);
    assert.equal(long.ttlMs, BUCKET_TTL);
    assert.equal(long.lost, true);
    const bare = heartbeatVerdict({ revision: 1, created: new Date(Date.now() - 3500), value: new TextEncoder().encode("not json") }, BUCKET_TTL, { revision: 1, since: 0 }, 1499);
    assert.equal(bare.ttlMs, BUCKET_TTL);
    assert.equal(bare.lost, false, "without a record: confirmed after TTL/2");
    assert.equal(heartbeatVerdict({ revision: 1, created: new Date(Date.now() - 3500), value: new TextEncoder().encode("x") }, BUCKET_TTL, { revision: 1, since: 0 }, 1500).lost, true);
  });
});
