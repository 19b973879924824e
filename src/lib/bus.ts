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
 * and `{p}:deadlines` (sorted set, score = deadline ms) lists requests still unanswered, so a
 * bridge can answer `timeout` within a second wherever a request waits.
 */
import type { Redis, ChainableCommander, Result } from 'ioredis';
import type { DeadLetter, InferenceRequest, InferenceResponse, Routing } from '../contracts/types.js';
import type { ErrorCode } from './errors.js';
import type { Names } from './names.js';
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

/** How long a request id is remembered. */
export const REQUEST_RECORD_TTL_S = 24 * 3600;
/** Reply and dead-letter streams are trimmed to about this many entries. */
export const DEFAULT_STREAM_MAXLEN = 100_000;
export const DEFAULT_TIMEOUT_MS = 600_000;

export function deadlinesKey(n: Names): string {
  return n.deadlines;
}

/**
 * claim(request hash, waiters set, deadlines zset, entry id, reply_to, ttl seconds, deadline ms):
 * register a request id, or find it already known.
 * Returns {'new'} | {'same'} (re-read of the same entry) | {'done', final} | {'waiting'}
 */
const CLAIM_FN = `
local function claim(rk, wk, dk, entry_id, reply_to, ttl, deadline)
  local entry = redis.call('HGET', rk, 'entry')
  if not entry then
    redis.call('HSET', rk, 'entry', entry_id, 'reply_to', reply_to)
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
 * claim: one request id.
 * KEYS: 1 request hash, 2 waiters set, 3 deadlines zset
 * ARGV: 1 entry id, 2 reply_to, 3 ttl seconds, 4 deadline ms
 */
const CLAIM = `${CLAIM_FN}
return claim(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
`;

/**
 * claim many: the request ids of a batch in one call, in order (a later duplicate of an id in
 * the same batch sees the earlier one, as with separate calls). Packed, because a client pays
 * for every argument: one line per request, and each distinct reply stream once.
 * KEYS: 1 deadlines zset, then one request hash per request
 * ARGV: 1 ttl seconds, 2 waiters key suffix (waiters set = request hash .. suffix),
 *       3 lines 'entry id,reply stream number,deadline ms' each ending in a newline,
 *       4.. the reply streams, numbered from 1
 * Returns {kinds, final...}: kinds has a letter per request, n(ew), s(ame), w(aiting) or
 * d(one), and each d has its final answer after kinds, in order.
 */
const CLAIM_MANY = `${CLAIM_FN}
local kinds, out, i = {}, {''}, 0
for entry_id, r, deadline in string.gmatch(ARGV[3], '([^,]+),(%d+),([^\\n]+)\\n') do
  i = i + 1
  local c = claim(KEYS[i + 1], KEYS[i + 1] .. ARGV[2], KEYS[1], entry_id, ARGV[3 + tonumber(r)], ARGV[1], deadline)
  kinds[i] = string.sub(c[1], 1, 1)
  if c[2] then out[#out + 1] = c[2] end
end
out[1] = table.concat(kinds)
return out
`;

/**
 * owners: record which node owns each request's job (before the jobs are added there).
 * KEYS: request hashes, grouped by node; ARGV: node id, number of its keys, node id, ...
 */
const OWNERS = `
local k = 1
for i = 1, #ARGV, 2 do
  for _ = 1, tonumber(ARGV[i + 1]) do
    redis.call('HSET', KEYS[k], 'node', ARGV[i])
    k = k + 1
  end
end
return k - 1
`;

/**
 * final: publish the one final answer of a request.
 * KEYS: 1 request hash, 2 waiters set, 3 deadlines zset, 4 reply stream
 * ARGV: 1 node id ('' = any owner), 2 final JSON, 3 maxlen, 4 ttl seconds
 * Returns 1 when published, 0 when suppressed (already answered, or the job moved to another
 * node: a late "zombie" worker must not answer twice).
 * The waiter streams are read from the set, not declared: ORION runs on one Redis, not a cluster.
 */
const FINAL = `
if ARGV[1] ~= '' then
  local owner = redis.call('HGET', KEYS[1], 'node')
  if owner and owner ~= ARGV[1] then return 0 end
end
if redis.call('HSETNX', KEYS[1], 'final', ARGV[2]) == 0 then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[3], KEYS[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
for _, w in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if w ~= KEYS[4] then redis.call('XADD', w, 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2]) end
end
redis.call('DEL', KEYS[2])
return 1
`;

/**
 * partial: publish a partial answer unless the job has moved or the request is answered.
 * KEYS: 1 request hash, 2 reply stream
 * ARGV: 1 node id, 2 partial JSON, 3 maxlen
 */
const PARTIAL = `
local owner = redis.call('HGET', KEYS[1], 'node')
if owner and owner ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'final') == 1 then return 0 end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'data', ARGV[2])
return 1
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
    orionClaim(k1: string, k2: string, k3: string, entry: string, replyTo: string, ttl: number, deadline: number): Result<Reply, Context>;
    /** numkeys, then the keys, then the arguments (see CLAIM_MANY). */
    orionClaimMany(...args: (string | number)[]): Result<string[], Context>;
    /** numkeys, then the request hashes, then node ids and counts (see OWNERS). */
    orionOwners(...args: (string | number)[]): Result<number, Context>;
    orionFinal(k1: string, k2: string, k3: string, k4: string, node: string, doc: string, maxlen: number, ttl: number): Result<number, Context>;
    orionPartial(k1: string, k2: string, node: string, doc: string, maxlen: number): Result<number, Context>;
    orionStart(k1: string, k2: string, k3: string, node: string, data: string): Result<Reply, Context>;
  }
}

