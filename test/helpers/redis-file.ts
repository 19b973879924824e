/**
 * A throwaway Redis per test file, started and stopped by the file's hooks (kept apart from
 * redis.ts, which the bench imports outside the test runner).
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { defineBusCommands } from '../../src/lib/bus.js';
import { startRedis, type RedisServer } from './redis.js';

/**
 * A throwaway Redis for the tests of one file, with a client on it that knows the bus scripts:
 * started before the file's tests, stopped after them. Read `client` inside tests and hooks.
 */
export function redisForFile(): { readonly client: Redis; readonly server: RedisServer } {
  let server: RedisServer | undefined;
  let client: Redis | undefined;
  beforeAll(async () => {
    server = await startRedis();
    client = new Redis(server.port, '127.0.0.1');
    defineBusCommands(client);
  });
  afterAll(async () => {
    client?.disconnect();
    await server?.stop();
  });
  const ready = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('Redis is started before the tests of the file');
    return v;
  };
  return {
    get client() {
      return ready(client);
    },
    get server() {
      return ready(server);
    },
  };
}
