/**
 * Every Redis key, stream and queue name in one place. Nothing else in the project builds a
 * key by hand: a change of layout is a change of this file.
 *
 * `p` is the stream prefix (`--stream-prefix`, default `orion:inference`).
 */

export const DEFAULT_PREFIX = 'orion:inference';
/** Consumer group of the bridge on `{p}:requests`. */
export const ROUTER_GROUP = 'orion-inference-router';

/** A node id: 1-64 of [A-Za-z0-9._-]; BullMQ forbids ':' in queue names. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** A request id: 1-128 of [A-Za-z0-9._-] (SPEC.md section 3). */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

export function isValidNodeId(id: string): boolean {
  return NODE_ID_PATTERN.test(id);
}

export function isValidRequestId(id: unknown): id is string {
  return typeof id === 'string' && REQUEST_ID_PATTERN.test(id);
}

/** The BullMQ job id of a request: never all digits, never ':', never a queue key name. */
export function jobIdFor(requestId: string): string {
  return `req_${requestId}`;
}

export function requestIdOfJob(jobId: string): string {
  return jobId.startsWith('req_') ? jobId.slice(4) : jobId;
}

export interface Names {
  readonly prefix: string;
  /** Stream every request arrives on. */
  readonly requests: string;
  /** BullMQ prefix of the per-node job queues: queue `{nodeID}` gives keys `{p}:requests:{nodeID}:*`. */
  readonly nodeQueuePrefix: string;
  /** BullMQ prefix of the per-node heartbeat queues. */
  readonly heartbeatQueuePrefix: string;
  /** Hash: field node id, value health JSON. */
  readonly health: string;
  /** String with TTL: one node's health; its expiry marks the node dead. */
  healthKey(nodeId: string): string;
  /**
   * Sorted set: node id -> version of its health document (grows with every write, set by the
   * same script), so a reader fetches only the documents written since it last looked.
   */
  readonly healthVersions: string;
  /** Default reply stream. */
  readonly responses: string;
  /** Dead-letter stream. */
  readonly deadletter: string;
  /** Stream of jobs a worker gave up on that the bridge must place elsewhere. */
  readonly reroute: string;
  /** Hash per request id: owner node, reply_to, entry id, final answer (24 h). */
  requestKey(requestId: string): string;
  /** Set of extra reply streams waiting on a duplicate request id. */
  waitersKey(requestId: string): string;
  /** Hash of cluster-wide counters (all bridges). */
  readonly stats: string;
  /** Hash of one bridge's counters. */
  bridgeStatsKey(consumer: string): string;
  /**
   * Set of every node id that has published health (each report adds it again). With the health
   * hash it tells the bridge which node queues exist: Bull Board shows them, and the dead-node
   * sweep looks in them even after a node's health entry is gone.
   */
  readonly nodes: string;
  /** Sorted set: unanswered requests by deadline (score = deadline ms, member = request key). */
  readonly deadlines: string;
  /** Set of node ids an operator drained (`orion drain`): no new work, waiting jobs moved away. */
  readonly drained: string;
  /** Short lock (SET NX PX) of the bridge moving a dead node's jobs elsewhere. */
  rerouteLockKey(nodeId: string): string;
  /**
   * String with TTL: set by a client to cancel request `requestId` (SPEC.md section 9); the
   * bridge checks it before placing, the worker before starting and while generating.
   */
  cancelKey(requestId: string): string;
  /** Whether a reply stream name is one a request may name in `reply_to`. */
  isReplyStream(name: string): boolean;
  /** A key of a node's BullMQ job queue, e.g. `wait`, `prioritized`, `active` (as BullMQ's QueueKeys builds it). */
  nodeQueueKey(nodeId: string, type: string): string;
  /**
   * Stream of what answers cost (node, model, Ollama's durations and token counts; never
   * content), added with each final answer a worker publishes; every bridge reads it to learn.
   */
  readonly observations: string;
  /** Hash: request id -> `from,to` of a move of a waiting job in progress (finished after a crash). */
  readonly moves: string;
  /** Short lock (SET NX PX) of the bridge renewing the keep-alive of a model's last warm copy. */
  keepWarmLockKey(model: string): string;
  /** Stream the answers of keep-alive renewals go to (no client reads it; kept short). */
  readonly keepWarmReplies: string;
}

export function names(prefix: string = DEFAULT_PREFIX): Names {
  const responses = `${prefix}:responses`;
  return {
    prefix,
    requests: `${prefix}:requests`,
    nodeQueuePrefix: `${prefix}:requests`,
    heartbeatQueuePrefix: `${prefix}:heartbeat`,
    health: `${prefix}:health`,
    healthKey: (nodeId) => `${prefix}:health:${nodeId}`,
    // Not under `{p}:health:` (that is the TTL keys', one per node id).
    healthVersions: `${prefix}:health-versions`,
    responses,
    deadletter: `${prefix}:deadletter`,
    reroute: `${prefix}:reroute`,
    requestKey: (requestId) => `${prefix}:request:${requestId}`,
    waitersKey: (requestId) => `${prefix}:request:${requestId}:waiters`,
    stats: `${prefix}:stats`,
    bridgeStatsKey: (consumer) => `${prefix}:stats:${consumer}`,
    nodes: `${prefix}:nodes`,
    deadlines: `${prefix}:deadlines`,
    drained: `${prefix}:drained`,
    rerouteLockKey: (nodeId) => `${prefix}:reroute-lock:${nodeId}`,
    cancelKey: (requestId) => `${prefix}:cancel:${requestId}`,
    nodeQueueKey: (nodeId, type) => `${prefix}:requests:${nodeId}:${type}`,
    observations: `${prefix}:observations`,
    moves: `${prefix}:moves`,
    keepWarmLockKey: (model) => `${prefix}:keep-warm-lock:${model}`,
    keepWarmReplies: `${responses}:orion-keep-warm`,
    isReplyStream: (name) => name === responses || (name.startsWith(`${responses}:`) && name.length > responses.length + 1),
  };
}
