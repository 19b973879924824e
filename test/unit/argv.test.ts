/** Reading the programs' command lines against their flag table (util.parseArgs underneath). */
import { describe, expect, it } from 'vitest';
import { loadGatewayConfig, gatewayOptions } from '../../src/config/gateway.js';
import { argsOptionsOf, parseArgv } from '../../src/config/options.js';
import { loadRouterConfig, routerOptions } from '../../src/config/router.js';
import { loadWorkerConfig, workerOptions } from '../../src/config/worker.js';
import { loadSimConfig, simOptions } from '../../src/simulator/config.js';
import { ConfigError } from '../../src/lib/errors.js';
import { configLoader } from '../helpers/config.js';

const worker = configLoader(workerOptions, loadWorkerConfig);
const router = configLoader(routerOptions, loadRouterConfig);
const gateway = configLoader(gatewayOptions, loadGatewayConfig);

describe('parseArgv', () => {
  it('reads --flag value and --flag=value alike, an on/off flag bare or with a value', () => {
    expect(parseArgv(['--node-id', 'pi-8g', '--http-port=8082', '--redis-tls'], workerOptions)).toEqual({
      flags: { 'node-id': 'pi-8g', 'http-port': '8082', 'redis-tls': true },
      positional: [],
    });
    expect(parseArgv(['--redis-tls=false', '--redis-password='], workerOptions).flags).toEqual({ 'redis-tls': 'false', 'redis-password': '' });
  });

  it('keeps a value that starts with one dash, and takes the last of a flag given twice', () => {
    expect(parseArgv(['--max-temp', '-5', '--http-port', '1', '--http-port', '2'], routerOptions).flags).toEqual({ 'max-temp': '-5', 'http-port': '2' });
  });

  it('never takes the next --flag as a value: the flag left without one is marked, the next is read', () => {
    expect(parseArgv(['--redis-password', '--node-id', 'pi-8g'], workerOptions)).toEqual({
      flags: { 'redis-password': true, 'node-id': 'pi-8g' },
      positional: [],
    });
    expect(parseArgv(['--node-id'], workerOptions).flags).toEqual({ 'node-id': true });
  });

  it('gives an unknown flag the word after it, so no stray word is left behind', () => {
    expect(parseArgv(['--bogus', '1', '--node-id', 'n', '--also-bogus', '--http-port', '1'], workerOptions)).toEqual({
      flags: { bogus: '1', 'node-id': 'n', 'also-bogus': true, 'http-port': '1' },
      positional: [],
    });
  });

  it('returns positional words apart, everything after -- among them', () => {
    expect(parseArgv(['word', '--node-id', 'n', '--', '--http-port', '1'], workerOptions)).toEqual({
      flags: { 'node-id': 'n' },
      positional: ['word', '--http-port', '1'],
    });
  });

  it('knows --help, -h and --version on every program', () => {
    expect(parseArgv(['-h'], routerOptions).flags).toEqual({ help: true });
    expect(parseArgv(['--help'], simOptions).flags).toEqual({ help: true });
    expect(parseArgv(['--version'], gatewayOptions).flags).toEqual({ version: true });
    expect(argsOptionsOf(gatewayOptions)['redis-tls']).toEqual({ type: 'boolean' });
    expect(argsOptionsOf(gatewayOptions)['api-key']).toEqual({ type: 'string' });
  });

  it('gathers a repeatable flag given several times, in both forms', () => {
    expect(parseArgv(['--node', 'a:pi5-8g:0', '--node=b:pi5-4g:0'], simOptions).flags).toEqual({ node: 'a:pi5-8g:0,b:pi5-4g:0' });
  });
});

describe('flags and their ORION_* twins, through each program\'s loader', () => {
  it('says which flag lacks a value and still reads the flag after it', () => {
    const p = worker.problems(['--redis-password', '--node-id', 'a:b']);
    expect(p).toHaveLength(2);
    expect(p[0]).toMatch(/^--node-id 'a:b': a node id is 1-64 characters/);
    expect(p[1]).toBe('--redis-password needs a value');
  });

  it('names an unknown flag once, whatever follows it', () => {
    expect(router.problems(['--bogus', '1'])).toEqual(['unknown flag --bogus (see --help)']);
    expect(router.problems(['--bogus=1', '--bogus-too'])).toEqual(['unknown flag --bogus (see --help)', 'unknown flag --bogus-too (see --help)']);
    expect(gateway.problems(['-x'])).toEqual(['unknown flag --x (see --help)']);
  });

  it('refuses words that are not flags, with every other problem, and says how to turn an on/off flag off', () => {
    expect(worker.problems(['--node-id', 'n', 'pi-8g'])).toEqual(["unexpected argument 'pi-8g' (see --help)"]);
    expect(router.problems(['--redis-tls', 'false', '--bogus'])).toEqual([
      'unknown flag --bogus (see --help)',
      "unexpected argument 'false' (see --help; an on/off flag takes a value only as --flag=value)",
    ]);
    expect(router.load(['--redis-tls=false']).redisTls).toBe(false);
  });

  it('reads an on/off flag from its twin, and a flag beats the twin either way', () => {
    expect(worker.load(['--node-id', 'n'], { ORION_REDIS_TLS: 'true' }).redisTls).toBe(true);
    expect(worker.load(['--node-id', 'n', '--redis-tls=false'], { ORION_REDIS_TLS: 'true' }).redisTls).toBe(false);
    expect(worker.load(['--node-id', 'n', '--redis-tls'], { ORION_REDIS_TLS: 'off' }).redisTls).toBe(true);
    expect(worker.problems(['--node-id', 'n'], { ORION_REDIS_TLS: 'maybe' })).toEqual(["ORION_REDIS_TLS 'maybe': must be true or false"]);
  });

  it('reads the gateway\'s flags and twins in both forms', () => {
    expect(gateway.load(['--api-key=k', '--request-timeout', '30s'], { ORION_HTTP_PORT: '9000', ORION_REQUEST_TIMEOUT: '1m' })).toMatchObject({
      apiKey: 'k',
      requestTimeout: 30_000,
      httpPort: 9000,
    });
    expect(gateway.problems(['--request-timeout', '25h'])).toEqual(['--request-timeout must be at most 24h']);
  });

  it('ignores an empty twin, so the default stands, but refuses an empty number given as a flag', () => {
    expect(router.load([], { ORION_HTTP_PORT: '' }).httpPort).toBe(8080);
    expect(router.problems(['--http-port='])).toEqual(["--http-port '': must be a whole number from 0 to 65535"]);
    expect(router.problems(['--max-attempts', ' '])).toEqual(["--max-attempts ' ': must be a whole number from 1 to 20"]);
  });

  it('takes a negative value for the simulator\'s temperatures and refuses a stray word', () => {
    expect(loadSimConfig({ argv: ['--ambient-temp', '-10'], env: {} }).nodes[0]!.thermal).toEqual({ ambientC: -10 });
    expect(() => loadSimConfig({ argv: ['pi5-8g'], env: {} })).toThrow(ConfigError);
    try {
      loadSimConfig({ argv: ['pi5-8g'], env: {} });
    } catch (err) {
      expect((err as ConfigError).problems).toEqual(["unexpected argument 'pi5-8g' (see --help)"]);
    }
  });
});
