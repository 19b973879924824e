/**
 * Scripted answers: rules that take over `/api/generate` and `/api/chat` requests and answer them
 * exactly as written (these pieces of text, this delay, this status, a stream that stops short),
 * so a test can state what Ollama does for one request and assert what the client made of it.
 * Settable at start (`script` option), on the node (`node.setScript()`) and over HTTP
 * (`PUT /_sim/script`). The first rule whose `match` the request's JSON body contains answers it;
 * requests no rule matches are simulated as usual. Requests for a model that is not installed are
 * answered 404 before any rule is looked at, and a load-only request (no prompt) is never scripted.
 */
import { delay, monoNow } from './clock.js';
import { isRecord, nowIso, sendError, writeLine, type RequestContext } from './http-util.js';

export interface ScriptRule {
  /** Text the request's JSON body must contain; absent or empty matches every request. */
  match?: string;
  /** Answer with this HTTP status and `{"error": error}` instead of generating. */
  status?: number;
  error?: string;
  /** Pieces of text, streamed one chunk each (joined when the request does not stream). */
  chunks?: string[];
  /** Wall-clock pause before the first byte (like a model load). */
  firstByteDelayMs?: number;
  /** Wall-clock pause before each chunk after the first, and before the done object. */
  chunkDelayMs?: number;
  /** Close the stream after the chunks, without the done object. */
  endWithoutDone?: boolean;
  /** @defaultValue 'stop' */
  doneReason?: 'stop' | 'length';
  /** Figures the done object reports; measured (total) or zero when absent. */
  report?: ScriptReport;
}

export interface ScriptReport {
  totalMs?: number;
  loadMs?: number;
  promptEvalCount?: number;
  promptEvalMs?: number;
  evalMs?: number;
}

const RULE_KEYS = new Set(['match', 'status', 'error', 'chunks', 'firstByteDelayMs', 'chunkDelayMs', 'endWithoutDone', 'doneReason', 'report']);
const REPORT_KEYS = new Set(['totalMs', 'loadMs', 'promptEvalCount', 'promptEvalMs', 'evalMs']);

const isMs = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

function ruleProblems(rule: unknown, at: string): string[] {
  if (!isRecord(rule)) return [`${at} must be a JSON object`];
  const p: string[] = [];
  for (const k of Object.keys(rule)) if (!RULE_KEYS.has(k)) p.push(`${at}: unknown key '${k}'`);
  if (rule['match'] !== undefined && typeof rule['match'] !== 'string') p.push(`${at}.match must be a string`);
  const status = rule['status'];
  if (status !== undefined && !(Number.isInteger(status) && (status as number) >= 400 && (status as number) <= 599)) {
    p.push(`${at}.status must be a whole number from 400 to 599`);
  }
  if (rule['error'] !== undefined && typeof rule['error'] !== 'string') p.push(`${at}.error must be a string`);
  const chunks = rule['chunks'];
  if (chunks !== undefined && !(Array.isArray(chunks) && chunks.every((c) => typeof c === 'string'))) p.push(`${at}.chunks must be an array of strings`);
  for (const k of ['firstByteDelayMs', 'chunkDelayMs'] as const) {
    if (rule[k] !== undefined && !isMs(rule[k])) p.push(`${at}.${k} must be a number of milliseconds >= 0`);
  }
  if (rule['endWithoutDone'] !== undefined && typeof rule['endWithoutDone'] !== 'boolean') p.push(`${at}.endWithoutDone must be true or false`);
  if (rule['doneReason'] !== undefined && rule['doneReason'] !== 'stop' && rule['doneReason'] !== 'length') p.push(`${at}.doneReason must be "stop" or "length"`);
  const report = rule['report'];
  if (report !== undefined) {
    if (!isRecord(report)) p.push(`${at}.report must be a JSON object`);
    else {
      for (const [k, v] of Object.entries(report)) {
        if (!REPORT_KEYS.has(k)) p.push(`${at}.report: unknown key '${k}'`);
        else if (!isMs(v)) p.push(`${at}.report.${k} must be a number >= 0`);
      }
    }
  }
  return p;
}

/** Validate a script from untrusted JSON (an array of rules); throws an Error naming every problem. */
export function parseScript(input: unknown): ScriptRule[] {
  if (!Array.isArray(input)) throw new Error('a script must be a JSON array of rules');
  const problems = input.flatMap((rule, i) => ruleProblems(rule, `rule ${i}`));
  if (problems.length) throw new Error(problems.join('; '));
  return input.map((rule) => structuredClone(rule) as ScriptRule);
}

/** The first rule that applies to a request with this body. */
export function matchRule(rules: readonly ScriptRule[], body: Record<string, unknown>): ScriptRule | undefined {
  if (rules.length === 0) return undefined;
  const text = JSON.stringify(body);
  return rules.find((r) => !r.match || text.includes(r.match));
}

const ns = (ms: number): number => Math.round(ms * 1e6);

/** Answer one generate or chat request as the rule says. Stops quietly when the client goes away. */
export async function answerScripted(kind: 'generate' | 'chat', ctx: RequestContext, model: string, rule: ScriptRule): Promise<void> {
  const { res, signal, node } = ctx;
  const wait = async (ms: number | undefined): Promise<boolean> => {
    if (ms) {
      try {
        await delay(ms, signal);
      } catch {
        return false;
      }
    }
    return !signal.aborted && !res.destroyed;
  };
  if (!(await wait(rule.firstByteDelayMs))) return void node.countOutcome('aborted');
  if (rule.status !== undefined) {
    node.countOutcome('errors');
    return sendError(res, rule.status, rule.error ?? `status ${rule.status}`);
  }
  const stream = ctx.body['stream'] !== false;
  const piece = (text: string, done: boolean): Record<string, unknown> =>
    kind === 'chat'
      ? { model, created_at: nowIso(), message: { role: 'assistant', content: text }, done }
      : { model, created_at: nowIso(), response: text, done };
  const chunks = rule.chunks ?? [];
  for (const [i, chunk] of chunks.entries()) {
    if (i > 0 && !(await wait(rule.chunkDelayMs))) return void node.countOutcome('aborted');
    if (stream) writeLine(res, piece(chunk, false));
  }
  if (!(await wait(rule.chunkDelayMs))) return void node.countOutcome('aborted');
  if (rule.endWithoutDone) {
    node.countOutcome('faultsInjected');
    if (!res.headersSent) res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    res.end();
    return;
  }
  const r = rule.report ?? {};
  const final = {
    ...piece(stream ? '' : chunks.join(''), true),
    done_reason: rule.doneReason ?? 'stop',
    total_duration: ns(r.totalMs ?? monoNow() - ctx.startedAt),
    load_duration: ns(r.loadMs ?? 0),
    prompt_eval_count: r.promptEvalCount ?? 0,
    prompt_eval_duration: ns(r.promptEvalMs ?? 0),
    eval_count: chunks.length,
    eval_duration: ns(r.evalMs ?? 0),
  };
  if (stream) {
    writeLine(res, final);
    res.end();
  } else {
    res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(final));
  }
  node.countOutcome('completed');
}
