/** The `orion` command line: talk to a running ORION from a terminal. */
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { validateRequest } from '../contracts/index.js';
import type { InferenceResponse, NodeHealth } from '../contracts/types.js';
import { aclLine, aclRules, type AclRole } from '../lib/acl.js';
import { DEFAULT_TIMEOUT_MS } from '../lib/bus.js';
import { isValidNodeId } from '../lib/names.js';
import type { Names } from '../lib/names.js';
import { parseDuration } from '../lib/time.js';
import { sendAndWait } from './send.js';

export interface CliContext {
  n: Names;
  /** Opens a Redis connection (only commands that need one call it). */
  redis(): Redis;
  routerUrl: string;
  out(line: string): void;
  err(line: string): void;
}

export const USAGE = `orion: talk to a running ORION inference subsystem

Usage: orion <command> [flags]

Commands:
  send --model M (--prompt TEXT | --chat TEXT) [--stream] [--system TEXT] [--priority 0-9]
       [--timeout 60s] [--num-predict N] [--seed N] [--id ID] [--json]
                      send a request as the Brain does and print the answer
  nodes               every node in the health registry, as the bridge sees it (GET /nodes)
  stats               the bridge's routing counters (GET /stats)
  deadletter [--count N]
                      the newest dead-letter entries, with their reasons
  validate FILE       check a request document against bus/contracts (like npx ajv validate)
  acl --role bridge|worker|brain|gateway [--node-id ID] --password PW [--user NAME] [--file]
                      print the least-privilege Redis ACL user for a role (docs/SECURITY.md)

Common flags (each with an ORION_* twin): --redis-addr, --redis-password, --redis-username,
--redis-tls, --redis-tls-ca, --stream-prefix, --router (ORION_ROUTER_URL, default http://localhost:8080)
`;

type Flags = Record<string, string | true>;

function str(flags: Flags, key: string): string | undefined {
  const v = flags[key];
  return typeof v === 'string' ? v : undefined;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`${url} answered ${res.status}`);
  return res.json();
}

function fmt(v: unknown, width: number): string {
  const s = v === null || v === undefined ? '-' : String(v);
  return s.length > width ? s.slice(0, width - 1) + '…' : s.padEnd(width);
}

export async function runCommand(cmd: string, args: string[], flags: Flags, ctx: CliContext): Promise<number> {
  switch (cmd) {
    case 'send':
      return send(flags, ctx);
    case 'nodes': {
      const nodes = (await getJson(`${ctx.routerUrl}/nodes`)) as (NodeHealth & { eligible: boolean; excluded_reason?: string; warning?: string })[];
      if (flags['json']) {
        ctx.out(JSON.stringify(nodes, null, 2));
        return 0;
      }
      ctx.out(`${fmt('NODE', 14)}${fmt('ROUTE', 14)}${fmt('CPU%', 7)}${fmt('RAM%', 7)}${fmt('TEMP', 7)}${fmt('ACTIVE', 8)}LOADED`);
      for (const x of nodes) {
        const route = x.eligible ? 'eligible' : `no (${x.excluded_reason ?? '?'})`;
        ctx.out(`${fmt(x.node_id, 14)}${fmt(route, 14)}${fmt(x.cpu_percent, 7)}${fmt(x.ram_percent, 7)}${fmt(x.temp_celsius, 7)}${fmt(x.active, 8)}${x.models.join(', ') || '-'}`);
      }
      // Warnings the bridge attaches (two workers under one node id) under the table.
      for (const x of nodes) if (typeof x.warning === 'string') ctx.err(`warning: ${x.node_id}: ${x.warning}`);
      return 0;
    }
    case 'stats':
      ctx.out(JSON.stringify(await getJson(`${ctx.routerUrl}/stats`), null, 2));
      return 0;
    case 'deadletter': {
      const count = Number(str(flags, 'count') ?? 20);
      const entries = await ctx.redis().xrevrange(ctx.n.deadletter, '+', '-', 'COUNT', count);
      for (const [id, fields] of entries) ctx.out(`${id} ${fields[fields.indexOf('data') + 1] ?? ''}`);
      if (!entries.length) ctx.out('(the dead-letter stream is empty)');
      return 0;
    }
    case 'validate': {
      const file = args[0];
      if (!file) {
        ctx.err('validate needs a file');
        return 2;
      }
      const v = validateRequest(JSON.parse(readFileSync(file, 'utf8')));
      if (v.ok) ctx.out(`${file} valid`);
      else ctx.err(`${file} invalid: ${v.message}`);
      return v.ok ? 0 : 1;
    }
    case 'acl':
      return acl(flags, ctx);
    default:
      ctx.err(cmd ? `unknown command '${cmd}'\n\n${USAGE}` : USAGE);
      return 2;
  }
}

