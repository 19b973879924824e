/**
 * The operator's CLI, the built `orion` bin run as a person runs it, against a running cluster:
 * the built bridge, two workers, the Ollama simulator and a throwaway Redis. Settings come from
 * the environment (ORION_REDIS_ADDR, ORION_STREAM_PREFIX, ORION_ROUTER_URL), as once installed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ROOT, World, requireBuilt, waitFor, type Proc } from '../faults/harness.js';
import { bridgePort } from './cluster.js';
import { requireBuilt as requireFiles } from '../helpers/built.js';

const CLI = join(ROOT, 'dist/src/bin/cli.js');
requireBuilt();
requireFiles(CLI);
// Each test starts the CLI a few times: a second or more apiece on a busy machine.
vi.setConfig({ testTimeout: 60_000 });

interface Run {
  code: number | null;
  out: string;
  err: string;
}

let world: World;
let bridge: Proc;
let workers: Record<string, Proc>;
let env: Record<string, string>;

/** Run `orion ARGS` from a folder outside the repository. */
function orion(args: string[], o: { timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: tmpdir(), env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

const json = <T>(r: Run): T => JSON.parse(r.out) as T;

/** The bridge's /nodes (read directly: polling through the CLI would start a process each time). */
async function nodeState(id: string): Promise<string | undefined> {
  const rows = (await (await fetch(`${env['ORION_ROUTER_URL']}/nodes`)).json()) as { node_id: string; eligible: boolean; excluded_reason?: string }[];
  const row = rows.find((x) => x.node_id === id);
  return row === undefined ? undefined : row.eligible ? 'eligible' : (row.excluded_reason ?? '?');
}

beforeAll(async () => {
  world = await new World({
    label: 'cli',
    nodes: [
      { id: 'pi-16g', profile: 'pi5-16g', loaded: ['llama3.2:3b'], files: true },
      { id: 'pi-8g', profile: 'pi5-8g', loaded: ['gemma3:1b'], files: true },
    ],
  }).start();
  workers = { 'pi-16g': world.startWorker('pi-16g'), 'pi-8g': world.startWorker('pi-8g') };
  bridge = world.startBridge();
  const port = await bridgePort(world, bridge);
  await Promise.all([world.healthy('pi-16g', 45_000), world.healthy('pi-8g', 45_000)]);
  env = { ORION_REDIS_ADDR: world.redis.addr, ORION_STREAM_PREFIX: world.prefix, ORION_ROUTER_URL: `http://127.0.0.1:${port}` };
  await waitFor('both nodes eligible', async () => (await nodeState('pi-16g')) === 'eligible' && (await nodeState('pi-8g')) === 'eligible', 15_000, 200);
}, 120_000);

afterAll(async () => {
  await world?.close();
});

describe('orion help', () => {
  it('lists every command, and each command has its own help', async () => {
    const general = await orion(['--help']);
    expect(general.code).toBe(0);
    for (const c of ['ask', 'status', 'preload', 'drain', 'undrain', 'forget', 'tail', 'nodes', 'stats']) expect(general.out).toMatch(new RegExp(`^  ${c} `, 'm'));
    const send = await orion(['send', '--help']);
    expect(send.code).toBe(0);
    expect(send.out).toMatch(/^Usage: orion send /);
    expect(send.out).toContain('--prompt TEXT');
    expect(send.out).not.toContain('Commands:');
    expect((await orion(['help', 'drain'])).out).toMatch(/^Usage: orion drain NODE/);
    expect((await orion(['preload', '-h'])).out).toMatch(/^Usage: orion preload MODEL/);
  });

  it('refuses an unknown flag or command by name, with exit code 2', async () => {
    const flag = await orion(['nodes', '--bogus']);
    expect(flag.code).toBe(2);
    expect(flag.err).toContain("'--bogus'");
    const cmd = await orion(['frobnicate']);
    expect(cmd.code).toBe(2);
    expect(cmd.err).toContain("unknown command 'frobnicate'");
    const arg = await orion(['status']);
    expect(arg.code).toBe(2);
    expect(arg.err).toContain('status needs exactly one request id');
  });
});

describe('orion nodes and stats', () => {
  it('nodes prints a table whose columns never run into each other', async () => {
    const r = await orion(['nodes']);
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    const header = lines[0]!.split(/\s{2,}/);
    expect(header).toEqual(['NODE', 'STATE', 'TEMP', 'RAM%', 'CPU%', 'RUN/WAIT', 'LOADED', 'INSTALLED']);
    for (const line of lines.slice(1)) {
      const cells = line.split(/\s{2,}/);
      expect(cells).toHaveLength(header.length);
      expect(cells[1]).toBe('eligible');
      expect(cells[2]).toMatch(/^\d+\.\dC$/);
    }
    const rows = json<{ node_id: string }[]>(await orion(['nodes', '--json']));
    expect(rows.map((x) => x.node_id).sort()).toEqual(['pi-16g', 'pi-8g']);
  });

  it('stats shows the counters of this bridge and of the cluster', async () => {
    const r = await orion(['stats']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^COUNTER\s+THIS BRIDGE \(bridge-a\)\s+CLUSTER$/m);
    expect(r.out).toMatch(/^total_routed\s+\d+\s+\d+$/m);
    expect(json<Record<string, unknown>>(await orion(['stats', '--json']))).toHaveProperty('sticky_hits');
  });
});

describe('orion ask and status', () => {
  it('ask streams the answer, then tells the node, the routing and the times', async () => {
    const r = await orion(['ask', '-m', 'gemma3:1b', '--num-predict', '12', '--id', 'cli-ask-1', 'Why', 'is', 'the', 'sky', 'blue?']);
    expect(r.code, r.err).toBe(0);
    expect(r.out.trim().length).toBeGreaterThan(0);
    expect(r.err).toMatch(/node pi-8g · routing sticky · attempt 1 · queue \d+ ms · load .+ · prompt .+ · generation .+ · 12 tokens · total/);
    const s = await orion(['status', 'cli-ask-1']);
    expect(s.code).toBe(0);
    expect(s.out).toMatch(/^request cli-ask-1: done on pi-8g \(sticky\)$/m);
    const doc = json<Record<string, unknown>>(await orion(['status', 'cli-ask-1', '--json']));
    expect(doc).toMatchObject({ state: 'done', node_id: 'pi-8g', source: 'bridge', error: null });
    // With no bridge to ask, the CLI reads the request record and the job from Redis itself.
    const own = json<Record<string, unknown>>(await orion(['status', 'cli-ask-1', '--json', '--router', 'http://127.0.0.1:9']));
    expect(own).toMatchObject({ state: 'done', node_id: 'pi-8g', routing: 'sticky', source: 'redis', error: null });
  });

  it('ask --json prints the final document; an unknown model is an error with exit code 1', async () => {
    const ok = await orion(['ask', '--json', '--model', 'llama3.2:3b', '--num-predict', '4', 'hello']);
    expect(ok.code).toBe(0);
    expect(json<Record<string, unknown>>(ok)).toMatchObject({ done: true, node_id: 'pi-16g', routing: 'sticky', eval_count: 4 });
    const bad = await orion(['ask', '--model', 'no-such-model', 'hello']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('error model_not_found');
  });

  it('status of an id nobody sent says so, with exit code 1', async () => {
    const r = await orion(['status', 'never-sent']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('not known');
  });
});

describe('orion drain, undrain and status of a held request', () => {
  it('a drained node gets no work; with every node drained a request is held; undrained it runs', async () => {
    const d = await orion(['drain', 'pi-8g', '--json']);
    expect(d.code, d.err).toBe(0);
    expect(json<Record<string, unknown>>(d)).toMatchObject({ node: 'pi-8g', drained: true, waiting: 0 });
    await waitFor('pi-8g drained', async () => (await nodeState('pi-8g')) === 'drained', 10_000, 100);
    expect((await orion(['nodes'])).out).toMatch(/^pi-8g\s+drained\s/m);
    // gemma3:1b is loaded on pi-8g only: drained, the request goes to pi-16g.
    const moved = json<Record<string, unknown>>(await orion(['ask', '--json', '-m', 'gemma3:1b', '--num-predict', '2', 'hi']));
    expect(moved).toMatchObject({ node_id: 'pi-16g' });

    expect((await orion(['drain', 'pi-16g', '--wait', '0'])).code).toBe(0);
    await waitFor('pi-16g drained', async () => (await nodeState('pi-16g')) === 'drained', 10_000, 100);
    await world.send([{ request_id: 'cli-held', model: 'gemma3:1b', prompt: 'x', options: { num_predict: 2 } }]);
    await waitFor('held', async () => (await world.admin.hget(world.n.requestKey('cli-held'), 'waiting')) === '1', 10_000, 100);
    expect((await orion(['status', 'cli-held'])).out).toContain('request cli-held: held by the bridge');

    const u = await orion(['undrain', 'pi-8g']);
    expect(u.out).toContain('pi-8g back in rotation');
    expect((await orion(['undrain', 'pi-16g', '--json'])).out).toContain('"was_drained":true');
    await world.allAnswered(['cli-held'], 20_000);
    expect(json<Record<string, unknown>>(await orion(['status', 'cli-held', '--json']))).toMatchObject({ state: 'done' });
    expect((await orion(['undrain', 'pi-8g'])).out).toContain('pi-8g was not drained');
  }, 60_000);
});

describe('orion preload', () => {
  it('loads a model on the node asked for, with its progress, until the node reports it loaded', async () => {
    const r = await orion(['preload', 'llama3.2:3b', '--node', 'pi-8g'], { timeoutMs: 40_000 });
    expect(r.code, r.err).toBe(0);
    // One line per step reached (no terminal here): placed on pi-8g's queue already, then on.
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(/^\[#*\.+\] (queued|loading) on pi-8g/);
    expect(r.out).toMatch(/\[#{24}\] reported by the node on pi-8g/);
    expect(lines.at(-1)).toMatch(/^llama3\.2:3b loaded on pi-8g in .+ \(load .+\)$/);
    // `orion nodes` shows the bridge's view, rebuilt every second from the documents the node
    // wrote: the model the node reported shows there by the next rebuild.
    const loaded = async (): Promise<string[] | false> => {
      const row = json<{ node_id: string; models: string[] }[]>(await orion(['nodes', '--json'])).find((x) => x.node_id === 'pi-8g');
      return row?.models.includes('llama3.2:3b') === true && row.models;
    };
    expect(await waitFor('the bridge to show llama3.2:3b loaded on pi-8g', loaded, 10_000, 300)).toContain('llama3.2:3b');
  }, 60_000);

  it('without --node the bridge chooses; --json says where and whether the node reports it', async () => {
    const r = await orion(['preload', 'gemma3:1b', '--json'], { timeoutMs: 40_000 });
    expect(r.code, r.err).toBe(0);
    expect(json<Record<string, unknown>>(r)).toMatchObject({ model: 'gemma3:1b', routing: 'sticky', reported: true });
  }, 45_000);

  it('refuses a node that is not alive', async () => {
    const r = await orion(['preload', 'gemma3:1b', '--node', 'pi-nope']);
    expect(r.code).toBe(2);
    expect(r.err).toContain('pi-nope is not alive');
  });
});

describe('orion tail', () => {
  it('follows the answers on the reply stream as they come', async () => {
    const tailing = orion(['tail', '--count', '2'], { timeoutMs: 40_000 });
    // Once its connection is open it takes its place at the end of the stream, then reads on:
    // send when that connection is reading (its last command an XREAD), not before.
    const followLine = async (): Promise<string | undefined> => String(await world.admin.client('LIST')).split('\n').find((l) => l.includes('name=orion-cli-follow'));
    await waitFor('tail reading the stream', async () => / cmd=xread( |$)/.test((await followLine()) ?? ''), 20_000, 50);
    await world.send([
      { request_id: 'cli-tail-1', model: 'gemma3:1b', prompt: 'x', options: { num_predict: 3 } },
      { request_id: 'cli-tail-2', model: 'no-such-model', prompt: 'x' },
    ]);
    const r = await tailing;
    expect(r.code, r.err).toBe(0);
    const lines = r.out.trim().split('\n').sort();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^\d\d:\d\d:\d\d cli-tail-1 gemma3:1b on pi-\d+g \((sticky|fallback), 3 tokens, .+\) ".+"$/);
    expect(lines[1]).toMatch(/^\d\d:\d\d:\d\d cli-tail-2 no-such-model ERROR model_not_found: /);
  }, 45_000);
});

describe('orion deadletter, validate and acl', () => {
  it('deadletter shows what could not be served; validate checks a file; acl prints a rule', async () => {
    const dl = await orion(['deadletter', '--json', '--count', '50']);
    expect(dl.out).toContain('"error_code":"model_not_found"');
    const dir = mkdtempSync(join(tmpdir(), 'orion-cli-'));
    writeFileSync(join(dir, 'good.json'), JSON.stringify({ request_id: 'r-1', model: 'gemma3:1b', prompt: 'x' }));
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ request_id: 'r-1', prompt: 'x' }));
    expect(json<Record<string, unknown>>(await orion(['validate', join(dir, 'good.json'), '--json']))).toMatchObject({ valid: true });
    const bad = await orion(['validate', join(dir, 'bad.json')]);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('invalid');
    const a = json<{ user: string; rule: string }>(await orion(['acl', '--role', 'worker', '--node-id', 'pi-8g', '--password', 'pw', '--json']));
    expect(a.user).toBe('orion-worker-pi-8g');
    expect(a.rule).toContain('ACL SETUSER orion-worker-pi-8g');
  });
});

describe('orion forget', () => {
  it('refuses a live node; forgets a dead one, its queues with it, in the registry and Bull Board', async () => {
    const live = await orion(['forget', 'pi-8g']);
    expect(live.code).toBe(1);
    expect(live.err).toContain('pi-8g is alive');
    await workers['pi-8g']!.kill('SIGKILL');
    await waitFor('pi-8g stale', async () => (await nodeState('pi-8g')) === 'stale', 20_000, 200);
    // forget goes by the TTL key, which lapses 15 s after the last write; the bridge may call the
    // node stale a moment before (by last_seen, taken just before that write).
    await waitFor('pi-8g TTL key gone', async () => (await world.admin.exists(world.n.healthKey('pi-8g'))) === 0, 20_000, 200);
    const r = await orion(['forget', 'pi-8g']);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('pi-8g forgotten');
    await waitFor('pi-8g gone from /nodes', async () => (await nodeState('pi-8g')) === undefined, 10_000, 200);
    const base = env['ORION_ROUTER_URL'];
    const board = await waitFor('pi-8g gone from Bull Board', async () => {
      const body = (await (await fetch(`${base}/admin/queues/api/queues`)).json()) as { queues: { name: string }[] };
      const names = body.queues.map((q) => q.name);
      return names.some((q) => q.endsWith(':pi-16g')) && !names.some((q) => q.endsWith(':pi-8g')) && names;
    }, 10_000, 300);
    expect(board.length).toBeGreaterThan(0);
    expect((await orion(['forget', 'pi-8g'])).err).toContain('not in the registry');
  }, 45_000);
});
