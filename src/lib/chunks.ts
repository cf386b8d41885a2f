/** Splitting what an isolate sends to a queue into messages and sendBatch calls under the queue's limits. */

const encoder = new TextEncoder();

/** The UTF-8 size of `value` as JSON: what a queue counts against its limits. */
export function jsonByteSize(value: unknown): number {
  return encoder.encode(JSON.stringify(value)).byteLength;
}

/**
 * `items` in order, in chunks of at most `maxItems` whose JSON sizes sum to at most `maxBytes`
 * (an item larger than that alone makes a chunk of one).
 */
export function chunksBySize<T>(items: readonly T[], maxItems: number, maxBytes: number): T[][] {
  const chunks: T[][] = [];
  let current: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const size = jsonByteSize(item);
    if (current.length > 0 && (current.length === maxItems || bytes + size > maxBytes)) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