async function send(flags: Flags, ctx: CliContext): Promise<number> {
  const model = str(flags, 'model');
  const prompt = str(flags, 'prompt');
  const chat = str(flags, 'chat');
  if (!model || (prompt === undefined) === (chat === undefined)) {
    ctx.err('send needs --model and exactly one of --prompt or --chat');
    return 2;
  }
  const timeoutMs = parseDuration(str(flags, 'timeout') ?? `${DEFAULT_TIMEOUT_MS}ms`) ?? DEFAULT_TIMEOUT_MS;
  const options: Record<string, unknown> = {};
  if (str(flags, 'num-predict')) options['num_predict'] = Number(str(flags, 'num-predict'));
  if (str(flags, 'seed')) options['seed'] = Number(str(flags, 'seed'));
  const stream = flags['stream'] === true;
  const asJson = flags['json'] === true;
  const request = {
    model,
    ...(prompt !== undefined ? { prompt } : { messages: [{ role: 'user' as const, content: chat! }] }),
    ...(str(flags, 'system') ? { system: str(flags, 'system')! } : {}),
    ...(Object.keys(options).length ? { options } : {}),
    ...(str(flags, 'priority') ? { priority: Number(str(flags, 'priority')) } : {}),
    ...(str(flags, 'id') ? { request_id: str(flags, 'id')! } : {}),
    stream,
    timeout_ms: timeoutMs,
    source: 'orion-cli',
  };
  const result = await sendAndWait(ctx.redis(), ctx.n, {
    request,
    waitMs: timeoutMs + 5000,
    onPartial: (p: InferenceResponse) => {
      if (!asJson) process.stdout.write(p.response ?? p.message?.content ?? '');
    },
  });
  const final = result.final;
  if (!final) {
    ctx.err(`no answer within ${Math.round((timeoutMs + 5000) / 1000)} s (is the bridge running? try: orion nodes)`);
    return 1;
  }
  if (asJson) ctx.out(JSON.stringify(final, null, 2));
  else if (final.error) ctx.err(`error ${final.error.code}: ${final.error.message}`);
  else {
    if (!stream) ctx.out(final.response ?? final.message?.content ?? '');
    else ctx.out('');
    ctx.err(
      `[${final.node_id} ${final.routing} attempt ${final.attempt}; queue ${final.queue_ms} ms, load ${final.load_duration_ms} ms, total ${result.elapsedMs} ms, ${final.eval_count} tokens]`,
    );
  }
  return final.error ? 1 : 0;
}

function acl(flags: Flags, ctx: CliContext): number {
  const role = str(flags, 'role');
  const password = str(flags, 'password');
  const nodeId = str(flags, 'node-id');
  let who: AclRole;
  if (role === 'bridge' || role === 'brain' || role === 'gateway') who = { role };
  else if (role === 'worker' && nodeId !== undefined && isValidNodeId(nodeId)) who = { role, nodeId };
  else {
    ctx.err('acl needs --role bridge, --role brain, --role gateway, or --role worker with a valid --node-id');
    return 2;
  }
  if (!password) {
    ctx.err('acl needs --password (the user\'s secret; it is printed in the rule, so keep the output private)');
    return 2;
  }
  const user = str(flags, 'user') ?? (who.role === 'worker' ? `orion-worker-${who.nodeId}` : `orion-${who.role}`);
  ctx.out(aclLine(user, aclRules(ctx.n, who, password), flags['file'] ? 'file' : 'command'));
  return 0;
}
