import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ValidateFunction } from 'ajv';
import { describe, expect, it } from 'vitest';
import { GENERATED_FILE, SCHEMAS, generatedSource, newAjv, schemaOf } from '../../src/contracts/generate.js';
import { normalizeModel, parseRequestEntry, validateHealth, validateRequest, validateResponse } from '../../src/contracts/index.js';
import { ERROR_CODES } from '../../src/lib/errors.js';
import { names } from '../../src/lib/names.js';
import { projectRoot } from '../../src/lib/paths.js';
import { parseHealth } from '../../src/router/registry.js';
import { TYPES_FILE, typesSource } from '../../scripts/contract-types.js';
import * as generated from '../../src/contracts/validators.generated.js';

const examples = join(projectRoot(), 'bus', 'contracts', 'examples');
const validators = { request: validateRequest, response: validateResponse, health: validateHealth } as const;

describe('every example under bus/contracts/examples is judged as its folder says', () => {
  for (const kind of ['request', 'response', 'health'] as const) {
    for (const verdict of ['valid', 'invalid'] as const) {
      const dir = join(examples, kind, verdict);
      const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
      it(`${kind}/${verdict} has examples`, () => expect(files.length).toBeGreaterThan(0));
      for (const f of files) {
        it(`${kind}/${verdict}/${f} is ${verdict}`, () => {
          const r = validators[kind](JSON.parse(readFileSync(join(dir, f), 'utf8')));
          expect(r.ok, r.ok ? '' : r.message).toBe(verdict === 'valid');
        });
      }
    }
  }
});

describe('the message types generated from the schemas', () => {
  it('are up to date with bus/contracts (else: npm run gen:types)', async () => {
    expect(readFileSync(TYPES_FILE(), 'utf8') === (await typesSource()), 'src/contracts/types.generated.ts is stale: run npm run gen:types').toBe(true);
  });

  it('name the same error codes as the programs do', () => {
    const response = schemaOf('response') as { properties: { error: { properties: { code: { enum: string[] } } } } };
    expect([...response.properties.error.properties.code.enum].sort()).toEqual([...ERROR_CODES].sort());
  });
});

describe('the validators compiled ahead of time', () => {
  it('are up to date with bus/contracts (else: npm run gen:validators)', () => {
    expect(readFileSync(GENERATED_FILE(), 'utf8') === generatedSource(), 'src/contracts/validators.generated.ts is stale: run npm run gen:validators').toBe(true);
  });

  it('judge every example as Ajv compiling the schema at run time does, with the same errors', () => {
    const ajv = newAjv();
    for (const kind of SCHEMAS) {
      const live = ajv.compile(schemaOf(kind));
      for (const verdict of ['valid', 'invalid'] as const) {
        const dir = join(examples, kind, verdict);
        for (const f of readdirSync(dir).filter((x) => x.endsWith('.json'))) {
          const doc: unknown = JSON.parse(readFileSync(join(dir, f), 'utf8'));
          const ahead = (generated as unknown as Record<typeof kind, ValidateFunction>)[kind];
          const r = validators[kind](doc);
          expect(r.ok, `${kind}/${verdict}/${f}`).toBe(live(doc));
          expect(ahead(doc), `${kind}/${verdict}/${f}`).toBe(r.ok);
          if (!r.ok) expect(ahead.errors, `${kind}/${verdict}/${f}`).toEqual(live.errors);
        }
      }
    }
  });
});

describe('the refusal of a request with both or neither of prompt and messages', () => {
  const base = { request_id: 'r-1', model: 'gemma3:1b' };
  it.each([
    ['both', { ...base, prompt: 'hi', messages: [{ role: 'user', content: 'hi' }] }],
    ['neither', base],
  ])('with %s says it once, in words', (_kind, doc) => {
    const r = validateRequest(doc);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.message).toBe('(root): give exactly one of prompt, messages or input');
  });

  it('still lists the other problems of the same request', () => {
    const r = validateRequest({ ...base, prompt: 'hi', messages: [], priority: 99 });
    expect(r.ok === false && r.message).toBe('(root): give exactly one of prompt, messages or input; /priority must be <= 9');
  });
});

