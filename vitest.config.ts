import { defineConfig } from 'vitest/config';

// Three suites: unit (no I/O), integration (a throwaway redis-server and the simulator),
// faults (built programs as real processes, killed and restarted).
/**
 * Connection resets by a Redis that a test kills on purpose (SIGKILL) may reach BullMQ while
 * one of its connections is still connecting or closing, and BullMQ lets that failure go as an
 * unhandled rejection (the programs log such rejections and go on: src/bin/*.ts). Only that
 * error, a socket reset on read or write, is let through; any other unhandled error still
 * fails the run.
 */
function isRedisKilledReset(error: unknown): boolean {
  const e = error as { code?: unknown; syscall?: unknown; type?: unknown };
  return e.code === 'ECONNRESET' && (e.syscall === 'read' || e.syscall === 'write') && e.type === 'Unhandled Rejection';
}

export default defineConfig({
  test: {
    onUnhandledError: (error) => !isRedisKilledReset(error),
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
        },
      },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          environment: 'node',
          testTimeout: 30_000,
          hookTimeout: 30_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'faults',
          include: ['test/faults/**/*.test.ts'],
          globalSetup: ['test/faults/global-setup.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
