import { describe, expect, it } from 'vitest';
import { names } from '../../src/lib/names.js';
import { LoadTracker } from '../../src/router/load.js';
import { redisForFile } from '../helpers/redis-file.js';
import { testPrefix } from '../helpers/redis.js';

const r = redisForFile();

describe('how busy each node is (LoadTracker)', () => {
  it('adds own placements at once, counts the queues, and never answers from a stale figure', async () => {
    const n = names(testPrefix('load'));
    const t = new LoadTracker(r.client, n);
    expect(t.get('a')).toEqual({ waiting: 0, running: 0 });
    t.add('a');
    t.add('a');
    // Asked twice (the second answer comes from what the first found), then changed by a move away.
    expect(t.get('a')).toEqual({ waiting: 2, running: 0 });
    expect(t.get('a')).toEqual({ waiting: 2, running: 0 });
    t.add('a', -1);
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });

    // The queues as a worker and other bridges left them: 3 waiting (one prioritised), 1 running.
    await r.client.multi()
      .rpush(n.nodeQueueKey('a', 'wait'), 'j1', 'j2')
      .zadd(n.nodeQueueKey('a', 'prioritized'), 1, 'j3')
      .rpush(n.nodeQueueKey('a', 'active'), 'j4')
      .rpush(n.nodeQueueKey('b', 'active'), 'j5')
      .exec();
    await t.refresh(['a', 'b', 'c']);
    expect(t.get('a')).toEqual({ waiting: 3, running: 1 });
    expect(t.get('b')).toEqual({ waiting: 0, running: 1 });
    expect(t.get('c')).toEqual({ waiting: 0, running: 0 });
    t.add('b');
    expect(t.get('b')).toEqual({ waiting: 1, running: 1 });
    expect([...t.busy().keys()].sort()).toEqual(['a', 'b']);

    // The next count replaces the figures (the placement above is in the queue by now).
    await r.client.multi().del(n.nodeQueueKey('a', 'wait'), n.nodeQueueKey('a', 'prioritized')).rpush(n.nodeQueueKey('b', 'wait'), 'j6').exec();
    await t.refresh(['a', 'b', 'c']);
    expect(t.get('a')).toEqual({ waiting: 0, running: 1 });
    expect(t.get('b')).toEqual({ waiting: 1, running: 1 });
  });

  it('keeps placements made while a count failed', async () => {
    const n = names(testPrefix('load-fail'));
    const t = new LoadTracker(r.client, n);
    await r.client.set(n.nodeQueueKey('a', 'wait'), 'not a list');
    t.add('a');
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });
    await expect(t.refresh(['a'])).rejects.toThrow(/WRONGTYPE/);
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });
  });
});