describe('a request stream entry becomes a request or a reasoned refusal', () => {
  const n = names('orion:inference');
  const ok = { request_id: 'r-1', model: 'gemma3:1b', prompt: 'Why is the sky blue?' };
  const entry = (doc: unknown): string[] => ['data', typeof doc === 'string' ? doc : JSON.stringify(doc)];

  it('accepts the guide\'s request', () => {
    const p = parseRequestEntry(entry(ok), n);
    expect(p).toMatchObject({ ok: true, request: ok });
  });

  it('accepts a data field that is not the first field', () => {
    expect(parseRequestEntry(['source', 'cli', ...entry(ok)], n).ok).toBe(true);
  });

  it('refuses an entry with no data field, without a request id, keeping its fields', () => {
    const p = parseRequestEntry(['payload', '{}'], n);
    expect(p).toMatchObject({ ok: false, code: 'invalid_request', original: { payload: '{}' } });
    expect(p.ok === false && p.reason).toMatch(/no 'data' field/);
    expect(p).not.toHaveProperty('requestId');
  });

  it('refuses data that is not JSON, keeping the raw text cut at 64 KiB', () => {
    const raw = '{"request_id":"r-2",' + 'x'.repeat(100_000);
    const p = parseRequestEntry(['data', raw], n);
    expect(p.ok).toBe(false);
    if (p.ok) return;
    expect(p.reason).toMatch(/not valid JSON/);
    expect(p.requestId).toBeUndefined();
    expect((p.original as string).length).toBe(64 * 1024);
  });

  it('refuses a request over 1 MiB but still knows whom to answer', () => {
    const p = parseRequestEntry(entry({ ...ok, prompt: 'x'.repeat(2 * 1024 * 1024) }), n);
    expect(p).toMatchObject({ ok: false, requestId: 'r-1' });
    expect(p.ok === false && p.reason).toMatch(/over the limit of 1048576/);
  });

  it('refuses an unknown top-level field, naming it', () => {
    const p = parseRequestEntry(entry({ ...ok, colour: 'blue' }), n);
    expect(p).toMatchObject({ ok: false, requestId: 'r-1' });
    expect(p.ok === false && p.reason).toMatch(/unknown field 'colour'/);
  });

  it('refuses a reply_to outside {p}:responses, answering on the default stream', () => {
    for (const reply_to of ['orion:inference:requests', 'orion:inference:responses:', 'other:responses:x']) {
      const p = parseRequestEntry(entry({ ...ok, reply_to }), n);
      expect(p).toMatchObject({ ok: false, requestId: 'r-1' });
      expect(p.ok === false && p.replyTo).toBeUndefined();
    }
    expect(parseRequestEntry(entry({ ...ok, reply_to: 'orion:inference:responses:brain' }), n).ok).toBe(true);
    expect(parseRequestEntry(entry({ ...ok, reply_to: 'orion:inference:responses' }), n).ok).toBe(true);
  });

  it('answers a schema-invalid request on its own reply stream when that is allowed', () => {
    const p = parseRequestEntry(entry({ ...ok, priority: 10, reply_to: 'orion:inference:responses:brain' }), n);
    expect(p).toMatchObject({ ok: false, requestId: 'r-1', replyTo: 'orion:inference:responses:brain' });
  });

  it('has no usable id when request_id is missing or breaks the pattern', () => {
    for (const doc of [{ model: 'm', prompt: 'p' }, { ...ok, request_id: 'a:b' }, { ...ok, request_id: '' }, { ...ok, request_id: 'x'.repeat(129) }, { ...ok, request_id: 7 }]) {
      const p = parseRequestEntry(entry(doc), n);
      expect(p.ok).toBe(false);
      expect(p).not.toHaveProperty('requestId');
    }
  });

  it('refuses JSON that is not an object', () => {
    for (const raw of ['[]', '"text"', 'null', '42']) expect(parseRequestEntry(['data', raw], n).ok).toBe(false);
  });
});

describe('model names follow Ollama\'s rule', () => {
  it('a name without a tag is :latest', () => {
    expect(normalizeModel('llama3')).toBe('llama3:latest');
    expect(normalizeModel('llama3:latest')).toBe('llama3:latest');
    expect(normalizeModel('gemma3:1b')).toBe('gemma3:1b');
    expect(normalizeModel('registry.local:5000/team/llama3')).toBe('registry.local:5000/team/llama3:latest');
  });
});

describe('the bridge reads health documents leniently', () => {
  const good = { node_id: 'pi-8g', cpu_percent: 45.2, ram_percent: 62.1, temp_celsius: 55, models: ['gemma3:1b'], available: true, last_seen: '2026-01-19T12:00:00Z' };
  it('takes the guide\'s document as published', () => {
    const p = parseHealth('pi-8g', JSON.stringify(good));
    expect(p).toMatchObject({ ok: true, doc: good, health: good });
  });
  it('skips what routing cannot use', () => {
    for (const raw of ['{', '[]', JSON.stringify({ ...good, ram_percent: 'lots' }), JSON.stringify({ ...good, available: 'yes' }), JSON.stringify({ ...good, last_seen: 'now' })]) {
      expect(parseHealth('pi-8g', raw).ok).toBe(false);
    }
  });
  it('takes the node id from the hash field', () => {
    const p = parseHealth('pi-16g', JSON.stringify(good));
    expect(p.ok && p.health.node_id).toBe('pi-16g');
  });
});
