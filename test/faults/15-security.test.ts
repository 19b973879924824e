import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aclRules } from '../../src/lib/acl.js';
import { freePort } from '../helpers/redis.js';
import { BIN, requireBuilt, report, startProc, waitFor, withDump, World, type Proc } from './harness.js';

requireBuilt();

/** Figures of the row, filled by each part; reported by the last. */
const figures: Record<string, string | number> = {};

/** Replace the world's admin connection (the default one knows neither the password nor TLS). */
function adminWith(w: World, opts: RedisOptions): Redis {
  w.admin.disconnect();
  w.admin = new Redis({ host: '127.0.0.1', port: w.redis.port, maxRetriesPerRequest: null, retryStrategy: () => 100, ...opts });
  w.admin.on('error', () => undefined);
  return w.admin;
}

/** Every line a program wrote, as one text. */
const everything = (p: Proc): string => p.output.join('\n');

/** Failed AUTH attempts Redis has logged for a user (ACL LOG entries of reason auth, their counts summed). */
async function authFailures(admin: Redis, user: string): Promise<number> {
  const entries = (await admin.call('ACL', 'LOG')) as unknown[][];
  let total = 0;
  for (const e of entries) {
    const f = new Map<string, string>();
    for (let i = 0; i + 1 < e.length; i += 2) f.set(String(e[i]), String(e[i + 1]));
    if (f.get('reason') === 'auth' && f.get('username') === user) total += Number(f.get('count'));
  }
  return total;
}

/**
 * A throwaway CA and a server certificate for 127.0.0.1 signed by it. Throws, saying why, when
 * openssl cannot be run: the TLS part needs it and is not skipped without it.
 */
function makeCerts(dir: string): { ca: string; cert: string; key: string } {
  const ssl = (...args: string[]): void => void execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  try {
    ssl('version');
  } catch (err) {
    throw new Error(`row 15's TLS part makes its throwaway CA with openssl, which cannot be run here (${(err as Error).message}): install openssl`);
  }
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-days', '1', '-subj', '/CN=orion fault-suite CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', 'ca.key', '-out', 'ca.pem');
  ssl('req', ...ec, '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-out', 'server.pem', '-extfile', 'ext.cnf');
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
}

