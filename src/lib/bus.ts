/**
 * The bus operations that the bridge and the workers share: the job a request becomes, the
 * request record that makes delivery exactly-once-visible, reply and dead-letter publishing.
 *
 * Per request id, a hash `{p}:request:{id}` (kept 24 h) holds:
 *   entry     stream entry id that created it (a re-read of the same entry is not a duplicate)
 *   reply_to  where the answer goes
 *   node      the node that owns the job now (set before every add or move)
 *   final     the final answer, once there is one (a duplicate request gets it at once)
 *   waiting   '1' once a bridge held the request for lack of an eligible node (if it is never
 *             placed, its deadline answer is `no_healthy_node` rather than `timeout`)
 *   timeout_ms the request's own timeout (quoted by deadline answers that cannot see the job)
 * and `{p}:deadlines` (sorted set, score = deadline ms) lists requests still unanswered, so a
 * bridge can answer `timeout` within a second wherever a request waits.
 */
import type { Redis, ChainableCommander, Result } from 'ioredis';
import type { DeadLetter, InferenceRequest, InferenceResponse, Routing } from '../contracts/types.js';
import type { ErrorCode } from './errors.js';
import { isValidNodeId, type Names } from './names.js';
import { rfc3339 } from './time.js';

/** What the bridge puts in a node queue; the job id is `jobIdFor(request.request_id)`. */
export interface InferenceJobData {
  request: InferenceRequest;
  /** Entry id on `{p}:requests`; its time is when the request was sent. */
  entry_id: string;
  /** When the bridge first saw the request (ms since epoch), for `queue_ms`. */
  seen_at: number;
  /** When the request must be answered by (ms since epoch). */
  deadline: number;
  /** Times the request was started on a node so far (a worker adds one when it starts). */
  attempt: number;
  max_attempts: number;
  routing: Routing;
  /** Nodes where it failed, avoided when it is placed again. */
  tried: string[];
  /** The request's size as the bridge measured it: the UTF-8 bytes of its `data` text. */
  request_bytes?: number;
}

/** What a worker posts on `{p}:reroute` when a job should run elsewhere. */
export interface RerouteNotice {
  request_id: string;
  node_id: string;
  /** Why it left the node. */
  code: ErrorCode;
  message: string;
  /** False when the failure was the node's, not the request's (Ollama down): the attempt is given back. */
  counts: boolean;
}

/** How long a request id is remembered after its answer (and at least after its arrival). */
const REQUEST_RECORD_TTL_S = 24 * 3600;

/**
 * The TTL of a request record from the request's arrival: 24 h after its deadline, so a record
 * always outlives the request it tracks (a timeout_ms may be as long as 24 h itself).
 */
export function recordTtlSeconds(timeoutMs: number | undefined): number {
  return REQUEST_RECORD_TTL_S + Math.ceil((timeoutMs ?? DEFAULT_TIMEOUT_MS) / 1000);
}
/** Reply and dead-letter streams are trimmed to about this many entries. */
export const DEFAULT_STREAM_MAXLEN = 100_000;
export const DEFAULT_TIMEOUT_MS = 600_000;

export function deadlinesKey(n: Names): string {
  return n.deadlines;
}

/**
 * claim(request hash, waiters set, deadlines zset, entry id, reply_to, ttl seconds, deadline ms,
 * timeout ms): register a request id, or find it already known.
 * Returns {'new'} | {'same'} (re-read of the same entry) | {'done', final} | {'waiting'}
 */
const CLAIM_FN = `
local function claim(rk, wk, dk, entry_id, reply_to, ttl, deadline, timeout)
  local entry = redis.call('HGET', rk, 'entry')
  if not entry then
    redis.call('HSET', rk, 'entry', entry_id, 'reply_to', reply_to, 'timeout_ms', timeout)
    redis.call('EXPIRE', rk, ttl)
    redis.call('ZADD', dk, deadline, rk)
    return {'new'}
  end
  if entry == entry_id then return {'same'} end
  local final = redis.call('HGET', rk, 'final')
  if final then return {'done', final} end
  if reply_to ~= redis.call('HGET', rk, 'reply_to') then
    redis.call('SADD', wk, reply_to)
    redis.call('EXPIRE', wk, ttl)
  end
  return {'waiting'}
end
`;

