#!/usr/bin/env node
/** orion-ollama-sim: flags/env -> config -> simulated Ollama nodes -> signals. */
import { helpText, parseArgv } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { VERSION } from '../lib/version.js';
import { loadSimConfig, simOptions, type SimConfig } from '../simulator/config.js';
import { startSimulatorCluster } from '../simulator/index.js';

const argv = process.argv.slice(2);
const { flags } = parseArgv(argv, simOptions);
if (flags['help']) {
  process.stdout.write(helpText('orion-ollama-sim', 'Ollama API simulator of Raspberry Pi 5 nodes', simOptions));
  process.exit(0);
}
if (flags['version']) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}

let config: SimConfig;
try {
  config = loadSimConfig({ argv, env: process.env });
} catch (err) {
  const problems = err instanceof ConfigError ? err.problems : [(err as Error).message];
  console.error(`orion-ollama-sim: invalid configuration:\n  ${problems.join('\n  ')}`);
  process.exit(2);
}

const log = createLogger({ level: config.logLevel, base: { service: 'orion-ollama-sim' } });
try {
  const nodes = [];
  for (const n of config.nodes) {
    // The llama engine reports real durations: its nodes run at speed 1 with their own models.
    if (config.engine === 'llama') {
      const { createLlamaEngine } = await import('../simulator/llama/engine.js');
      nodes.push({ ...n, speed: 1, installed: undefined, loaded: undefined, engine: await createLlamaEngine({ logger: log }) });
    } else nodes.push(n);
  }
  const cluster = await startSimulatorCluster(nodes.map((n) => ({ ...n, logger: log })));
  log.info({ nodes: cluster.nodes.map((n) => ({ id: n.id, url: n.url })) }, 'simulator ready');
  const stop = (signal: string): void => {
    log.info({ signal }, 'shutting down');
    cluster.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
} catch (err) {
  log.error({ err }, 'cannot start the simulator');
  process.exit(1);
}
