#!/usr/bin/env node
/** `orion`: the operator's command line (src/cli/main.ts); here only the terminal and signals. */
import { runCli } from '../cli/main.js';

const stop = new AbortController();
// The first Ctrl-C stops the command gently (a follow ends, a wait gives up); the second at once.
process.once('SIGINT', () => {
  stop.abort();
  process.once('SIGINT', () => process.exit(130));
});
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  // `orion tail | head`: the reader went away.
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

process.exitCode = await runCli(process.argv.slice(2), {
  env: process.env,
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  tty: process.stdout.isTTY === true,
  signal: stop.signal,
});
