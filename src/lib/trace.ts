/**
 * Per-request step times for `npm run bench -- --trace` (P4's breakdown of where the added
 * latency goes). Off unless the process starts with ORION_TRACE=1; then each step writes one
 * JSON line `{"msg":"trace","request_id":...,"step":...,"t":<ms, 3 decimals>}` to stdout.
 * The time is the monotonic clock (`process.hrtime`, CLOCK_MONOTONIC on Linux), the same for
 * every process on one machine. Off, a step costs one boolean test.
 */
const TRACING = process.env['ORION_TRACE'] === '1';

export function traceStep(requestId: string, step: string): void {
  if (!TRACING) return;
  const t = (Number(process.hrtime.bigint()) / 1e6).toFixed(3);
  process.stdout.write(`{"msg":"trace","request_id":${JSON.stringify(requestId)},"step":"${step}","t":${t}}\n`);
}
