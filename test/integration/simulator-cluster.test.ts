/** Several simulated nodes in one process, in-process and through the built bin. */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Ollama } from 'ollama';
import { beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, startSimulatorCluster } from '../../src/simulator/index.js';
import { requireBuilt } from '../helpers/built.js';

describe('a cluster of simulated nodes', () => {
  it('serves each node on its own port with its own profile', async () => {
    const cluster = await startSimulatorCluster([
      { id: 'pi-16g', profile: 'pi5-16g', speed: 100 },
      { id: 'pi-8g', profile: 'pi5-8g', speed: 100, loaded: ['gemma3:1b'] },
      { id: 'pi-4g', profile: 'pi5-4g', speed: 100 },
    ]);
    try {
      const ports = cluster.nodes.map((n) => n.port);
      expect(new Set(ports).size).toBe(3);
      const tags = async (id: string) => (await new Ollama({ host: cluster.node(id).url }).list()).models.map((m) => m.name).sort();
      expect(await tags('pi-16g')).toEqual(['gemma3:1b', 'llama3.2:3b']);
      expect(await tags('pi-4g')).toEqual(['gemma3:1b']);
      expect((await new Ollama({ host: cluster.node('pi-8g').url }).ps()).models.map((m) => m.name)).toEqual(['gemma3:1b']);
      expect((await new Ollama({ host: cluster.node('pi-16g').url }).ps()).models).toEqual([]);
      const ram = cluster.nodes.map((n) => n.node.state().ram.totalBytes);
      expect(ram[0]).toBeGreaterThan(ram[1]!);
      expect(ram[1]).toBeGreaterThan(ram[2]!);
      expect(() => cluster.node('pi-2g')).toThrow("no simulated node 'pi-2g'");
    } finally {
      await cluster.close();
      await cluster.close();
    }
  });

  it('refuses duplicate ids', async () => {
    await expect(startSimulatorCluster([{ id: 'a' }, { id: 'a' }])).rejects.toThrow("duplicate node id 'a'");
  });

  it('closes the nodes already started when one cannot start', async () => {
    const taken = await startSimulator();
    try {
      const attempt = startSimulatorCluster([
        { id: 'ok', port: 0 },
        { id: 'clash', port: taken.port },
      ]);
      await expect(attempt).rejects.toMatchObject({ code: 'EADDRINUSE' });
    } finally {
      await taken.close();
    }
  });

  it('refuses an unknown profile or a model the profile cannot run', async () => {
    await expect(startSimulator({ profile: 'pi3' })).rejects.toThrow("unknown profile 'pi3'");
    await expect(startSimulator({ installed: ['gpt-oss:120b'] })).rejects.toThrow("cannot install 'gpt-oss:120b'");
    await expect(startSimulator({ loaded: ['llama3.2:1b'] })).rejects.toThrow("cannot preload 'llama3.2:1b': not installed");
    await expect(startSimulator({ numParallel: 0 })).rejects.toThrow('numParallel must be a whole number >= 1');
  });
});

const bin = join(process.cwd(), 'dist/src/bin/sim.js');

describe('the orion-ollama-sim bin (built)', () => {
  beforeAll(() => requireBuilt(bin));
  it('starts the nodes it is given, logs JSON, and exits cleanly on SIGTERM', async () => {
    const child = spawn(process.execPath, [bin, '--node', 'pi-a:pi5-8g:0', '--node', 'pi-b:pi5-16g:0', '--speed', '100', '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      let ready: { nodes: Array<{ id: string; url: string }> } | undefined;
      for await (const line of lines) {
        const rec = JSON.parse(line) as { msg?: string; nodes?: Array<{ id: string; url: string }> };
        expect(rec).toMatchObject({ level: expect.any(String), time: expect.any(String) });
        if (rec.msg === 'simulator ready') {
          ready = rec as typeof ready;
          break;
        }
      }
      expect(ready!.nodes.map((n) => n.id)).toEqual(['pi-a', 'pi-b']);
      const res = await fetch(ready!.nodes[1]!.url);
      expect(await res.text()).toBe('Ollama is running');
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
