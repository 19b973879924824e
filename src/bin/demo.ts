#!/usr/bin/env node
/** `npm run demo`: the whole ORION system on simulated Pis, with a live view and a summary. */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { helpText, parseArgv, parsers, resolveOptions } from '../config/options.js';
import { DEFAULT_PREFIX } from '../lib/names.js';
import { ConfigError } from '../lib/errors.js';
import { DEMO_PREFIX, runDemo } from '../demo/demo.js';
import { styleFor } from '../demo/view.js';

const options = {
  duration: { flag: 'duration', env: 'ORION_DEMO_DURATION', description: 'How long the Brain sends requests', default: 60_000, defaultText: '60s', parse: parsers.duration(1000) },
  redisAddr: { flag: 'redis-addr', env: 'ORION_REDIS_ADDR', description: 'Redis to use if it answers (else one is started)', default: 'localhost:6379', defaultText: 'localhost:6379', parse: parsers.string },
  speed: { flag: 'speed', env: 'ORION_DEMO_SPEED', description: 'Simulated time runs this many times faster', default: 20, defaultText: '20', parse: parsers.number(1, 1000) },
  rate: { flag: 'rate', env: 'ORION_DEMO_RATE', description: 'Requests per second from the scripted Brain', default: 3, defaultText: '3', parse: parsers.number(0.1, 500) },
  prefix: { flag: 'stream-prefix', env: 'ORION_DEMO_STREAM_PREFIX', description: `Redis stream prefix (default ${DEFAULT_PREFIX} on a Redis the demo starts, ${DEMO_PREFIX} on one it finds, removed at the end)`, defaultText: 'see description', parse: parsers.string },
  plain: { flag: 'plain', env: 'ORION_DEMO_PLAIN', description: 'Print line by line instead of redrawing (default when not a terminal)', default: false, defaultText: 'false', boolean: true, parse: parsers.bool },
  summaryJson: { flag: 'summary-json', env: 'ORION_DEMO_SUMMARY_JSON', description: 'Also write the summary as JSON to this file', default: '', defaultText: '""', parse: parsers.string },
  logFile: { flag: 'log-file', env: 'ORION_DEMO_LOG_FILE', description: 'Where the components\' JSON logs go', default: '.orion-demo/demo.log', defaultText: '.orion-demo/demo.log', parse: parsers.string },
};

const { flags, positional } = parseArgv(process.argv.slice(2), options);
if (flags['help']) {
  process.stdout.write(helpText('npm run demo --', 'the whole ORION system on simulated Pis, with a live view and a summary (colour on a terminal unless NO_COLOR is set)', options));
  process.exit(0);
}
try {
  const cfg = resolveOptions(options, { flags, positional, env: process.env });
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  // Output piped into something that closed (e.g. `| head`): stop cleanly rather than die mid-way.
  process.stdout.on('error', () => ac.abort());
  const summary = await runDemo({
    durationS: cfg.duration / 1000,
    redisAddr: cfg.redisAddr,
    speed: cfg.speed,
    rate: cfg.rate,
    prefix: cfg.prefix,
    live: !cfg.plain && process.stdout.isTTY === true,
    style: styleFor(process.stdout.isTTY === true),
    size: () => ({ columns: process.stdout.columns || 80, rows: process.stdout.rows || 24 }),
    logFile: resolve(cfg.logFile),
    out: (t) => process.stdout.write(t),
    signal: ac.signal,
  });
  if (cfg.summaryJson) writeFileSync(cfg.summaryJson, JSON.stringify(summary, null, 2));
  process.exit(summary.answered > 0 ? 0 : 1);
} catch (err) {
  console.error(err instanceof ConfigError ? err.problems.join('\n') : `demo: ${(err as Error).message}`);
  process.exit(err instanceof ConfigError ? 2 : 1);
}
