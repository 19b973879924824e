/** The CLI's flags and their ORION_* twins: a flag wins, the environment fills what is not given. */
import { describe, expect, it } from 'vitest';
import { withEnvTwins } from '../../src/cli/main.js';

const OPTIONS = { json: { type: 'boolean' }, node: { type: 'string' }, 'max-wait': { type: 'string' }, help: { type: 'boolean' } } as const;

describe('ORION_* twins of the CLI flags', () => {
  it('fills a flag that is not given from ORION_<FLAG>, a dash becoming an underscore', () => {
    expect(withEnvTwins({}, OPTIONS, { ORION_NODE: 'pi-8g', ORION_MAX_WAIT: '30s', ORION_JSON: 'true' })).toEqual({ node: 'pi-8g', 'max-wait': '30s', json: true });
  });

  it('keeps a flag given on the command line over its twin', () => {
    expect(withEnvTwins({ node: 'pi-16g', json: false }, OPTIONS, { ORION_NODE: 'pi-8g', ORION_JSON: '1' })).toEqual({ node: 'pi-16g', json: false });
  });

  it('reads on/off words for a boolean, ignores an empty twin, never reads --help from the environment', () => {
    expect(withEnvTwins({}, OPTIONS, { ORION_JSON: 'off', ORION_NODE: '', ORION_HELP: '1' })).toEqual({ json: false });
  });

  it('refuses a boolean twin it cannot read, naming it', () => {
    expect(() => withEnvTwins({}, OPTIONS, { ORION_JSON: 'maybe' })).toThrow("ORION_JSON='maybe': must be true or false");
  });
});