/**
 * claim many: the request ids of a batch in one call, in order (a later duplicate of an id in
 * the same batch sees the earlier one, as with separate calls). Packed, because a client pays
 * for every argument: one line per request, and each distinct reply stream once.
 * KEYS: 1 deadlines zset, then one request hash per request
 * ARGV: 1 ttl seconds, 2 waiters key suffix (waiters set = request hash .. suffix),
 *       3 lines 'entry id,reply stream number,deadline ms,timeout ms' each ending in a newline,
 *       4.. the reply streams, numbered from 1
 * Returns {kinds, final...}: kinds has a letter per request, n(ew), s(ame), w(aiting) or
 * d(one), and each d has its final answer after kinds, in order.
 */
const CLAIM_MANY = `${CLAIM_FN}
local kinds, out, i = {}, {''}, 0
for entry_id, r, deadline, timeout in string.gmatch(ARGV[3], '([^,]+),(%d+),([^,]+),([^\\n]+)\\n') do
  i = i + 1
  local c = claim(KEYS[i + 1], KEYS[i + 1] .. ARGV[2], KEYS[1], entry_id, ARGV[3 + tonumber(r)], ARGV[1], deadline, timeout)
  kinds[i] = string.sub(c[1], 1, 1)
  if c[2] then out[#out + 1] = c[2] end
end
out[1] = table.concat(kinds)
return out
`;

/**
 * owners: record which node owns each request's job (before the jobs are added there).
 * KEYS: request hashes, grouped by node; ARGV: 1 a line per node, 'node id,number of its keys'
 * (one argument, not two a node: with a thousand nodes in a batch, arguments are what costs).
 */
const OWNERS = `
local k = 1
for node, count in string.gmatch(ARGV[1], '([^,]+),(%d+)\\n') do
  for _ = 1, tonumber(count) do
    redis.call('HSET', KEYS[k], 'node', node)
    k = k + 1
  end
end
return k - 1
`;

/**
 * target(reply stream, default stream): where a document for `reply stream` can go. A key of
 * another type under that name (someone's hash, list, ...) would make XADD fail with WRONGTYPE
 * half-way through a script (scripts do not roll back), so it is looked at first:
 * 1 = the reply stream, 2 = the default stream instead, 3 = neither is a stream (nowhere).
 */
const TARGET_FN = `
local function is_stream(key)
  local t = redis.call('TYPE', key)['ok']
  return t == 'none' or t == 'stream'
end
local function target(stream, fallback)
  if is_stream(stream) then return 1, stream end
  if is_stream(fallback) then return 2, fallback end
  return 3, nil
end
`;

/**
 * final: publish the one final answer of a request.
 * KEYS: 1 request hash, 2 waiters set, 3 deadlines zset, 4 reply stream, 5 default reply stream,
 *       6 observations stream
 * ARGV: 1 node id ('' = any owner), 2 final JSON, 3 maxlen, 4 ttl seconds, 5 observation JSON
 *       ('' = none: see observationOf), 6 observations maxlen
 * Returns 0 when suppressed (already answered, or the job moved to another node: a late
 * "zombie" worker must not answer twice), else where it went (see target): 1 the reply
 * stream, 2 the default stream (the reply stream's name holds another type of key), 3 stored
 * in the record only. Waiter streams that are not streams are skipped (their copy goes to the
 * default stream once).
 * The waiter streams are read from the set, not declared: ORION runs on one Redis, not a cluster.
 */
