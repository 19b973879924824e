#!/usr/bin/env node
/** `npm run dev`: Redis (if none answers), the simulator, a worker and the bridge; Ctrl-C stops them all. */
import { helpText, parseArgv, parsers, resolveOptions } from '../config/options.js';
import { ConfigError } from '../lib/errors.js';
import { runDev } from '../dev/dev.js';

const options = {
  redisAddr: { flag: 'redis-addr', env: 'ORION_REDIS_ADDR', description: 'Redis to use if it answers (else a throwaway redis-server is started)', default: 'localhost:6379', defaultText: 'localhost:6379', parse: parsers.string },
  ollamaHost: { flag: 'ollama-host', env: 'ORION_OLLAMA_HOST', description: 'A real Ollama for the worker; unset: the simulator on :11434 (pi5-8g, gemma3:1b loaded)', default: '', defaultText: '"" (simulator)', parse: parsers.string },
  nodeId: { flag: 'node-id', env: 'ORION_NODE_ID', description: 'Node id of the worker', default: 'pi-8g', defaultText: 'pi-8g', parse: parsers.string },
};

const { flags, positional } = parseArgv(process.argv.slice(2), options);
if (flags['help']) {
  process.stdout.write(helpText('npm run dev --', 'ORION on this machine: Redis if needed, the Ollama simulator, a worker and the bridge; Ctrl-C stops them all', options));
  process.exit(0);
}
try {
  const cfg = resolveOptions(options, { flags, positional, env: process.env });
  const ac = new AbortController();
  for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => ac.abort());
  process.exitCode = await runDev({ ...cfg, out: (l) => process.stdout.write(l + '\n'), signal: ac.signal });
} catch (err) {
  console.error(err instanceof ConfigError ? err.problems.join('\n') : `dev: ${(err as Error).message}`);
  process.exitCode = err instanceof ConfigError ? 2 : 1;
}
