#!/usr/bin/env node
/** orion-inference-gateway: flags/env -> config -> createGateway -> signals. */
import { gatewayOptions, loadGatewayConfig } from '../config/gateway.js';
import { helpText, parseArgv } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { createLogger } from '../lib/logger.js';
import { VERSION } from '../lib/version.js';
import { createGateway, GATEWAY_SERVICE } from '../gateway/gateway.js';

const { flags, positional } = parseArgv(process.argv.slice(2), gatewayOptions);
if (flags['help']) {
  process.stdout.write(helpText(GATEWAY_SERVICE, 'OpenAI- and Ollama-compatible HTTP in front of the ORION bus', gatewayOptions));
  process.exit(0);
}
if (flags['version']) {
  process.stdout.write(`${VERSION}\n`);
  process.exit(0);
}

try {
  const config = loadGatewayConfig({ flags, positional, env: process.env });
  const log = createLogger({ level: config.logLevel, base: { service: GATEWAY_SERVICE } });
  // Last line of defence: a stray rejection is logged, never allowed to stop the gateway.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  const gateway = await createGateway(config, { log });
  const stop = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'stopping: finishing the calls in hand');
    void gateway.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
} catch (err) {
  if (err instanceof ConfigError) {
    for (const p of err.problems) console.error(`${GATEWAY_SERVICE}: ${p}`);
    process.exit(2);
  }
  console.error(`${GATEWAY_SERVICE}: failed to start:`, err instanceof Error ? err.message : err);
  process.exit(1);
}
