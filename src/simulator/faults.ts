/**
 * Fault knobs, settable at start (`faults` option), on the node object (`node.setFaults()`) and
 * over HTTP (`POST /_sim/faults`). A partial update changes only the knobs it names.
 */

export interface Faults {
  /** Fraction (0..1) of requests answered 500 at random (seeded). */
  errorRate: number;
  /** Answer every request 500. */
  fail500: boolean;
  /** Answer every request 503 (server busy). */
  status503: boolean;
  /** Accept requests and never answer them. */
  hang: boolean;
  /** Extra wall-clock milliseconds before each streamed chunk. */
  slowStreamMs: number;
  /** Close the connection after this many chunks, without a done object; null is off. */
  cutStreamAfter: number | null;
  /**
   * Stop listening (connections refused) and drop open connections. `true` until cleared; a
   * number refuses for that many wall-clock milliseconds, then listens again on the same port.
   */
  refuseConnections: boolean | number;
  /**
   * Which requests errorRate, fail500, status503 and hang apply to: `inference` is
   * /api/generate and /api/chat; `all` is every /api/ path (so /api/ps and /api/tags fail too).
   */
  scope: 'inference' | 'all';
}

export const NO_FAULTS: Readonly<Faults> = Object.freeze({
  errorRate: 0,
  fail500: false,
  status503: false,
  hang: false,
  slowStreamMs: 0,
  cutStreamAfter: null,
  refuseConnections: false,
  scope: 'inference',
});

/** Validate a partial update from untrusted JSON; throws an Error naming every bad knob. */
export function parseFaults(input: unknown): Partial<Faults> {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw new Error('faults must be a JSON object');
  const src = input as Record<string, unknown>;
  const out: Partial<Faults> = {};
  const problems: string[] = [];
  const bool = (k: 'fail500' | 'status503' | 'hang'): void => {
    if (!(k in src)) return;
    if (typeof src[k] === 'boolean') out[k] = src[k];
    else problems.push(`${k} must be true or false`);
  };
  bool('fail500');
  bool('status503');
  bool('hang');
  if ('errorRate' in src) {
    const v = src['errorRate'];
    if (typeof v === 'number' && v >= 0 && v <= 1) out.errorRate = v;
    else problems.push('errorRate must be a number from 0 to 1');
  }
  if ('slowStreamMs' in src) {
    const v = src['slowStreamMs'];
    if (typeof v === 'number' && v >= 0 && Number.isFinite(v)) out.slowStreamMs = v;
    else problems.push('slowStreamMs must be a number of milliseconds >= 0');
  }
  if ('cutStreamAfter' in src) {
    const v = src['cutStreamAfter'];
    if (v === null || (typeof v === 'number' && Number.isInteger(v) && v >= 0)) out.cutStreamAfter = v;
    else problems.push('cutStreamAfter must be a whole number >= 0 or null');
  }
  if ('refuseConnections' in src) {
    const v = src['refuseConnections'];
    if (typeof v === 'boolean' || (typeof v === 'number' && v > 0 && Number.isFinite(v))) out.refuseConnections = v;
    else problems.push('refuseConnections must be true, false or a number of milliseconds > 0');
  }
  if ('scope' in src) {
    const v = src['scope'];
    if (v === 'inference' || v === 'all') out.scope = v;
    else problems.push('scope must be "inference" or "all"');
  }
  const known = new Set(Object.keys(NO_FAULTS));
  for (const k of Object.keys(src)) if (!known.has(k)) problems.push(`unknown fault '${k}'`);
  if (problems.length) throw new Error(problems.join('; '));
  return out;
}
