/** Configuration of `orion-inference-gateway`: OpenAI- and Ollama-compatible HTTP in front of the bus. */
import { httpOptions, logOption, redisOptions } from './common.js';
import { parsers, resolveOptions, type OptionInput, type OptionSpec, type Resolved } from './options.js';

/** Beside a local Ollama (11434), not on its port. */
export const GATEWAY_DEFAULT_PORT = 11435;

export const gatewayOptions = {
  ...redisOptions,
  ...httpOptions(GATEWAY_DEFAULT_PORT),
  apiKey: {
    flag: 'api-key',
    env: 'ORION_API_KEY',
    description: 'Key clients must send as "Authorization: Bearer <key>"; unset = open',
    default: '',
    defaultText: '"" (open)',
    secret: true,
    parse: parsers.string,
  } satisfies OptionSpec<string>,
  requestTimeout: {
    flag: 'request-timeout',
    env: 'ORION_REQUEST_TIMEOUT',
    description: "Each call's deadline on the bus (its timeout_ms): answered 504 when not done by then",
    default: 600_000,
    defaultText: '10m',
    parse: parsers.duration(100),
  } satisfies OptionSpec<number>,
  ...logOption,
};

export type GatewayConfig = Resolved<typeof gatewayOptions>;

export function loadGatewayConfig(input: OptionInput): GatewayConfig {
  return resolveOptions(gatewayOptions, input, (c) => (c.requestTimeout !== undefined && c.requestTimeout > 86_400_000 ? ['--request-timeout must be at most 24h'] : []));
}
