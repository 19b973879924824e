/**
 * For configuration tests: a program's configuration loaded from an argv and an environment
 * the way its entry point loads it, and the problems reported when it is refused.
 */
import { parseArgv, type OptionInput, type OptionTable } from '../../src/config/options.js';
import { ConfigError } from '../../src/lib/errors.js';

type LoadConfig<C> = (input: OptionInput) => C;

export interface ConfigLoader<C> {
  load(argv: string[], env?: Record<string, string>): C;
  /** The problems of a refused configuration; throws if it was accepted. */
  problems(argv: string[], env?: Record<string, string>): string[];
}

export function configLoader<C>(table: OptionTable, loadConfig: LoadConfig<C>): ConfigLoader<C> {
  const load = (argv: string[], env: Record<string, string> = {}): C => loadConfig({ ...parseArgv(argv, table), env });
  const problems = (argv: string[], env: Record<string, string> = {}): string[] => {
    try {
      load(argv, env);
    } catch (err) {
      if (err instanceof ConfigError) return err.problems;
      throw err;
    }
    throw new Error('expected a ConfigError');
  };
  return { load, problems };
}
