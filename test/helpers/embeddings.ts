/** What a node answers to Ollama's `POST /api/embed` asked directly, with nothing of ORION between. */
export async function embeddingsFromNode(nodeUrl: string, model: string, input: string[]): Promise<number[][]> {
  const res = await fetch(`${nodeUrl}/api/embed`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model, input }) });
  if (!res.ok) throw new Error(`${nodeUrl}/api/embed answered ${res.status}: ${await res.text()}`);
  return ((await res.json()) as { embeddings: number[][] }).embeddings;
}
