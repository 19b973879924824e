/**
 * Measures the llama engine on this machine: engine start, model load, prompt and generation
 * speed on the tiny model. Prints one JSON document.
 *
 *   npm run build && node dist/src/simulator/llama/measure.js [runs] [threads]
 */
import { createLlamaEngine, DEFAULT_LLAMA_MODEL } from './engine.js';

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

const round = (x: number, digits = 1): number => Math.round(x * 10 ** digits) / 10 ** digits;

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 5);
  const threads = Number(process.argv[3] ?? 1);

  const t0 = performance.now();
  const engine = await createLlamaEngine({ threads });
  const startMs = performance.now() - t0;
  const model = DEFAULT_LLAMA_MODEL;
  try {
    const loads: number[] = [];
    for (let i = 0; i < runs; i++) {
      await engine.unload(model);
      await engine.load(model);
      loads.push(engine.lastLoadMs(model) ?? NaN);
    }

    const prompt = 'Why is the sky blue? '.repeat(20);
    const promptTps: number[] = [];
    const evalTps: number[] = [];
    let promptTokens = 0;
    for (let i = 0; i < runs; i++) {
      const r = await engine.generate({
        model,
        prompt,
        options: { num_predict: 256, seed: i, temperature: 0.8 },
        onToken: () => {},
        signal: new AbortController().signal,
      });
      promptTokens = r.promptEvalCount;
      promptTps.push(r.promptEvalCount / (r.promptEvalDurationNs / 1e9));
      evalTps.push(r.evalCount / (r.evalDurationNs / 1e9));
    }

    const [info] = engine.models();
    process.stdout.write(
      JSON.stringify(
        {
          model,
          fileBytes: info?.sizeBytes,
          memoryBytes: info?.memoryBytes,
          parameterSize: info?.parameterSize,
          threads,
          runs,
          engineStartMs: round(startMs),
          loadMsMedian: round(median(loads)),
          loadMsAll: loads.map((x) => round(x)),
          promptTokens,
          promptTokensPerSecondMedian: round(median(promptTps), 0),
          evalTokensPerSecondMedian: round(median(evalTps), 0),
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await engine.close();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
