// bench:bundle's pure parts (test/tooling/bench.report.test.ts): which package each byte of the
// Worker's bundle comes from, read from its source map, so each package's share can be gzipped alone.

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** One segment's base64 VLQ fields, as numbers. */
export function decodeSegment(segment) {
  const values = [];
  let value = 0;
  let shift = 0;
  for (const char of segment) {
    const digit = BASE64.indexOf(char);
    if (digit < 0) throw new Error(`not base64 VLQ: ${segment}`);
    value += (digit & 31) << shift;
    if (digit & 32) {
      shift += 5;
    } else {
      values.push(value & 1 ? -(value >>> 1) : value >>> 1);
      value = 0;
      shift = 0;
    }
  }
  return values;
}

/** Who wrote a source: a package by its name (scoped or not), `src` for the hub's own, else the path. */
export function packageOf(source) {
  const inModules = source.match(/node_modules\/((?:@[^/]+\/)?[^/]+)/g);
  if (inModules) return inModules.at(-1).slice("node_modules/".length);
  const own = source.match(/(?:^|\/)(src|shims|bench)\//);
  return own ? own[1] : source;
}

/**
 * The bundle's text, split by package: `{ [package]: string }`, each the concatenation of the
 * generated characters the source map gives to that package's sources ("(unmapped)" for the rest:
 * esbuild's own helpers and glue).
 */
export function slicesByPackage(code, map) {
  const out = {};
  const add = (name, text) => {
    if (text) out[name] = (out[name] ?? "") + text;
  };
  const lines = code.split("\n");
  const mappingLines = map.mappings.split(";");
  let source = 0;
  for (const [i, text] of lines.entries()) {
    const segments = (mappingLines[i] ?? "").split(",").filter(Boolean);
    let column = 0;
    let owner = "(unmapped)";
    let from = 0;
    for (const segment of segments) {
      const fields = decodeSegment(segment);
      column += fields[0];
      add(owner, text.slice(from, column));
      from = column;
      if (fields.length >= 4) {
        source += fields[1];
        owner = packageOf(map.sources[source] ?? "");
      } else {
        owner = "(unmapped)";
      }
    }
    add(owner, `${text.slice(from)}${i < lines.length - 1 ? "\n" : ""}`);
  }
  return out;
}
