import { describe, expect, it } from 'vitest';
import { NO_FAULTS, parseFaults } from '../../src/simulator/faults.js';
import { DurationError, OLLAMA_ERRORS, normalizeModelName, parseKeepAlive, modelKey } from '../../src/simulator/wire.js';

describe('model names follow Ollama', () => {
  it.each([
    ['llama3', 'llama3:latest'],
    ['llama3:latest', 'llama3:latest'],
    ['gemma3:1b', 'gemma3:1b'],
    ['  gemma3:1b ', 'gemma3:1b'],
    ['models.example.net/library/gemma3:1b', 'gemma3:1b'],
    ['models.example.net/someone/custom', 'models.example.net/someone/custom:latest'],
    ['library/tinyllama', 'tinyllama:latest'],
    ['someone/custom', 'someone/custom:latest'],
  ])('%s is %s', (raw, want) => {
    expect(normalizeModelName(raw)).toBe(want);
  });

  it('treats a name without a tag and with :latest as the same model, ignoring case', () => {
    expect(modelKey('llama3')).toBe(modelKey('llama3:latest'));
    expect(modelKey('Gemma3:1B')).toBe(modelKey('gemma3:1b'));
    expect(modelKey('gemma3:1b')).not.toBe(modelKey('gemma3:4b'));
  });
});

describe('keep_alive is read the way Ollama reads it', () => {
  it.each([
    [300, 300_000],
    [0, 0],
    [1.9, 1_000],
    [-1, -1],
    [-5, -1],
    ['5m', 300_000],
    ['30s', 30_000],
    ['1h', 3_600_000],
    ['1h30m', 5_400_000],
    ['1.5h', 5_400_000],
    ['250ms', 250],
    ['0', 0],
    ['-1', -1],
    ['-1m', -1],
    ['300', 300_000],
  ] as Array<[string | number, number]>)('%j is %d ms', (raw, ms) => {
    expect(parseKeepAlive(raw)).toBe(ms);
  });

  it('means "not given" for undefined and null', () => {
    expect(parseKeepAlive(undefined)).toBeUndefined();
    expect(parseKeepAlive(null)).toBeUndefined();
  });

  it("refuses what Go's time.ParseDuration refuses, in Go's words", () => {
    expect(() => parseKeepAlive('soon')).toThrow(new DurationError('time: invalid duration "soon"'));
    expect(() => parseKeepAlive('5 minutes')).toThrow(DurationError);
    expect(() => parseKeepAlive(true)).toThrow("Unsupported type: 'boolean'");
    expect(() => parseKeepAlive('1d')).toThrow(DurationError);
  });
});

describe('wire texts', () => {
  it('keeps the two spaces of the busy message', () => {
    expect(OLLAMA_ERRORS.busy).toBe('server busy, please try again.  maximum pending requests exceeded');
  });

  it('quotes names like Ollama does', () => {
    expect(OLLAMA_ERRORS.notFound('x:1b')).toBe("model 'x:1b' not found");
    expect(OLLAMA_ERRORS.notFoundTryPulling('x:1b')).toBe('model "x:1b" not found, try pulling it first');
  });

  it('prints memory like format.HumanBytes2', () => {
    expect(OLLAMA_ERRORS.tooLarge(512, 0)).toBe('model requires more system memory (512 B) than is available (0 B)');
    expect(OLLAMA_ERRORS.tooLarge(5_800_000_000, 3_691_489_920)).toBe(
      'model requires more system memory (5.4 GiB) than is available (3.4 GiB)',
    );
  });
});

describe('fault updates are validated', () => {
  it('accepts a partial update and names only what it changes', () => {
    expect(parseFaults({ errorRate: 0.25, hang: true })).toEqual({ errorRate: 0.25, hang: true });
    expect(parseFaults({})).toEqual({});
    expect(parseFaults({ ...NO_FAULTS })).toEqual(NO_FAULTS);
  });

  it('accepts a refusal for a number of milliseconds', () => {
    expect(parseFaults({ refuseConnections: 500 })).toEqual({ refuseConnections: 500 });
  });

  it('reports every bad knob at once', () => {
    let message = '';
    try {
      parseFaults({ errorRate: 2, hang: 'yes', cutStreamAfter: -1, refuseConnections: 0, scope: 'some', bogus: 1 });
    } catch (err) {
      message = (err as Error).message;
    }
    for (const part of ['errorRate', 'hang', 'cutStreamAfter', 'refuseConnections', 'scope', "unknown fault 'bogus'"]) {
      expect(message).toContain(part);
    }
  });

  it('refuses a body that is not an object', () => {
    expect(() => parseFaults([1])).toThrow('faults must be a JSON object');
  });
});