/** Register the scripts on a connection (idempotent). */
export function defineBusCommands(redis: Redis): void {
  if (typeof (redis as Partial<Redis>).orionClaim === 'function') return;
  redis.defineCommand('orionClaim', { numberOfKeys: 3, lua: CLAIM });
  redis.defineCommand('orionClaimMany', { lua: CLAIM_MANY });
  redis.defineCommand('orionOwners', { lua: OWNERS });
  redis.defineCommand('orionFinal', { numberOfKeys: 4, lua: FINAL });
  redis.defineCommand('orionPartial', { numberOfKeys: 2, lua: PARTIAL });
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

export function parseClaim(reply: Reply): ClaimResult {
  switch (reply[0]) {
    case 'new':
    case 'same':
    case 'waiting':
      return { kind: reply[0] };
    default:
      return { kind: 'done', final: reply[1] ?? '{}' };
  }
}

/** Queue the claim of a request on a pipeline; its reply is parsed with `parseClaim`. */
export function claimRequest(
  pipe: ChainableCommander,
  n: Names,
  requestId: string,
  entryId: string,
  replyTo: string,
  deadline: number,
): void {
  (pipe as unknown as Redis).orionClaim(
    n.requestKey(requestId),
    n.waitersKey(requestId),
    deadlinesKey(n),
    entryId,
    replyTo,
    REQUEST_RECORD_TTL_S,
    deadline,
  );
}

export interface ClaimItem {
  requestId: string;
  entryId: string;
  replyTo: string;
  deadline: number;
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
  for (const it of items) {
    keys.push(n.requestKey(it.requestId));
    let r = streams.get(it.replyTo);
    if (r === undefined) streams.set(it.replyTo, (r = streams.size + 1));
    lines += `${it.entryId},${r},${it.deadline}\n`;
  }
  const [kinds = '', ...finals] = await redis.orionClaimMany(keys.length, ...keys, REQUEST_RECORD_TTL_S, waitersSuffix(n), lines, ...streams.keys());
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
  const args: (string | number)[] = [];
  for (const [node, list] of byNode) {
    keys.push(...list);
    args.push(node, list.length);
  }
  const out: unknown = (target as Redis).orionOwners(keys.length, ...keys, ...args);
  return out instanceof Promise ? out : Promise.resolve(0);
}

/** Record which node owns a request's job now (before adding or moving it there). */
export function setOwner(target: Redis | ChainableCommander, n: Names, requestId: string, nodeId: string): void {
  void target.hset(n.requestKey(requestId), 'node', nodeId);
}

export function replyStreamOf(n: Names, request: Pick<InferenceRequest, 'reply_to'>): string {
  return request.reply_to !== undefined && n.isReplyStream(request.reply_to) ? request.reply_to : n.responses;
}

/**
 * Publish the final answer. `nodeId` set: only if that node still owns the job. Returns
 * whether it was published (false: someone already answered, or the job moved away).
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
    nodeId,
    JSON.stringify(doc),
    maxlen,
    REQUEST_RECORD_TTL_S,
  );
  return r === 1;
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
  const r = await redis.orionPartial(n.requestKey(doc.request_id), replyTo, nodeId, JSON.stringify(doc), maxlen);
  return r === 1;
}

/** Add a dead-letter entry (fields unknown at the time left out). */
export function deadLetterDoc(fields: Omit<DeadLetter, 'created_at'>): DeadLetter {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) if (v !== undefined) out[k] = v;
  out['created_at'] = rfc3339();
  return out as unknown as DeadLetter;
}

export async function deadLetter(
  redis: Redis | ChainableCommander,
  n: Names,
  fields: Omit<DeadLetter, 'created_at'>,
  maxlen = DEFAULT_STREAM_MAXLEN,
): Promise<void> {
  await redis.xadd(n.deadletter, 'MAXLEN', '~', maxlen, '*', 'data', JSON.stringify(deadLetterDoc(fields)));
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