const FINAL = `${TARGET_FN}
if ARGV[1] ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'node')
  if owner and owner ~= ARGV[1] then return 0 end
end
local where, stream = target(KEYS[4], KEYS[5])
if redis.call('HSETNX', KEYS[1], 'final', ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[3], KEYS[1])
local sent = {}
if stream then
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
  sent[stream] = true
end
for _, w in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local _, ws = target(w, KEYS[5])
  if ws and not sent[ws] then
    redis.call('XADD', ws, 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
    sent[ws] = true
  end
end
redis.call('DEL', KEYS[2])
if ARGV[5] ~= '' then redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[6], '*', 'data', ARGV[5]) end
return where
`;

/**
 * partial: publish a partial answer unless the job has moved or the request is answered.
 * KEYS: 1 request hash, 2 reply stream, 3 default reply stream
 * ARGV: 1 node id, 2 partial JSON, 3 maxlen
 * Returns 0 when suppressed, else where it went (see target; 3 = nowhere).
 */
const PARTIAL = `${TARGET_FN}
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 0 end
local where, stream = target(KEYS[2], KEYS[3])
if stream then redis.call('XADD', stream, 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2]) end
return where
`;

/**
 * deliver: add a document to a reply stream, or to the default stream when the reply stream's
 * name holds another type of key. For answers written outside the final script (refusals of
 * invalid requests, stored answers sent to a duplicate's reply stream).
 * KEYS: 1 reply stream, 2 default reply stream; ARGV: 1 JSON, 2 maxlen
 * Returns where it went (see target).
 */
const DELIVER = `${TARGET_FN}
local where, stream = target(KEYS[1], KEYS[2])
if stream then redis.call('XADD', stream, 'MAXLEN', '~', ARGV[2], '*', 'data', ARGV[1]) end
return where
`;

/**
 * start: admit a job copy and record its attempt, in one step (one round trip where a check
 * and BullMQ's `Job.updateData` took two).
 * KEYS: 1 request hash, 2 the job's hash in its BullMQ queue, 3 the request's cancel key
 * ARGV: 1 node id, 2 the job's data with this attempt counted (JSON)
 * Returns {'run'} (the data written, as `Job.updateData` writes it) | {'done', final} (answered
 * already) | {'moved', owner} (another node owns the job now) | {'gone'} (the job hash is
 * missing) | {'cancelled'} (its sender cancelled it: not started, no attempt used).
 */
const START = `
local final = redis.call('HGET', KEYS[1], 'final')
if final then return {'done', final} end
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then return {'moved', owner} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone'} end
if redis.call('EXISTS', KEYS[3]) == 1 then return {'cancelled'} end
redis.call('HSET', KEYS[2], 'data', ARGV[2])
return {'run'}
`;

type Reply = [string] | [string, string];

declare module 'ioredis' {
  interface RedisCommander<Context> {
    /** numkeys, then the keys, then the arguments (see CLAIM_MANY). */
    orionClaimMany(...args: (string | number)[]): Result<string[], Context>;
    /** numkeys, then the request hashes, then the nodes and their counts (see OWNERS). */
    orionOwners(...args: (string | number)[]): Result<number, Context>;
    orionFinal(k1: string, k2: string, k3: string, k4: string, k5: string, k6: string, node: string, doc: string, maxlen: number, ttl: number, obs: string, obsMaxlen: number): Result<number, Context>;
    orionPartial(k1: string, k2: string, k3: string, node: string, doc: string, maxlen: number): Result<number, Context>;
    orionDeliver(stream: string, fallback: string, doc: string, maxlen: number): Result<number, Context>;
    orionStart(k1: string, k2: string, k3: string, node: string, data: string): Result<Reply, Context>;
  }
}

/** Register the scripts on a connection (idempotent). */
export function defineBusCommands(redis: Redis): void {
  if (typeof (redis as Partial<Redis>).orionClaimMany === 'function') return;
  redis.defineCommand('orionClaimMany', { lua: CLAIM_MANY });
  redis.defineCommand('orionOwners', { lua: OWNERS });
  redis.defineCommand('orionFinal', { numberOfKeys: 6, lua: FINAL });
  redis.defineCommand('orionPartial', { numberOfKeys: 3, lua: PARTIAL });
  redis.defineCommand('orionDeliver', { numberOfKeys: 2, lua: DELIVER });
  redis.defineCommand('orionStart', { numberOfKeys: 3, lua: START });
}

