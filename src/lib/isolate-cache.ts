/**
 * A bounded cache in the isolate's memory with a time to live, for configuration the hot paths
 * read on every request (networks on ingest, offers and partners on the click redirect). Misses
 * for one key share one load, so a burst after a deploy costs one read per key, not one per
 * request; absent values are cached too, so a flood of requests for made-up ids costs no reads.
 */
export class IsolateCache<T> {
  readonly #entries = new Map<string, { value: T; loadedAtMs: number }>();
  readonly #loading = new Map<string, Promise<T>>();

  /** `maxEntries` bounds the memory that requests for made-up ids can take. */
  constructor(readonly maxEntries = 10_000) {}

  /** The cached value when younger than `ttlMs`, else a fresh one from `load`. */
  async get(key: string, nowMs: number, ttlMs: number, load: () => Promise<T>): Promise<T> {
    const hit = this.#entries.get(key);
    if (hit && nowMs - hit.loadedAtMs < ttlMs) return hit.value;
    return this.reload(key, nowMs, load);
  }

  /** When `key` was last loaded (epoch ms), or null when it is not cached. */
  loadedAtMs(key: string): number | null {
    return this.#entries.get(key)?.loadedAtMs ?? null;
  }

  async reload(key: string, nowMs: number, load: () => Promise<T>): Promise<T> {
    let pending = this.#loading.get(key);
    if (!pending) {
      pending = load().finally(() => this.#loading.delete(key));
      this.#loading.set(key, pending);
    }
    const value = await pending;
    this.#entries.delete(key);
    this.#entries.set(key, { value, loadedAtMs: nowMs });
    if (this.#entries.size > this.maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
    return value;
  }

  /** After an admin write, so this isolate sees it at once; others within the TTL. */
  invalidate(key: string): void {
    this.#entries.delete(key);
  }
}
