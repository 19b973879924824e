/**
 * Bounded consumer-group streams (`{p}:requests`, `{p}:reroute`): the bridge trims away the
 * entries every group on the stream has acknowledged, and never one still pending at some
 * consumer or not delivered yet. Reply and dead-letter streams are bounded where they are
 * written (XADD MAXLEN ~).
 *
 * One script, so nothing moves between the look and the cut:
 *   keep from = the smallest, over the stream's groups, of the group's last-delivered id and
 *               its oldest pending id (XPENDING summary);
 *   XTRIM <stream> MINID ~ <keep from>: whole stream nodes below it go, so a few acked
 *               entries may stay until the next pass; nothing at or above it is touched.
 * A stream with no group, or no stream at all (Redis restarted empty), is left alone.
 */
import type { Redis } from 'ioredis';

/**
 * KEYS: 1 stream
 * Returns the number of entries removed.
 */
const TRIM_ACKED = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local function field(g, name)
  for i = 1, #g, 2 do if g[i] == name then return g[i + 1] end end
end
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
local keep
for _, g in ipairs(groups) do
  local from = field(g, 'last-delivered-id')
  if field(g, 'pending') > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], field(g, 'name'))[2]
    if oldest and before(oldest, from) then from = oldest end
  end
  if keep == nil or before(from, keep) then keep = from end
end
return redis.call('XTRIM', KEYS[1], 'MINID', '~', keep)
`;

/** Entries one XTRIM ~ removes at most (Redis's default LIMIT: 100 stream nodes of 100). */
const ROUND = 10_000;

/** Trim the entries of `stream` that every group has acknowledged; returns how many went. */
export async function trimAcked(redis: Redis, stream: string, maxRounds = 10): Promise<number> {
  let removed = 0;
  for (let i = 0; i < maxRounds; i++) {
    const n = (await redis.eval(TRIM_ACKED, 1, stream)) as number;
    removed += n;
    if (n < ROUND) break;
  }
  return removed;
}