export type StartResult = { kind: 'run' } | { kind: 'done'; final: string } | { kind: 'moved'; owner: string } | { kind: 'gone' } | { kind: 'cancelled' };

/**
 * Admit a job copy on `nodeId` and store its data with the attempt counted (see START). The
 * command is written to the connection before this returns, so a call started right after it
 * reaches Redis after the attempt is recorded.
 */
export async function startJob(redis: Redis, n: Names, requestId: string, jobKey: string, nodeId: string, data: InferenceJobData): Promise<StartResult> {
  defineBusCommands(redis);
  const [kind, value = ''] = await redis.orionStart(n.requestKey(requestId), jobKey, n.cancelKey(requestId), nodeId, JSON.stringify(data));
  if (kind === 'run' || kind === 'gone' || kind === 'cancelled') return { kind };
  return kind === 'done' ? { kind, final: value } : { kind: 'moved', owner: value };
}

export type ClaimResult = { kind: 'new' } | { kind: 'same' } | { kind: 'waiting' } | { kind: 'done'; final: string };

export interface ClaimItem {
  requestId: string;
  entryId: string;
  replyTo: string;
  deadline: number;
  /** The request's timeout_ms (default applied). */
  timeoutMs: number;
}

/** What the waiters set's name adds to the request hash's (CLAIM_MANY derives one from the other). */
function waitersSuffix(n: Names): string {
  const rk = n.requestKey('x');
  const wk = n.waitersKey('x');
  if (!wk.startsWith(rk)) throw new Error('names.ts: the waiters set of a request must be named after its request hash');
  return wk.slice(rk.length);
}

const CLAIM_KINDS: Record<string, ClaimResult['kind']> = { n: 'new', s: 'same', w: 'waiting', d: 'done' };

/** Claim a batch of request ids in one script call (one command, not one per request). */
export async function claimRequests(redis: Redis, n: Names, items: readonly ClaimItem[]): Promise<ClaimResult[]> {
  const keys: string[] = [deadlinesKey(n)];
  const streams = new Map<string, number>();
  let lines = '';
  // One TTL for the batch: the longest any of its records needs.
  let ttl = REQUEST_RECORD_TTL_S;
  for (const it of items) {
    keys.push(n.requestKey(it.requestId));
    let r = streams.get(it.replyTo);
    if (r === undefined) streams.set(it.replyTo, (r = streams.size + 1));
    lines += `${it.entryId},${r},${it.deadline},${it.timeoutMs}\n`;
    ttl = Math.max(ttl, recordTtlSeconds(it.timeoutMs));
  }
  const [kinds = '', ...finals] = await redis.orionClaimMany(keys.length, ...keys, ttl, waitersSuffix(n), lines, ...streams.keys());
  if (kinds.length !== items.length) throw new Error(`claim script answered ${kinds.length} of ${items.length} requests`);
  let f = 0;
  return [...kinds].map((k) => (k === 'd' ? { kind: 'done', final: finals[f++] ?? '{}' } : { kind: CLAIM_KINDS[k] as Exclude<ClaimResult['kind'], 'done'> }));
}

/**
 * Record, in one script call, which node owns each request's job (before the jobs are added
 * there). On a pipeline the call is queued; on a connection it is sent, and its reply returned.
 */
