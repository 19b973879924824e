import { describe, expect, it } from 'vitest';
import { names } from '../../src/lib/names.js';
import { LoadTracker, WRITES_WAIT_MS } from '../../src/router/load.js';
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

  it('counts a placement whose queue write was under way when a count started, exactly once', async () => {
    const n = names(testPrefix('load-writing'));
    const t = new LoadTracker(r.client, n);
    t.add('a');
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    // The placement's job reaches the queue only after the count has started.
    t.track(gate.then(() => r.client.rpush(n.nodeQueueKey('a', 'wait'), 'j1')));
    const counting = t.refresh(['a']);
    // While the count waits for the write, the placement is still counted as one.
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });
    release();
    await counting;
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });
    await t.refresh(['a']);
    expect(t.get('a')).toEqual({ waiting: 1, running: 0 });
  });

  it('does not let a write that never ends hold up the count for longer than WRITES_WAIT_MS', async () => {
    const n = names(testPrefix('load-stuck'));
    const t = new LoadTracker(r.client, n);
    await r.client.rpush(n.nodeQueueKey('b', 'active'), 'j1');
    t.track(new Promise(() => undefined));
    const started = Date.now();
    await t.refresh(['b']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(WRITES_WAIT_MS - 50);
    expect(t.get('b')).toEqual({ waiting: 0, running: 1 });
    // ... and once given up on, it is not waited for again.
    const again = Date.now();
    await t.refresh(['b']);
    expect(Date.now() - again).toBeLessThan(WRITES_WAIT_MS);
  });

  it('changes its version whenever a figure may have gone down, and only then', async () => {
    const n = names(testPrefix('load-version'));
    const t = new LoadTracker(r.client, n);
    const v0 = t.version;
    t.add('a');
    t.add('a');
    expect(t.version).toBe(v0); // placements only add: every node at least as busy
    t.add('a', -1);
    const v1 = t.version;
    expect(v1).not.toBe(v0); // a job taken off
    await t.refresh(['a']);
    expect(t.version).not.toBe(v1); // a count landed: figures replaced
    const v2 = t.version;
    await r.client.set(n.nodeQueueKey('b', 'wait'), 'not a list');
    await expect(t.refresh(['b'])).rejects.toThrow(/WRONGTYPE/);
    expect(t.version).toBe(v2); // no count: nothing went down
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
