/** Shared by the tests that run a whole cluster of built programs (the page, the CLI). */
import { waitFor, type Proc, type World } from '../faults/harness.js';

/**
 * The HTTP port the bridge logged once started. Patient (45 s): on a machine busy with other
 * work, starting node and the bridge's modules alone can take many seconds. On failure the
 * programs' output is in the message.
 */
export async function bridgePort(world: World, bridge: Proc): Promise<number> {
  try {
    return await waitFor('the bridge to start', () => {
      const line = bridge.logs(/^bridge started$/)[0];
      return typeof line?.['http_port'] === 'number' ? line['http_port'] : undefined;
    }, 45_000, 100);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${world.dump()}`);
  }
}
