/**
 * When a credential was last used is written at most once a minute per credential and isolate:
 * the first use in the window says it is due, the others in it cost nothing. Shared by network
 * secrets (networks/usage.ts) and API keys (access/keys.ts).
 */
export class UseThrottle {
  readonly #lastMs = new Map<string, number>();

  /** `maxEntries` bounds the memory many credentials can take in one isolate. */
  constructor(
    readonly everyMs: number,
    readonly maxEntries = 10_000,
  ) {}

  /** Whether a use of `id` at `nowMs` should be written; when it is, it counts as written. */
  due(id: string, nowMs: number): boolean {
    const last = this.#lastMs.get(id);
    if (last !== undefined && Math.abs(nowMs - last) < this.everyMs) return false;
    this.#lastMs.delete(id);
    this.#lastMs.set(id, nowMs);
    if (this.#lastMs.size > this.maxEntries) {
      const oldest = this.#lastMs.keys().next().value;
      if (oldest !== undefined) this.#lastMs.delete(oldest);
    }
    return true;
  }

  /** The write failed: the next use tries again. */
  forget(id: string): void {
    this.#lastMs.delete(id);
  }
}