describe('row 15: security', () => {
  describe('Redis with a password and least-privilege ACL users', () => {
    const ADMIN_PW = 'admin-pw-row15';
    const SECRET = { bridge: 'bridge-pw-row15', worker: 'worker-pw-row15', brain: 'brain-pw-row15' };
    let w: World;
    beforeAll(async () => {
      w = await new World({ redis: { args: ['--requirepass', ADMIN_PW] }, nodes: [{ id: 'pi-a' }, { id: 'pi-b' }], speed: 200, label: 'row15' }).start();
      const admin = adminWith(w, { password: ADMIN_PW });
      await admin.call('ACL', 'SETUSER', 'orion-bridge', ...aclRules(w.n, { role: 'bridge' }, SECRET.bridge));
      await admin.call('ACL', 'SETUSER', 'orion-worker-pi-a', ...aclRules(w.n, { role: 'worker', nodeId: 'pi-a' }, SECRET.worker));
      await admin.call('ACL', 'SETUSER', 'orion-brain', ...aclRules(w.n, { role: 'brain' }, SECRET.brain));
      await admin.call('ACL', 'LOG', 'RESET');
    });
    afterAll(async () => {
      await w?.close();
    });

    it('runs the bridge and a worker as their ACL users: a request the Brain user sends is answered, nothing refused', async () => {
      w.startWorker('pi-a', ['--redis-username', 'orion-worker-pi-a', '--redis-password', SECRET.worker]);
      // The bridge's credentials from the environment twins.
      w.startBridge('bridge-a', [], { ORION_REDIS_USERNAME: 'orion-bridge', ORION_REDIS_PASSWORD: SECRET.bridge });
      const brain = new Redis({ host: '127.0.0.1', port: w.redis.port, username: 'orion-brain', password: SECRET.brain });
      try {
        await withDump(w, async () => {
          await w.healthy('pi-a');
          const reply = `${w.n.responses}:brain`;
          await brain.xadd(w.n.requests, '*', 'data', JSON.stringify({ request_id: 'r15-acl', model: 'gemma3:1b', prompt: 'hello', reply_to: reply }));
          const answers = await w.allAnswered(['r15-acl'], 15_000, reply);
          expect(answers.get('r15-acl')![0]).toMatchObject({ node_id: 'pi-a', done: true });
          expect(answers.get('r15-acl')![0]!.error).toBeUndefined();
          const refused = ((await w.admin.call('ACL', 'LOG')) as unknown[][]).map((e) => e.map(String).join(' '));
          expect(refused).toEqual([]);
        });
      } finally {
        brain.disconnect();
      }
      figures['ACL users (bridge, worker, Brain) with requirepass'] = 'request answered, ACL LOG empty';
    });

    it('says clearly that a wrong password was refused, and never prints it', async () => {
      const wrong = { flag: 'Wr0ng-flag-pw-4417', env: 'Wr0ng-env-pw-8821', url: 'Wr0ng-url-pw-1937' };
      const procs = [
        w.startWorker('pi-b', ['--redis-username', 'orion-worker-pi-a', '--redis-password', wrong.flag]),
        w.startBridge('bridge-wrong-env', [], { ORION_REDIS_USERNAME: 'orion-bridge', ORION_REDIS_PASSWORD: wrong.env }),
        w.startBridge('bridge-wrong-url', ['--redis-addr', `redis://orion-bridge:${wrong.url}@127.0.0.1:${w.redis.port}`]),
      ];
      await withDump(w, async () => {
        for (const p of procs) {
          await waitFor(`${p.name} to report the refused credentials`, () => p.logs(/^redis refused the credentials: check --redis-username and --redis-password/).some((o) => o['level'] === 'error' && /WRONGPASS/.test(String(o['err']))), 15_000);
        }
        // Many refused attempts later (counted by Redis): still no password in any line, no flood.
        await waitFor(
          'the programs to have retried with the wrong passwords many times',
          async () => (await authFailures(w.admin, 'orion-worker-pi-a')) >= 10 && (await authFailures(w.admin, 'orion-bridge')) >= 20,
          30_000,
        );
        for (const p of procs) {
          for (const secret of Object.values(wrong)) expect(everything(p), p.name).not.toContain(secret);
          expect(p.output.length, `${p.name} wrote ${p.output.length} lines`).toBeLessThan(30);
        }
      });
      figures['wrong password (flag, env, URL)'] = `logged "${String(procs[0]!.logs(/^redis refused the credentials/)[0]?.['msg'])}" (${String(procs[0]!.logs(/^redis refused the credentials/)[0]?.['err']).slice(0, 9)}); the password in no line`;
      for (const p of procs) await p.kill();
    });
  });

  describe('TLS to Redis (throwaway CA and certificate from openssl)', () => {
    let w: World;
    let dir: string;
    let ca: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'orion-tls-'));
      const certs = makeCerts(dir);
      ca = certs.ca;
      const port = await freePort();
      const tls = ['--tls-port', String(port), '--port', '0', '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no'];
      w = await new World({ redis: { port, args: tls }, nodes: [{ id: 'pi-a' }], speed: 200, label: 'row15tls' }).start();
      adminWith(w, { tls: { ca: execFileSync('cat', [ca]) } });
    });
    afterAll(async () => {
      await w?.close();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('serves a request with the worker on rediss:// and the bridge on --redis-tls host:port', async () => {
      const procs = [
        w.startWorker('pi-a', ['--redis-addr', `rediss://127.0.0.1:${w.redis.port}`, '--redis-tls-ca', ca]),
        w.startBridge('bridge-a', ['--redis-tls', '--redis-tls-ca', ca]),
      ];
      await withDump(w, async () => {
        await w.healthy('pi-a');
        await w.send([{ request_id: 'r15-tls' }]);
        const answers = await w.allAnswered(['r15-tls'], 15_000);
        expect(answers.get('r15-tls')![0]).toMatchObject({ node_id: 'pi-a', done: true });
        expect(answers.get('r15-tls')![0]!.error).toBeUndefined();
        for (const p of procs) expect(p.output.filter((l) => !l.startsWith('{')), `${p.name}: lines that are not log records`).toEqual([]);
      });
      figures['TLS (rediss:// + CA; --redis-tls + host:port + CA)'] = 'request answered';
    });
  });

  describe('node ids', () => {
    it.each([
      ['a colon', 'a:b'],
      ['65 characters', 'x'.repeat(65)],
    ])('the built worker refuses one with %s: exit code 2 and a clear message', async (_what, id) => {
      const p = startProc(`worker ${id.slice(0, 10)}`, BIN.worker, ['--node-id', id, '--redis-addr', '127.0.0.1:1', '--http-port', '0']);
      const { code } = await p.exited;
      expect(code).toBe(2);
      await waitFor('the message', () => /--node-id '.+': a node id is 1-64 characters of \[A-Za-z0-9._-\]/.test(everything(p)), 2000);
      figures[`--node-id with ${_what}`] = `exit ${code}, "${/a node id is [^\n]*/.exec(everything(p))?.[0] ?? ''}"`;
    });

  });

  // Runs last: every part above must have passed and said what it measured (a part that was
  // skipped or stopped half-way leaves its figure out, and the row is not reported as whole).
  it('every part passed and recorded its figure', () => {
    expect(Object.keys(figures).sort()).toEqual(
      [
        'ACL users (bridge, worker, Brain) with requirepass',
        'wrong password (flag, env, URL)',
        'TLS (rediss:// + CA; --redis-tls + host:port + CA)',
        '--node-id with a colon',
        '--node-id with 65 characters',
      ].sort(),
    );
    expect(figures['ACL users (bridge, worker, Brain) with requirepass']).toBe('request answered, ACL LOG empty');
    expect(figures['TLS (rediss:// + CA; --redis-tls + host:port + CA)']).toBe('request answered');
    expect(figures['wrong password (flag, env, URL)']).toMatch(/^logged "redis refused the credentials: .*" \(WRONGPASS\); the password in no line$/);
    for (const what of ['a colon', '65 characters']) {
      expect(figures[`--node-id with ${what}`]).toMatch(/^exit 2, "a node id is 1-64 characters of \[A-Za-z0-9._-\]/);
    }
    report({ row: 15, title: 'Security: password and ACL users, wrong password, TLS, bad node ids', figures });
  });
});
