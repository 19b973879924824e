#!/usr/bin/env node
/** orion-inference-router (the bridge): flags/env -> config -> createBridge -> signals. */
import { helpText, parseArgv } from '../config/options.js';
import { loadRouterConfig, routerOptions } from '../config/router.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { VERSION } from '../lib/version.js';
import { SERVICE } from '../router/http.js';
import { createBridge } from '../router/bridge.js';

const { flags, positional } = parseArgv(process.argv.slice(2), routerOptions);
if (flags['help']) {
  process.stdout.write(helpText(SERVICE, 'routes inference requests to node queues (sticky, health-aware)', routerOptions));
  process.exit(0);
}
if (flags['version']) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}

try {
  const config = loadRouterConfig({ flags, positional, env: process.env });
  const log = createLogger({ level: config.logLevel, base: { service: SERVICE } });
  // Last line of defence: a stray rejection is logged, never allowed to stop the bridge.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const bridge = await createBridge(config, { log });
  const stop = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'stopping: finishing the batch in hand');
    void bridge.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (err) {
  if (err instanceof ConfigError) {
    for (const p of err.problems) console.error(`${SERVICE}: ${p}`);
    process.exit(2);
  }
  console.error(`${SERVICE}: failed to start:`, err instanceof Error ? err.message : err);
  process.exit(1);
}
