import { describe, expect, it } from 'vitest';
import { gatewayOptions, loadGatewayConfig } from '../../src/config/gateway.js';
import { ApiInputError } from '../../src/gateway/api-input.js';
import { finishReason, formatFromOpenAI, messagesFromOpenAI, optionsFromOpenAI, toolCallsToOpenAI } from '../../src/gateway/openai-map.js';
import { httpStatusOf } from '../../src/gateway/relay.js';
import { configLoader } from '../helpers/config.js';

describe("OpenAI's requests become ORION's", () => {
  it('turn text parts, developer messages, tool calls and tool answers into Ollama messages', () => {
    const out = messagesFromOpenAI([
      { role: 'developer', content: 'Be brief.' },
      { role: 'user', content: [{ type: 'text', text: 'Temperature of ' }, { type: 'text', text: 'joint 3?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'joint_temp', arguments: '{"joint":3}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '41.5' },
    ]);
    expect(out).toEqual([
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Temperature of joint 3?' },
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'joint_temp', arguments: { joint: 3 } } }] },
      { role: 'tool', content: '41.5', tool_name: 'joint_temp' },
    ]);
  });

  it('refuse what cannot be said to Ollama, naming the parameter', () => {
    expect(() => messagesFromOpenAI([])).toThrow(ApiInputError);
    expect(() => messagesFromOpenAI([{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }])).toThrow(/only text/);
    expect(() => messagesFromOpenAI([{ role: 'robot', content: 'x' }])).toThrow(/role/);
    expect(() => optionsFromOpenAI({ temperature: 'hot' })).toThrow(/temperature/);
    expect(() => formatFromOpenAI({ type: 'yaml' })).toThrow(/response_format/);
  });

  it('map sampling options and response_format to Ollama options and format', () => {
    expect(optionsFromOpenAI({ temperature: 0.2, top_p: 0.9, seed: 7, max_tokens: 64, stop: 'END' })).toEqual({ temperature: 0.2, top_p: 0.9, seed: 7, num_predict: 64, stop: ['END'] });
    expect(optionsFromOpenAI({ model: 'x' })).toBeUndefined();
    expect(formatFromOpenAI({ type: 'json_object' })).toBe('json');
    const schema = { type: 'object', properties: { a: { type: 'string' } } };
    expect(formatFromOpenAI({ type: 'json_schema', json_schema: { name: 'r', schema } })).toEqual(schema);
    expect(formatFromOpenAI({ type: 'text' })).toBeUndefined();
  });

  it("say Ollama's answers in OpenAI's words", () => {
    expect(finishReason('length', false)).toBe('length');
    expect(finishReason('stop', true)).toBe('tool_calls');
    expect(toolCallsToOpenAI([{ function: { name: 'f', arguments: { a: 1 } } }], 'r1')).toEqual([{ id: 'call_r1_0', type: 'function', function: { name: 'f', arguments: '{"a":1}' } }]);
    expect(httpStatusOf('no_healthy_node')).toBe(503);
    expect(httpStatusOf('timeout')).toBe(504);
    expect(httpStatusOf('model_not_found')).toBe(404);
  });
});

describe('the gateway routes and configuration', () => {
  it('defaults to port 11435, open, 10 minute deadline; every flag has an ORION_ twin', () => {
    const c = loadGatewayConfig({ flags: {}, env: {} });
    expect(c).toMatchObject({ httpPort: 11435, httpAddr: '0.0.0.0', apiKey: '', requestTimeout: 600_000, streamPrefix: 'orion:inference', logLevel: 'info' });
    const load = configLoader(gatewayOptions, loadGatewayConfig);
    expect(load.load([], { ORION_API_KEY: 'k', ORION_REQUEST_TIMEOUT: '30s', ORION_HTTP_PORT: '9000' })).toMatchObject({ apiKey: 'k', requestTimeout: 30_000, httpPort: 9000 });
    expect(load.load(['--api-key', 'x', '--request-timeout=2m'])).toMatchObject({ apiKey: 'x', requestTimeout: 120_000 });
    expect(load.problems(['--request-timeout', '48h'])).toEqual(['--request-timeout must be at most 24h']);
    for (const spec of Object.values(gatewayOptions)) expect(spec.env).toMatch(/^ORION_/);
  });
});
