/**
 * The JSON Canonicalization Scheme (RFC 8785, "JCS"): one exact text for a JSON value, so that a
 * hash over it can be reproduced by anyone with any JCS implementation. Object members are sorted
 * by their names' UTF-16 code units, nothing is indented, and strings and numbers are written as
 * ECMAScript's JSON.stringify writes them, which is what RFC 8785 specifies.
 *
 * Values JCS cannot represent are refused rather than written some other way: strings that are not
 * well-formed UTF-16 (lone surrogates), numbers that are not finite, and anything that is not JSON
 * (undefined outside an object, functions, symbols, bigints, class instances). Object members whose
 * value is undefined are left out, as JSON.stringify leaves them out.
 */

export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
}

export function canonicalJson(value: unknown): string {
  return write(value, "$");
}

function write(value: unknown, path: string): string {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) throw new CanonicalJsonError(`${path} holds a lone surrogate`);
      return JSON.stringify(value);
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError(`${path} is not a finite number`);
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return `[${value.map((item, index) => write(item, `${path}[${index}]`)).join(",")}]`;
      const prototype = Object.getPrototypeOf(value);
      if (prototype !== Object.prototype && prototype !== null) {
        throw new CanonicalJsonError(`${path} is not a plain object`);
      }
      const record = value as Record<string, unknown>;
      const members: string[] = [];
      // The default sort compares UTF-16 code units, the order RFC 8785 requires.
      for (const key of Object.keys(record).sort()) {
        const member = record[key];
        if (member === undefined) continue;
        members.push(`${write(key, `${path} key`)}:${write(member, `${path}.${key}`)}`);
      }
      return `{${members.join(",")}}`;
    }
    default:
      throw new CanonicalJsonError(`${path} is ${typeof value}, which JSON cannot hold`);
  }
}
