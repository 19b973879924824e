/**
 * `orion` commands that need no Redis, run in-process through runCli: the flags and their
 * ORION_* twins (through `orion acl`: a flag wins, the environment fills what is not given),
 * and `orion validate` on every example under bus/contracts/examples.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../../src/cli/main.js';
import { projectRoot } from '../../src/lib/paths.js';

interface Run {
  code: number;
  out: string;
  err: string;
}

async function orion(argv: string[], env: Record<string, string>): Promise<Run> {
  let out = '';
  let err = '';
  const code = await runCli(argv, { env, out: (t) => (out += t), err: (t) => (err += t), tty: false, signal: new AbortController().signal });
  return { code, out, err };
}

describe('ORION_* twins of the CLI flags', () => {
  it('fills a flag that is not given from ORION_<FLAG>, a dash becoming an underscore', async () => {
    const r = await orion(['acl'], { ORION_ROLE: 'worker', ORION_NODE_ID: 'pi-8g', ORION_PASSWORD: 'pw', ORION_JSON: 'true' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ user: 'orion-worker-pi-8g' });
  });

  it('keeps a flag given on the command line over its twin', async () => {
    const r = await orion(['acl', '--node-id', 'pi-16g', '--json'], { ORION_ROLE: 'worker', ORION_NODE_ID: 'pi-8g', ORION_PASSWORD: 'pw', ORION_JSON: 'off' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ user: 'orion-worker-pi-16g' });
  });

  it('reads on/off words for a boolean, ignores an empty twin, never reads --help from the environment', async () => {
    const env = { ORION_ROLE: 'bridge', ORION_PASSWORD: 'pw', ORION_USER: '', ORION_HELP: '1' };
    const plain = await orion(['acl'], { ...env, ORION_JSON: 'off' });
    expect(plain.code).toBe(0);
    expect(plain.out).toMatch(/^ACL SETUSER orion-bridge /);
    const on = await orion(['acl'], { ...env, ORION_JSON: 'yes' });
    expect(JSON.parse(on.out)).toMatchObject({ user: 'orion-bridge' });
  });

  it('refuses a boolean twin it cannot read, naming it', async () => {
    const r = await orion(['acl', '--role', 'bridge', '--password', 'pw'], { ORION_JSON: 'maybe' });
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain("ORION_JSON='maybe': must be true or false");
  });
});

describe('orion validate', () => {
  const examples = join(projectRoot(), 'bus', 'contracts', 'examples');

  it('judges every example of each kind as its folder says, request by default', async () => {
    for (const kind of ['request', 'response', 'health'] as const) {
      for (const verdict of ['valid', 'invalid'] as const) {
        const dir = join(examples, kind, verdict);
        const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
        expect(files.length, `${kind}/${verdict}`).toBeGreaterThan(0);
        for (const f of files) {
          const kindArgs = kind === 'request' ? [] : ['--kind', kind];
          const r = await orion(['validate', join(dir, f), ...kindArgs, '--json'], {});
          expect(r.code, `${kind}/${verdict}/${f}: ${r.out}${r.err}`).toBe(verdict === 'valid' ? 0 : 1);
          expect(JSON.parse(r.out), `${kind}/${verdict}/${f}`).toMatchObject({ valid: verdict === 'valid' });
        }
      }
    }
  });

  it('says why a response is invalid, and refuses a kind it does not know', async () => {
    const dir = join(examples, 'response', 'invalid');
    const file = join(dir, readdirSync(dir).filter((f) => f.endsWith('.json'))[0]!);
    const r = await orion(['validate', file, '--kind', 'response'], {});
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/ invalid: .+/);
    const asRequest = await orion(['validate', join(examples, 'response', 'valid', 'final.json')], {});
    expect(asRequest.code).toBe(1);
    const unknown = await orion(['validate', file, '--kind', 'answer'], {});
    expect(unknown.code).toBe(2);
    expect(unknown.err).toContain("--kind 'answer': must be request, response or health");
  });
});
