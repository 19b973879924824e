import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/lib/errors.js';
import { loadSimConfig } from '../../src/simulator/config.js';

const load = (argv: string[], env: Record<string, string> = {}, files: Record<string, string> = {}) =>
  loadSimConfig({
    argv,
    env,
    readFile: (p) => {
      const text = files[p];
      if (text === undefined) throw new Error(`ENOENT: no such file '${p}'`);
      return text;
    },
  });

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('orion-ollama-sim configuration', () => {
  it('runs one pi5-8g node on 11434 by default', () => {
    const { nodes, logLevel } = load([]);
    expect(nodes).toHaveLength(1);
    expect(nodes[0]).toMatchObject({ id: 'pi5-8g', profile: 'pi5-8g', port: 11434, host: '127.0.0.1', speed: 1, numParallel: 1, maxLoadedModels: 3, maxQueue: 512, keepAlive: '5m' });
    expect(logLevel).toBe('info');
  });

  it('takes the single-node flags in both spellings', () => {
    const { nodes } = load(['--port', '0', '--profile=pi5-16g', '--speed', '100', '--loaded', 'llama3.2:3b,gemma3:1b', '--node-id', 'pi-16g']);
    expect(nodes[0]).toMatchObject({ id: 'pi-16g', profile: 'pi5-16g', port: 0, speed: 100, loaded: ['llama3.2:3b', 'gemma3:1b'] });
  });

  it('runs one node per repeated --node flag, each with its own file roots', () => {
    const { nodes } = load(['--node', 'pi-16g:pi5-16g:11435', '--node=pi-8g:pi5-8g:11436', '--sys-root', '/tmp/s', '--speed', '10']);
    expect(nodes.map((n) => [n.id, n.profile, n.port])).toEqual([
      ['pi-16g', 'pi5-16g', 11435],
      ['pi-8g', 'pi5-8g', 11436],
    ]);
    expect(nodes[1]).toMatchObject({ sysRoot: '/tmp/s/pi-8g', speed: 10 });
    expect(nodes[1]!.procRoot).toBeUndefined();
  });

  it('reads ORION_SIM_* twins, and OLLAMA_* when the twin is unset', () => {
    const { nodes } = load([], { ORION_SIM_NODES: 'a:pi5-4g:0, b:pi5-8g:0', OLLAMA_NUM_PARALLEL: '2', OLLAMA_MAX_QUEUE: '5', ORION_SIM_MAX_QUEUE: '7', OLLAMA_KEEP_ALIVE: '-1' });
    expect(nodes.map((n) => n.id)).toEqual(['a', 'b']);
    expect(nodes[0]).toMatchObject({ numParallel: 2, maxQueue: 7, keepAlive: '-1' });
  });

  it('prefers a flag to its env twin', () => {
    expect(load(['--speed', '5'], { ORION_SIM_SPEED: '50' }).nodes[0]!.speed).toBe(5);
  });

  it('reads nodes from a JSON file; node fields beat flags, flags beat file defaults', () => {
    const file = JSON.stringify({
      speed: 20,
      numParallel: 4,
      nodes: [
        { id: 'pi-16g', profile: 'pi5-16g', port: 0, numParallel: 2 },
        { id: 'pi-4g', profile: 'pi5-4g', port: 0, faults: { errorRate: 0.5 } },
      ],
    });
    const { nodes } = load(['--config', '/c.json', '--speed', '100'], {}, { '/c.json': file });
    expect(nodes[0]).toMatchObject({ id: 'pi-16g', speed: 100, numParallel: 2 });
    expect(nodes[1]).toMatchObject({ id: 'pi-4g', speed: 100, numParallel: 4, faults: { errorRate: 0.5 } });
  });

  it('turns thermal flags into thermal overrides and faults JSON into faults', () => {
    const { nodes } = load(['--ambient-temp', '40', '--max-temp', '90', '--faults', '{"fail500":true}']);
    expect(nodes[0]).toMatchObject({ thermal: { ambientC: 40, maxC: 90 }, faults: { fail500: true } });
  });

  it('reports every problem at once', () => {
    const problems = problemsOf(() => load(['--node', 'bad', '--speed', 'x', '--profile', 'pi9', '--keep-alive', 'soon', '--faults', '{"hang":1}', '--nope', '1']));
    expect(problems.join('\n')).toMatch(/--node 'bad'/);
    expect(problems.join('\n')).toMatch(/--speed 'x'/);
    expect(problems.join('\n')).toMatch(/unknown profile 'pi9'/);
    expect(problems.join('\n')).toMatch(/--keep-alive 'soon'/);
    expect(problems.join('\n')).toMatch(/hang must be true or false/);
    expect(problems.join('\n')).toMatch(/unknown flag --nope/);
  });

  it('refuses duplicate node ids and bad config files', () => {
    expect(problemsOf(() => load(['--node', 'a:pi5-8g:0', '--node', 'a:pi5-4g:0']))).toEqual(["node id 'a' appears twice"]);
    expect(problemsOf(() => load(['--config', '/missing.json']))[0]).toMatch(/--config \/missing.json: ENOENT/);
    const bad = JSON.stringify({ nodes: [{ id: 'x y', profile: 'pi0', port: 70000, color: 'red' }] });
    expect(problemsOf(() => load(['--config', '/b.json'], {}, { '/b.json': bad }))).toHaveLength(4);
  });

  it('parses node specs given with --node', () => {
    expect(load(['--node', 'pi-8g:pi5-8g:11436']).nodes[0]).toMatchObject({ id: 'pi-8g', profile: 'pi5-8g', port: 11436 });
    expect(problemsOf(() => load(['--node', 'pi-8g:pi5-8g'])).join('\n')).toContain('is not id:profile:port');
    expect(problemsOf(() => load(['--node', 'pi-8g:pi5-2g:1'])).join('\n')).toContain("unknown profile 'pi5-2g'");
  });
});
