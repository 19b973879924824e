/**
 * The one place that loads node-llama-cpp, and only when asked: the package is an optional
 * dependency, so the profile engine and the rest of the project never import it.
 *
 * Loading costs about 1.7 s on a 2-core box (0.8 s to import the package, 0.9 s for getLlama,
 * which tests the prebuilt binary in a child process first), so one Llama instance is shared by
 * every engine in the process and kept for its lifetime.
 */
import type { Llama, LlamaLogLevel } from 'node-llama-cpp';
import type { Logger } from '../../lib/logger.js';

export type NodeLlamaCpp = typeof import('node-llama-cpp');

export interface LlamaRuntime {
  mod: NodeLlamaCpp;
  llama: Llama;
}

let moduleLoad: Promise<NodeLlamaCpp> | undefined;
let runtime: Promise<LlamaRuntime> | undefined;

/** The node-llama-cpp module alone (its GGUF reader needs no llama.cpp binary). */
export function nodeLlamaCpp(): Promise<NodeLlamaCpp> {
  moduleLoad ??= import('node-llama-cpp');
  return moduleLoad;
}
const logSinks = new Set<Logger>();

/** Route llama.cpp's warnings and errors to a logger until the returned function is called. */
export function addLlamaLogSink(log: Logger): () => void {
  logSinks.add(log);
  return () => logSinks.delete(log);
}

function forward(level: LlamaLogLevel, message: string): void {
  const text = message.trim();
  if (!text) return;
  for (const log of logSinks) {
    if (level === 'error' || level === 'fatal') log.error({ llamaCpp: text }, 'llama.cpp error');
    else log.warn({ llamaCpp: text }, 'llama.cpp warning');
  }
}

/**
 * The shared node-llama-cpp runtime: CPU only, prebuilt binaries only. `gpu: false` and
 * `build: "never"` mean it never looks for CUDA or Vulkan and never downloads or compiles
 * llama.cpp; without a usable prebuilt binary it fails fast instead.
 */
export function llamaRuntime(): Promise<LlamaRuntime> {
  runtime ??= (async () => {
    const mod = await nodeLlamaCpp();
    const llama = await mod.getLlama({
      gpu: false,
      build: 'never',
      skipDownload: true,
      usePrebuiltBinaries: true,
      progressLogs: false,
      // No cap here: each context sets its own thread count.
      maxThreads: 0,
      logLevel: mod.LlamaLogLevel.warn,
      logger: forward,
    });
    return { mod, llama };
  })();
  return runtime;
}

export type LlamaAvailability = { available: true } | { available: false; reason: string };

/** Whether llama inference works here; never throws. */
export async function llamaAvailability(): Promise<LlamaAvailability> {
  try {
    await llamaRuntime();
    return { available: true };
  } catch (err) {
    return { available: false, reason: err instanceof Error ? err.message : String(err) };
  }
}