export function setOwners(target: Redis | ChainableCommander, n: Names, owners: readonly { requestId: string; nodeId: string }[]): Promise<unknown> {
  if (owners.length === 0) return Promise.resolve(0);
  const byNode = new Map<string, string[]>();
  for (const o of owners) {
    const keys = byNode.get(o.nodeId);
    if (keys) keys.push(n.requestKey(o.requestId));
    else byNode.set(o.nodeId, [n.requestKey(o.requestId)]);
  }
  const keys: string[] = [];
  let lines = '';
  for (const [node, list] of byNode) {
    if (!isValidNodeId(node)) throw new Error(`'${node.slice(0, 80)}' is not a node id (1-64 of [A-Za-z0-9._-])`);
    keys.push(...list);
    lines += `${node},${list.length}\n`;
  }
  const out: unknown = (target as Redis).orionOwners(keys.length, ...keys, lines);
  return out instanceof Promise ? out : Promise.resolve(0);
}

/** Record which node owns a request's job now (before adding or moving it there). */
export function replyStreamOf(n: Names, request: Pick<InferenceRequest, 'reply_to'>): string {
  return request.reply_to !== undefined && n.isReplyStream(request.reply_to) ? request.reply_to : n.responses;
}

/** Where a document went: the reply stream, the default stream instead, or nowhere. */
export type Delivery = 'reply_to' | 'default' | 'nowhere';
const DELIVERY: Record<number, Delivery> = { 1: 'reply_to', 2: 'default', 3: 'nowhere' };

/** Why a document did not reach its reply stream (for the dead letter), or undefined when it did. */
export function misdelivery(n: Names, replyTo: string, where: Delivery): string | undefined {
  if (where === 'reply_to') return undefined;
  return where === 'default'
    ? `reply_to ${replyTo} names a key that is not a stream; the answer went to ${n.responses} instead`
    : `neither reply_to ${replyTo} nor ${n.responses} is a stream; the answer is kept in the request record only`;
}

/**
 * A response as JSON. A document that cannot be serialised (it should never happen: requests
 * are bounded in size and depth) loses its echoed metadata rather than its answer.
 */
export function responseJson(doc: InferenceResponse): string {
  try {
    return JSON.stringify(doc);
  } catch {
    const { metadata: _dropped, ...rest } = doc;
    return JSON.stringify(rest);
  }
}

/**
 * Publish the final answer. `nodeId` set: only if that node still owns the job. Returns
 * whether it was published (false: someone already answered, or the job moved away). An
 * answer whose reply stream is not a stream goes to the default stream and is dead-lettered
 * with the reason.
 */
export async function publishFinal(
  redis: Redis,
  n: Names,
  replyTo: string,
  doc: InferenceResponse,
  nodeId = '',
  maxlen = DEFAULT_STREAM_MAXLEN,
): Promise<boolean> {
  defineBusCommands(redis);
  const id = doc.request_id;
  const r = await redis.orionFinal(
    n.requestKey(id),
    n.waitersKey(id),
    deadlinesKey(n),
    replyTo,
    n.responses,
    n.observations,
    nodeId,
    responseJson(doc),
    maxlen,
    REQUEST_RECORD_TTL_S,
    observationOf(doc),
    OBSERVATIONS_MAXLEN,
  );
  if (r === 0) return false;
  const why = misdelivery(n, replyTo, DELIVERY[r] ?? 'nowhere');
  if (why !== undefined) {
    await deadLetter(redis, n, { reason: why, error_code: doc.error?.code, request_id: id, node_id: doc.node_id, attempt: doc.attempt });
  }
  return true;
}

/** The observations stream keeps about this many answers (the learners' memory after a restart). */
export const OBSERVATIONS_MAXLEN = 10_000;

/** The final answer's Ollama figures an observation keeps, under the answer's own names. */
const OBSERVED = ['total_duration_ms', 'load_duration_ms', 'prompt_eval_duration_ms', 'eval_duration_ms', 'prompt_eval_count', 'eval_count', 'queue_ms'] as const;

/**
 * What one answer cost, as the bridges learn it (`{p}:observations`): the node, the model and
 * the final answer's Ollama figures (their types are the response's); never content. `at` =
 * when it was answered (ms since epoch).
 */
export interface Observation extends Pick<InferenceResponse, (typeof OBSERVED)[number]> {
  node: string;
  model: string;
  at: number;
}

