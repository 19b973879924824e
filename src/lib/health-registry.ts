/**
 * The node registry in Redis (docs/PROTOCOL.md, Redis keys): how a health document is written
 * and how a reader learns which documents changed, without reading every one.
 *
 * Next to the hash `{p}:health` (node id -> health JSON, the wire format of SPEC.md section 5)
 * the sorted set `{p}:health-versions` holds one version per node: member = node id, score = a
 * number that grows with every write of any node. A write sets the hash field, the TTL key, the
 * node set and the version in one script, so a reader that remembers the highest version it has
 * seen (its cursor) asks with one call for the documents written since: ZRANGEBYSCORE above the
 * cursor, then HMGET of just those fields. Several readers each keep their own cursor; the set
 * is never written by them.
 *
 * Versions are Redis's own clock in microseconds (TIME, so a Pi's clock plays no part), and
 * always above the highest version in the set: they only grow, even if Redis's clock steps
 * back, and a Redis that restarted empty or from an older snapshot gives versions above any
 * cursor taken before. Something that writes the hash without the script (an operator's HSET)
 * is caught by the reader's checks: the number of fields (HLEN) no longer matches, or the next
 * full read (`registry.ts`).
 */
import type { Redis, Result } from 'ioredis';
import type { Names } from './names.js';

/**
 * Write one node's health.
 * KEYS: 1 health hash, 2 the node's TTL key, 3 node set, 4 versions set
 * ARGV: 1 node id, 2 document (JSON), 3 TTL of the TTL key in ms ('' deletes the key instead)
 * Returns the document it replaced in the hash, or nil.
 */
const WRITE = `
-- Replicate the writes, not the script (it reads TIME); what Redis 7 always does.
redis.replicate_commands()
local previous = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[3] == '' then redis.call('DEL', KEYS[2]) else redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3]) end
redis.call('SADD', KEYS[3], ARGV[1])
local t = redis.call('TIME')
local v = tonumber(t[1]) * 1000000 + tonumber(t[2])
local top = redis.call('ZREVRANGE', KEYS[4], 0, 0, 'WITHSCORES')[2]
if top and tonumber(top) >= v then v = tonumber(top) + 1 end
redis.call('ZADD', KEYS[4], string.format('%.0f', v), ARGV[1])
return previous
`;

/**
 * The documents written since a version.
 * ARGV: 1 versions set, 2 health hash, 3 the reader's cursor (a version; '0' for none)
 * The keys travel as arguments: EVAL checks declared keys for reading and writing both, and
 * the gateway's user may only read them (each command the script runs is still checked).
 * Returns {highest version in the set ('0' when empty), HLEN of the hash, changed node ids,
 * their documents (nil where the field is gone)}.
 */
const SINCE = `
local top = redis.call('ZREVRANGE', ARGV[1], 0, 0, 'WITHSCORES')[2] or '0'
local ids = redis.call('ZRANGEBYSCORE', ARGV[1], '(' .. ARGV[3], '+inf')
local docs = {}
for i = 1, #ids, 500 do
  local part = redis.call('HMGET', ARGV[2], unpack(ids, i, math.min(i + 499, #ids)))
  for j = 1, #part do docs[i + j - 1] = part[j] end
end
return {top, redis.call('HLEN', ARGV[2]), ids, docs}
`;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    orionWriteHealth(hash: string, ttlKey: string, nodes: string, versions: string, nodeId: string, json: string, ttlMs: string): Result<string | null, Context>;
    orionHealthSince(versions: string, hash: string, cursor: string): Result<[string, number, string[], (string | null)[]], Context>;
  }
}

function define(redis: Redis): void {
  if (typeof (redis as Partial<Redis>).orionWriteHealth === 'function') return;
  redis.defineCommand('orionWriteHealth', { numberOfKeys: 4, lua: WRITE });
  redis.defineCommand('orionHealthSince', { numberOfKeys: 0, lua: SINCE });
}

/**
 * Publish a health document as given (JSON text, not checked here): the hash field, the TTL
 * key (`ttlMs` null deletes it: a node that is not alive), the node set and a new version, in
 * one script. Returns the document it replaced in the hash (JSON, or null).
 */
export async function publishHealth(redis: Redis, n: Names, nodeId: string, json: string, ttlMs: number | null): Promise<string | null> {
  define(redis);
  return redis.orionWriteHealth(n.health, n.healthKey(nodeId), n.nodes, n.healthVersions, nodeId, json, ttlMs === null ? '' : String(Math.max(1, Math.round(ttlMs))));
}

/** What changed in the registry since a cursor. */
export interface HealthChanges {
  /** The highest version in the set: the cursor for the next call. */
  cursor: string;
  /** How many fields the hash has (to notice writes that bypassed the versions). */
  fields: number;
  /** Node id -> its document now, or null when its field is gone. */
  changed: Map<string, string | null>;
}

/** The documents written since `cursor` ('0': every versioned one), in one script call. */
export async function healthSince(redis: Redis, n: Names, cursor: string): Promise<HealthChanges> {
  define(redis);
  const [top, fields, ids, docs] = await redis.orionHealthSince(n.healthVersions, n.health, cursor);
  const changed = new Map<string, string | null>();
  ids.forEach((id, i) => changed.set(id, docs[i] ?? null));
  return { cursor: top, fields: Number(fields), changed };
}

/** Every document and the cursor they are current to, read atomically (one MULTI). */
export async function healthAll(redis: Redis, n: Names): Promise<{ cursor: string; docs: Record<string, string> }> {
  const res = await redis.multi().zrevrange(n.healthVersions, 0, 0, 'WITHSCORES').hgetall(n.health).exec();
  const failed = res?.find(([err]) => err);
  if (!res || failed) throw failed?.[0] ?? new Error('registry read was discarded');
  const top = (res[0]![1] as string[])[1] ?? '0';
  return { cursor: top, docs: res[1]![1] as Record<string, string> };
}

/** Whether version `a` is below version `b` (both as Redis prints scores: whole numbers). */
export function versionBelow(a: string, b: string): boolean {
  return Number(a) < Number(b);
}
