/**
 * The live cluster page in a real browser: Debian's chromium driven by puppeteer-core against a
 * running cluster (the built bridge, two workers, the Ollama simulator, a throwaway Redis). The
 * page must show both nodes, then a routing decision for a request sent after it opened, and
 * fit a phone's width. Screenshots go to build/screenshots/ (not tracked).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, World, requireBuilt, type Proc } from '../faults/harness.js';
import { bridgePort } from './cluster.js';

const CHROMIUM = process.env['ORION_CHROMIUM'] ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const SHOTS = join(ROOT, 'build/screenshots');
requireBuilt();

describe('the live cluster page', () => {
  let world: World;
  let bridge: Proc;
  let base: string;
  let browser: Browser;

  beforeAll(async () => {
    if (!CHROMIUM) throw new Error("Debian's chromium is not installed: apt-get install chromium (.ci/run does), or set ORION_CHROMIUM to a Chromium binary");
    world = await new World({ label: 'page', nodes: [
        { id: 'pi-16g', profile: 'pi5-16g', loaded: ['llama3.2:3b'], files: true },
        { id: 'pi-8g', profile: 'pi5-8g', loaded: ['gemma3:1b'], files: true },
      ], }).start();
    world.startWorker('pi-16g');
    world.startWorker('pi-8g');
    bridge = world.startBridge();
    base = `http://127.0.0.1:${await bridgePort(world, bridge)}`;
    await Promise.all([world.healthy('pi-16g', 45_000), world.healthy('pi-8g', 45_000)]);
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check'],
    });
    mkdirSync(SHOTS, { recursive: true });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await world?.close();
  });

  // The checks run in the page as expressions (this project's TypeScript has no DOM types).
  const text = (page: Page, sel: string): Promise<string | null> => page.evaluate(`document.querySelector(${JSON.stringify(sel)})?.innerText ?? null`) as Promise<string | null>;
  const waitCards = (page: Page, n: number): Promise<unknown> => page.waitForFunction(`document.querySelectorAll('.node').length === ${n}`, { timeout: 20_000 });

  const open = async (width: number, height: number, mobile: boolean): Promise<Page> => {
    const page = await browser.newPage();
    await page.setViewport({ width, height, isMobile: mobile, hasTouch: mobile, deviceScaleFactor: 1 });
    await page.goto(`${base}/`, { waitUntil: 'domcontentloaded' });
    return page;
  };

  it('shows every node with its numbers, and a routing decision as it happens', async () => {
    const page = await open(1366, 900, false);
    try {
      await waitCards(page, 2);
      const names = (await page.evaluate(`[...document.querySelectorAll('.node .node-name')].map((e) => e.textContent)`)) as string[];
      expect(names.sort()).toEqual(['pi-16g', 'pi-8g']);
      const card = await text(page, '.node[data-node="pi-16g"]');
      expect(card).toContain('eligible');
      expect(card).toMatch(/Temp\s+\d+\.\d °C/);
      expect(card).toMatch(/RAM\s+\d+\.\d % of 16 GB/);
      expect(card).toContain('llama3.2:3b');
      expect(await page.evaluate(`document.querySelector('#board').href`)).toBe(`${base}/admin/queues`);

      // The page listens now: a request sent from here on shows up as a decision.
      await page.waitForFunction(`document.querySelector('#conn').classList.contains('live')`, { timeout: 10_000 });
      const ids = ['page-1', 'page-2', 'page-3'];
      await world.send(ids.map((request_id, i) => ({ request_id, model: i === 2 ? 'llama3.2:3b' : 'gemma3:1b', prompt: 'Why is the sky blue?', options: { num_predict: 8 } })));
      await page.waitForSelector('.decisions li[data-request="page-3"]', { timeout: 20_000 });
      const decision = await text(page, '.decisions li[data-request="page-3"]');
      expect(decision).toContain('pi-16g');
      expect(decision).toContain('sticky');
      await world.allAnswered(ids, 30_000);
      // The next poll counts the placements in the summary.
      await page.waitForFunction(`document.querySelector('#c-routed-total').textContent.includes('3 in all')`, { timeout: 20_000 });
      await page.screenshot({ path: join(SHOTS, 'page-desktop.png'), fullPage: true });
    } finally {
      await page.close();
    }
  }, 90_000);

  it('fits a phone: nothing wider than the screen', async () => {
    const page = await open(390, 844, true);
    try {
      await page.emulateMediaFeatures([{ name: 'prefers-color-scheme', value: 'dark' }]);
      await waitCards(page, 2);
      const overflow = (await page.evaluate('document.documentElement.scrollWidth - window.innerWidth')) as number;
      expect(overflow).toBeLessThanOrEqual(0);
      await page.screenshot({ path: join(SHOTS, 'page-phone.png'), fullPage: true });
    } finally {
      await page.close();
    }
  }, 60_000);
});
