/**
 * Least-privilege Redis ACL users for the three kinds of client, built from the same names
 * as the keys themselves (names.ts), so a change of layout changes the rules with it.
 *
 * - bridge: everything under the prefix (it reads every node's queue), no dangerous commands;
 * - worker for node X: its own queue and heartbeat queue, its health entries, the request
 *   records and reply streams it answers, and write-only access to the dead-letter and
 *   reroute streams; never another node's queue, never the request stream;
 * - brain: add requests, read (and delete its own private) reply streams, cancel its requests
 *   (SET of `{p}:cancel:*`); nothing else;
 * - gateway: what the brain may, plus reading the health registry (the hash, the TTL keys, the
 *   node set and the versions, through scripts) to list models and refuse what no node can serve.
 *
 * `orion acl` prints them as ACL SETUSER lines for redis-cli or an ACL file.
 */
import { type Names } from './names.js';

export type AclRole = { role: 'bridge' } | { role: 'worker'; nodeId: string } | { role: 'brain' } | { role: 'gateway' };

/** Commands every client needs: ioredis's ready check (INFO), naming the connection, AUTH/HELLO. */
const BASE = ['+info', '+ping', '+hello', '+auth', '+select', '+client|setname', '+client|getname', '+client|id'];

/**
 * The ACL SETUSER rules (after the user name) of one role. `secret` is the password; the
 * rules start with `reset` so applying them twice gives the same user.
 */
export function aclRules(n: Names, who: AclRole, secret: string): string[] {
  const p = n.prefix;
  const head = ['reset', 'on', `>${secret}`, 'resetchannels'];
  switch (who.role) {
    case 'bridge':
      return [...head, `~${p}:*`, '+@all', '-@dangerous', ...BASE, '+client|list', '+xinfo'];
    case 'worker': {
      const id = who.nodeId;
      return [
        ...head,
        `~${n.nodeQueuePrefix}:${id}:*`,
        `~${n.heartbeatQueuePrefix}:${id}:*`,
        `~${n.health}`,
        `~${n.healthKey(id)}`,
        `~${n.nodes}`,
        // The versions set is written by the same script as the document (health-registry.ts).
        `~${n.healthVersions}`,
        `~${n.requestKey('*')}`,
        `~${n.deadlines}`,
        // Full access, not read-only: the start script declares the cancel key, and EVAL checks
        // declared keys for reading and writing both.
        `~${n.cancelKey('*')}`,
        // Full access, not write-only: the final answer goes out from a Lua script, and EVAL
        // checks its declared keys for reading and writing both.
        `~${n.responses}`,
        `~${n.responses}:*`,
        // What answers cost (node, model, durations, counts), added by the same script.
        `~${n.observations}`,
        `%W~${n.deadletter}`,
        `%W~${n.reroute}`,
        '+@all',
        '-@dangerous',
        ...BASE,
      ];
    }
    case 'brain':
      return [...head, ...brainRules(n)];
    case 'gateway':
      return [
        ...head,
        ...brainRules(n),
        `%R~${n.health}`,
        `%R~${n.healthKey('*')}`,
        `%R~${n.nodes}`,
        `%R~${n.healthVersions}`,
        // Drained nodes are shown as such and get nothing (the registry reads the set).
        `%R~${n.drained}`,
        '+hgetall',
        // The registry's reads of what changed (health-registry.ts): in a script and a MULTI.
        '+hmget',
        '+hlen',
        '+zrevrange',
        '+zrangebyscore',
        '+multi',
        '+exec',
        '+smembers',
        '+exists',
        '+expire',
        '+eval',
        '+evalsha',
        '+script|load',
      ];
  }
}

function brainRules(n: Names): string[] {
  return [
    `%W~${n.requests}`,
    `%R~${n.responses}`,
    `~${n.responses}:*`,
    `%W~${n.cancelKey('*')}`,
    '-@all',
    ...BASE,
    '+xadd',
    '+xread',
    '+xrange',
    '+xrevrange',
    '+xlen',
    '+del',
    '+set',
  ];
}

/** `ACL SETUSER name rules...` as one line for redis-cli or an ACL file (`user name rules...`). */
export function aclLine(user: string, rules: string[], form: 'command' | 'file' = 'command'): string {
  return `${form === 'command' ? 'ACL SETUSER' : 'user'} ${user} ${rules.join(' ')}`;
}
