/**
 * A whole cluster for the gateway's tests, as real processes from dist/: the Ollama simulator
 * (one node, `pi-a`), a worker, a bridge and the gateway (with an API key), on a throwaway
 * Redis. Clients then talk to the gateway over HTTP as they would in production.
 */
import { join } from 'node:path';
import { requireBuilt } from '../helpers/built.js';
import { ROOT, World, httpPortOf, routable, startProc, waitFor, withDump, type Proc } from '../faults/harness.js';

export const GATEWAY_BIN = join(ROOT, 'dist/src/bin/gateway.js');
export const API_KEY = 'test-key-7f3a';
export const MODEL = 'gemma3:1b';

export interface GatewayWorld {
  w: World;
  gateway: Proc;
  /** `http://127.0.0.1:<port>` of the gateway. */
  url: string;
  close(): Promise<void>;
}


export async function startGatewayWorld(label: string): Promise<GatewayWorld> {
  requireBuilt(GATEWAY_BIN);
  const w = await new World({ nodes: [{ id: 'pi-a', loaded: [MODEL] }], label }).start();
  try {
    w.startWorker('pi-a');
    const bridge = w.startBridge();
    const gateway = startProc('gateway', GATEWAY_BIN, [...w.common(), '--api-key', API_KEY]);
    w.procs.add(gateway);
    await withDump(w, () => w.healthy('pi-a', 30_000));
    await withDump(w, () => routable(bridge, ['pi-a']));
    const port = await withDump(w, () =>
      waitFor('gateway port', () => {
        const line = gateway.logs(/^gateway started$/)[0];
        return typeof line?.['http_port'] === 'number' ? line['http_port'] : undefined;
      }),
    );
    const url = `http://127.0.0.1:${port}`;
    // The gateway sees the node once its registry refresh has run.
    await withDump(w, () =>
      waitFor('gateway sees pi-a', async () => {
        const res = await fetch(`${url}/health`);
        return ((await res.json()) as { eligible_nodes: number }).eligible_nodes > 0;
      }),
    );
    return { w, gateway, url, close: () => w.close() };
  } catch (err) {
    await w.close();
    throw err;
  }
}

/** The simulator's counters of `pi-a` (requests, aborted, ...). */
export async function simCounters(g: GatewayWorld): Promise<Record<string, number>> {
  const res = await fetch(`${g.w.simUrl('pi-a')}/_sim/state`);
  return ((await res.json()) as { counters: Record<string, number> }).counters;
}

export { httpPortOf, waitFor };