/** The observation of a final answer: '' unless it is a successful answer with Ollama's figures. */
export function observationOf(doc: InferenceResponse): string {
  if (doc.error !== undefined || doc.node_id === undefined || doc.model === undefined || doc.total_duration_ms === undefined) return '';
  const o: Record<string, unknown> = { node: doc.node_id, model: doc.model, at: Date.parse(doc.created_at) || Date.now() };
  for (const k of OBSERVED) {
    const v = doc[k];
    if (typeof v === 'number' && Number.isFinite(v)) o[k] = v;
  }
  return JSON.stringify(o);
}

/** An observation read back from the stream, or undefined when it does not parse. */
export function parseObservation(raw: string): Observation | undefined {
  let d: unknown;
  try {
    d = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const o = d as Partial<Observation> | null;
  if (!o || typeof o.node !== 'string' || typeof o.model !== 'string' || typeof o.at !== 'number') return undefined;
  for (const k of OBSERVED) {
    const v = o[k];
    if (v !== undefined && !(typeof v === 'number' && Number.isFinite(v) && v >= 0)) return undefined;
  }
  return o as Observation;
}

export async function publishPartial(
  redis: Redis,
  n: Names,
  replyTo: string,
  doc: InferenceResponse,
  nodeId: string,
  maxlen = DEFAULT_STREAM_MAXLEN,
): Promise<boolean> {
  defineBusCommands(redis);
  const r = await redis.orionPartial(n.requestKey(doc.request_id), replyTo, n.responses, nodeId, responseJson(doc), maxlen);
  return r !== 0;
}

/**
 * Add a document to a reply stream outside the final script (see DELIVER): on a pipeline the
 * call is queued (its reply is 1, 2 or 3, see `deliveryOf`); on a connection it is sent.
 */
export function deliver(target: Redis | ChainableCommander, n: Names, replyTo: string, json: string, maxlen = DEFAULT_STREAM_MAXLEN): Promise<unknown> {
  const out: unknown = (target as Redis).orionDeliver(replyTo, n.responses, json, maxlen);
  return out instanceof Promise ? out : Promise.resolve(1);
}

/** The reply of a DELIVER call as a Delivery. */
export function deliveryOf(reply: unknown): Delivery {
  return DELIVERY[Number(reply)] ?? 'nowhere';
}

/** Add a dead-letter entry (fields unknown at the time left out). */
export function deadLetterDoc(fields: Omit<DeadLetter, 'created_at'>): DeadLetter {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  out['created_at'] = rfc3339();
  return out as unknown as DeadLetter;
}

/**
 * A dead letter as JSON. A request that cannot be serialised (too deep for JSON.stringify,
 * which recurses) is replaced by a note saying so: the dead letter itself must never fail.
 */
function deadLetterJson(fields: Omit<DeadLetter, 'created_at'>): string {
  const doc = deadLetterDoc(fields);
  try {
    return JSON.stringify(doc);
  } catch (err) {
    return JSON.stringify({ ...doc, request: `[request not serialisable: ${(err as Error).message}]` });
  }
}

export async function deadLetter(
  redis: Redis | ChainableCommander,
  n: Names,
  fields: Omit<DeadLetter, 'created_at'>,
  maxlen = DEFAULT_STREAM_MAXLEN,
): Promise<void> {
  await redis.xadd(n.deadletter, 'MAXLEN', '~', maxlen, '*', 'data', deadLetterJson(fields));
}

/** A final error document. */
export function errorResponse(
  requestId: string,
  code: ErrorCode,
  message: string,
  extra: Partial<InferenceResponse> = {},
): InferenceResponse {
  return { request_id: requestId, ...extra, done: true, error: { code, message }, created_at: rfc3339() };
}

/** ORION priority 0-9 (higher first) as BullMQ priority (lower first; always set). */
export function bullPriority(priority: number | undefined): number {
  return 10 - (priority ?? 5);
}
