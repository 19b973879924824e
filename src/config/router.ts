/** Configuration of `orion-inference-router` (the bridge): the guide's flags plus SPEC.md's. */
import { isValidNodeId } from '../lib/names.js';
import { DEFAULT_ANSWER_TIME_MS, DEFAULT_LOAD_TIME_MS } from '../router/learner.js';
import { defaultHostname, httpOptions, logOption, redisOptions } from './common.js';
import { parsers, resolveOptions, type OptionInput, type OptionSpec, type Resolved } from './options.js';

export const routerOptions = {
  ...redisOptions,
  ...httpOptions(8080),
  maxTemp: {
    flag: 'max-temp',
    env: 'ORION_MAX_TEMP',
    description: 'Nodes hotter than this (°C) get nothing',
    default: 75,
    defaultText: '75',
    parse: parsers.number(0, 200),
  } satisfies OptionSpec<number>,
  maxRam: {
    flag: 'max-ram',
    env: 'ORION_MAX_RAM',
    description: 'Nodes using more RAM than this (%) get nothing',
    default: 90,
    defaultText: '90',
    parse: parsers.number(0, 100),
  } satisfies OptionSpec<number>,
  routing: {
    flag: 'routing',
    env: 'ORION_ROUTING',
    description: 'balanced: start each request where it starts soonest (the guide\'s choice on an idle cluster), moving waiting jobs when another node frees up; guide: the guide\'s rule to the letter',
    default: 'balanced' as RoutingMode,
    defaultText: 'balanced',
    parse: (raw: string): RoutingMode => {
      if (raw !== 'balanced' && raw !== 'guide') throw new Error('must be balanced or guide');
      return raw;
    },
  } satisfies OptionSpec<RoutingMode>,
  readmitTemp: {
    flag: 'readmit-temp',
    env: 'ORION_READMIT_TEMP',
    description: 'A node excluded for temperature gets requests again only below this (°C; at most --max-temp)',
    default: 70,
    defaultText: '70',
    parse: parsers.number(0, 200),
  } satisfies OptionSpec<number>,
  readmitRam: {
    flag: 'readmit-ram',
    env: 'ORION_READMIT_RAM',
    description: 'A node excluded for RAM gets requests again only below this (%; at most --max-ram)',
    default: 85,
    defaultText: '85',
    parse: parsers.number(0, 100),
  } satisfies OptionSpec<number>,
  defaultLoadTime: {
    flag: 'default-load-time',
    env: 'ORION_DEFAULT_LOAD_TIME',
    description: 'Balanced routing: time a cold model load is assumed to take until one is measured (a 2 GB model from microSD on a Pi 5)',
    default: DEFAULT_LOAD_TIME_MS,
    defaultText: `${DEFAULT_LOAD_TIME_MS / 1000}s`,
    parse: parsers.duration(0),
  } satisfies OptionSpec<number>,
  defaultAnswerTime: {
    flag: 'default-answer-time',
    env: 'ORION_DEFAULT_ANSWER_TIME',
    description: 'Balanced routing: time one answer is assumed to take until one is measured',
    default: DEFAULT_ANSWER_TIME_MS,
    defaultText: `${DEFAULT_ANSWER_TIME_MS / 1000}s`,
    parse: parsers.duration(1),
  } satisfies OptionSpec<number>,
  modelKeepAlive: {
    flag: 'model-keep-alive',
    env: 'ORION_MODEL_KEEP_ALIVE',
    description: 'Balanced routing: how long Ollama keeps an idle model loaded (its keep_alive); the last warm copy of a model in demand is renewed before then; 0 = never renew',
    default: 300_000,
    defaultText: '5m',
    parse: parsers.duration(0),
  } satisfies OptionSpec<number>,
  recordArrivals: {
    flag: 'record-arrivals',
    env: 'ORION_RECORD_ARRIVALS',
    description: 'Append one JSON line per answered request (arrival time, model, token counts; never content) to this file, for `npm run simulate` replays; "" = off',
    default: '',
    defaultText: '""',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  staleAfter: {
    flag: 'stale-after',
    env: 'ORION_STALE_AFTER',
    description: 'Nodes silent longer than this get nothing',
    default: 15000,
    defaultText: '15s',
    parse: parsers.duration(100),
  } satisfies OptionSpec<number>,
  adminUser: {
    flag: 'admin-user',
    env: 'ORION_ADMIN_USER',
    description: 'Bull Board user allowed write actions (retry, remove); unset = read-only',
    default: '',
    defaultText: '""',
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  adminPassword: {
    flag: 'admin-password',
    env: 'ORION_ADMIN_PASSWORD',
    description: 'Password of --admin-user',
    default: '',
    defaultText: '""',
    secret: true,
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  consumerName: {
    flag: 'consumer-name',
    env: 'ORION_CONSUMER_NAME',
    description: 'Consumer name in the orion-inference-router group',
    default: defaultHostname(),
    defaultText: 'the host name',
    parse: (raw: string): string => {
      if (!isValidNodeId(raw)) throw new Error('must be 1-64 of [A-Za-z0-9._-]');
      return raw;
    },
  } satisfies OptionSpec<string>,
  maxAttempts: {
    flag: 'max-attempts',
    env: 'ORION_MAX_ATTEMPTS',
    description: 'Times a request is started on a node before it is answered with an error',
    default: 3,
    defaultText: '3',
    parse: parsers.int(1, 20),
  } satisfies OptionSpec<number>,
  batchSize: {
    flag: 'batch-size',
    env: 'ORION_BATCH_SIZE',
    description: 'Stream entries read per XREADGROUP',
    default: 250,
    defaultText: '250',
    parse: parsers.int(1, 10000),
  } satisfies OptionSpec<number>,
  claimIdle: {
    flag: 'claim-idle',
    env: 'ORION_CLAIM_IDLE',
    description: 'Entries another bridge left pending this long are claimed (XAUTOCLAIM)',
    default: 30000,
    defaultText: '30s',
    parse: parsers.duration(1000),
  } satisfies OptionSpec<number>,
  ...logOption,
};

export type RoutingMode = 'balanced' | 'guide';

export type RouterConfig = Resolved<typeof routerOptions>;

export function loadRouterConfig(input: OptionInput): RouterConfig {
  return resolveOptions(routerOptions, input, (c) => {
    const problems: string[] = [];
    if (c.adminUser !== undefined && c.adminPassword !== undefined && (c.adminUser === '') !== (c.adminPassword === '')) {
      problems.push('--admin-user and --admin-password go together: set both for write access, or neither for read-only');
    }
    return problems;
  });
}
