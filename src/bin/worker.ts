#!/usr/bin/env node
/** orion-inference-worker: flags/env -> config -> createWorker -> signals. */
import { helpText, parseArgv } from '../config/options.js';
import { loadWorkerConfig, workerOptions } from '../config/worker.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { VERSION } from '../lib/version.js';
import { createWorker } from '../worker/worker.js';

const { flags, positional } = parseArgv(process.argv.slice(2), workerOptions);
if (flags['help']) {
  process.stdout.write(helpText('orion-inference-worker', 'runs this node\'s inference jobs on the local Ollama', workerOptions));
  process.exit(0);
}
if (flags['version']) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}

try {
  const config = loadWorkerConfig({ flags, positional, env: process.env });
  const log = createLogger({ level: config.logLevel, base: { service: 'orion-inference-worker' } });
  // Last line of defence: a stray rejection is logged, never allowed to stop the worker.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const worker = await createWorker(config, { log });
  let signals = 0;
  // First signal: drain. Second: abort running generations (handed back to the bridge). Third: exit now.
  const stop = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 2) process.exit(1);
    log.info({ signal }, signals === 1 ? 'stopping: draining running jobs (signal again to abort them)' : 'aborting running jobs');
    void worker.close({ force: signals > 1 }).then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
} catch (err) {
  if (err instanceof ConfigError) {
    for (const p of err.problems) console.error(`orion-inference-worker: ${p}`);
    process.exit(2);
  }
  console.error('orion-inference-worker: failed to start:', err instanceof Error ? err.message : err);
  process.exit(1);
}
