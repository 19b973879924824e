/**
 * Bull Board at `/admin/queues` (SPEC.md section 8): every node queue, added as nodes appear
 * and taken away when a node leaves the registry (`orion forget`), and each node's heartbeat
 * queue (always read-only). Without --admin-user/--admin-password the
 * node queues are read-only too (Bull Board refuses write actions with 405); with them, pages
 * and reads stay open and every write (any method but GET/HEAD) needs HTTP Basic credentials.
 * Each card shows its node id (the queue's full Redis name is `{p}:requests:{nodeID}`, too long
 * for a card). Every write request is logged as an admin action, once answered: method, path,
 * user, status, client address (a refused one as a warning).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { Queue } from 'bullmq';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { RequestListener } from 'node:http';
import type { Redis } from 'ioredis';
import { HeldConnection } from '../lib/bull.js';
import type { Logger } from '../lib/logger.js';
import type { Names } from '../lib/names.js';
import type { Dispatcher } from './dispatcher.js';

export const BOARD_PATH = '/admin/queues';

export interface BoardOptions {
  redis: Redis;
  n: Names;
  dispatcher: Dispatcher;
  adminUser: string;
  adminPassword: string;
  log?: Logger;
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** Whether an Authorization header carries exactly these Basic credentials (timing-safe). */
function basicAuthOk(header: string | undefined, user: string, password: string): boolean {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? '');
  if (!m) return false;
  const given = Buffer.from(m[1]!, 'base64').toString('utf8');
  // Compare fixed-length digests so neither length nor content leaks through timing.
  return timingSafeEqual(digest(given), digest(`${user}:${password}`));
}

export class Board {
  private readonly server = new ExpressAdapter();
  private readonly board: ReturnType<typeof createBullBoard>;
  /** Node id -> its two adapters on the board and its heartbeat queue. */
  private readonly shown = new Map<string, { adapters: BullMQAdapter[]; heartbeat: Queue }>();

  constructor(private readonly o: BoardOptions) {
    this.server.setBasePath(BOARD_PATH);
    this.board = createBullBoard({ queues: [], serverAdapter: this.server, options: { uiConfig: { boardTitle: 'ORION inference' } } });
  }

  get writable(): boolean {
    return this.o.adminUser !== '' && this.o.adminPassword !== '';
  }

  /** Show the queues of exactly these nodes: new ones are added, those gone are taken away. */
  sync(nodeIds: Iterable<string>): void {
    const add: BullMQAdapter[] = [];
    const keep = new Set(nodeIds);
    for (const id of keep) {
      if (this.shown.has(id)) continue;
      const q = this.o.dispatcher.queue(id);
      const jobs = new BullMQAdapter(q, { readOnlyMode: !this.writable, prefix: `${this.o.n.nodeQueuePrefix}:`, displayName: id, description: `jobs routed to ${id}` });
      const hb = new Queue(id, { prefix: this.o.n.heartbeatQueuePrefix, connection: this.o.redis }, HeldConnection);
      hb.on('error', () => undefined);
      const beats = new BullMQAdapter(hb, { readOnlyMode: true, prefix: `${this.o.n.heartbeatQueuePrefix}:`, displayName: `${id} heartbeat`, description: `health job of ${id}` });
      this.shown.set(id, { adapters: [jobs, beats], heartbeat: hb });
      add.push(jobs, beats);
    }
    if (add.length > 0) this.board.setQueues(add);
    for (const [id, entry] of this.shown) {
      if (keep.has(id)) continue;
      for (const a of entry.adapters) this.board.removeQueue(a);
      this.shown.delete(id);
      void entry.heartbeat.close().catch(() => undefined);
    }
  }

  /**
   * The board (with the write guard) as a request listener: an Express app of its own, for the
   * requests the bridge's endpoints do not take; anything else under it is 404.
   */
  listener(): RequestListener {
    const app = express();
    app.disable('x-powered-by');
    const { adminUser, adminPassword } = this.o;
    const guard = (req: Request, res: Response, next: NextFunction): void => {
      if (req.method === 'GET' || req.method === 'HEAD') return next();
      this.logAdminAction(req, res);
      if (!this.writable) return next();
      if (basicAuthOk(req.headers.authorization, adminUser, adminPassword)) return next();
      res.status(401).set('WWW-Authenticate', 'Basic realm="orion-inference-router", charset="UTF-8"').json({ error: 'unauthorized' });
    };
    app.use(BOARD_PATH, guard, this.server.getRouter() as (req: Request, res: Response, next: NextFunction) => void);
    app.use((_req, res) => {
      res.status(404).json({ error: 'not_found' });
    });
    return app as unknown as RequestListener;
  }

  /** Log a write request (an admin action) once it is answered: who asked for what, and the outcome. */
  private logAdminAction(req: Request, res: Response): void {
    const log = this.o.log;
    if (!log) return;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)/i.exec(req.headers.authorization ?? '');
    const user = m ? Buffer.from(m[1]!, 'base64').toString('utf8').split(':')[0] : undefined;
    res.once('finish', () => {
      const fields = { admin_action: true, method: req.method, path: req.originalUrl, user: user ?? null, status: res.statusCode, remote: req.socket.remoteAddress ?? null };
      if (res.statusCode < 400) log.info(fields, 'admin action');
      else log.warn(fields, 'admin action refused');
    });
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.shown.values()].map((e) => e.heartbeat.close()));
  }
}
