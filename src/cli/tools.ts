/** `orion deadletter`, `validate` and `acl`: the dead-letter stream, request documents, ACL users. */
import { readFileSync } from 'node:fs';
import { validateHealth, validateRequest, validateResponse, type Check } from '../contracts/index.js';
import { aclLine, aclRules, type AclRole } from '../lib/acl.js';
import { isValidNodeId } from '../lib/names.js';
import { UsageError, str, type Command } from './context.js';

export const deadletter: Command = {
  name: 'deadletter',
  summary: 'the newest dead-letter entries, with their reasons',
  usage: '[--count N] [--json]',
  help: `The newest entries of {prefix}:deadletter (what could not be served, and why), newest first.

  --count N   how many (default 20)
  --json      the entries' documents, one per line`,
  options: { count: { type: 'string' } },
  async run(ctx, values) {
    const count = Number(str(values, 'count') ?? 20);
    if (!Number.isInteger(count) || count < 1) throw new UsageError('--count must be a whole number, at least 1');
    const entries = await ctx.redis().xrevrange(ctx.n.deadletter, '+', '-', 'COUNT', count);
    for (const [id, fields] of entries) {
      const data = fields[fields.indexOf('data') + 1] ?? '';
      ctx.out(values['json'] ? data : `${id} ${data}`);
    }
    if (!entries.length && !values['json']) ctx.out('(the dead-letter stream is empty)');
    return 0;
  },
};

/** The documents of bus/contracts, each with its validator. */
const CONTRACTS: Record<string, (doc: unknown) => Check<unknown>> = { request: validateRequest, response: validateResponse, health: validateHealth };

export const validate: Command = {
  name: 'validate',
  summary: 'check a request, response or health document against bus/contracts',
  usage: 'FILE [--kind request|response|health] [--json]',
  help: `Checks the document in FILE against its schema in bus/contracts (like npx ajv validate):
inference.request.schema.json unless --kind says otherwise. Exit code 1 when it is invalid.

  --kind K  request (the default), response (an answer on a reply stream) or health
            (a node's entry in the health hash)
  --json    {file, valid, message}`,
  options: { kind: { type: 'string' } },
  async run(ctx, values, args) {
    const file = args[0];
    if (!file || args.length > 1) throw new UsageError('validate needs exactly one file');
    const kind = str(values, 'kind') ?? 'request';
    const check = CONTRACTS[kind];
    if (!check) throw new UsageError(`validate --kind '${kind}': must be request, response or health`);
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      const message = (err as Error).message;
      if (values['json']) ctx.out(JSON.stringify({ file, valid: false, message }));
      else ctx.err(`${file} invalid: ${message}`);
      return 1;
    }
    const v = check(doc);
    if (values['json']) ctx.out(JSON.stringify({ file, valid: v.ok, ...(v.ok ? {} : { message: v.message }) }));
    else if (v.ok) ctx.out(`${file} valid`);
    else ctx.err(`${file} invalid: ${v.message}`);
    return v.ok ? 0 : 1;
  },
};

export const acl: Command = {
  name: 'acl',
  summary: 'print the least-privilege Redis ACL user for a role (docs/SECURITY.md)',
  usage: '--role bridge|worker|brain|gateway [--node-id ID] --password PW [--user NAME] [--file]',
  help: `Prints the Redis ACL rule of a least-privilege user for one role (docs/SECURITY.md): as
an ACL SETUSER command, or with --file as a line for an ACL file. The rule holds the password:
keep the output private.

  --role R        bridge, worker (with --node-id), brain or gateway
  --node-id ID    the worker's node
  --password PW   the user's secret
  --user NAME     the user's name (default orion-<role>, orion-worker-<node>)
  --file          a users.acl line instead of a command
  --json          {user, rule}`,
  options: { role: { type: 'string' }, 'node-id': { type: 'string' }, password: { type: 'string' }, user: { type: 'string' }, file: { type: 'boolean' } },
  async run(ctx, values) {
    const role = str(values, 'role');
    const nodeId = str(values, 'node-id');
    let who: AclRole;
    if (role === 'bridge' || role === 'brain' || role === 'gateway') who = { role };
    else if (role === 'worker' && nodeId !== undefined && isValidNodeId(nodeId)) who = { role, nodeId };
    else throw new UsageError('acl needs --role bridge, --role brain, --role gateway, or --role worker with a valid --node-id');
    const password = str(values, 'password');
    if (!password) throw new UsageError("acl needs --password (the user's secret; it is printed in the rule, so keep the output private)");
    const user = str(values, 'user') ?? (who.role === 'worker' ? `orion-worker-${who.nodeId}` : `orion-${who.role}`);
    const line = aclLine(user, aclRules(ctx.n, who, password), values['file'] ? 'file' : 'command');
    ctx.out(values['json'] ? JSON.stringify({ user, rule: line }) : line);
    return 0;
  },
};
