// What the Worker's bundle gets for `zod` (wrangler.toml's [alias]; tests, types and Node get the
// real package). It is node_modules/zod/v4/classic/external.js line for line, less its `locales`
// namespace (and the one inside `core`, ./core.js): @hono/zod-openapi passes the `z` namespace to a
// function (extendZodWithOpenApi), so esbuild must keep every export of it, and through `locales`
// every one of zod's ~50 translations, about 360 KiB of the bundle. English, the only one the hub
// uses, is installed by zod's schemas module itself and stays. test/tooling/zod-shim.test.ts
// checks that these exports are zod's, less `locales`, after every upgrade. Import zod as `zod`
// only: esbuild maps a subpath (`zod/mini`) to `./shims/zod/index.js/mini`, and the build fails.
import * as z from "./index.js";

export * from "../../node_modules/zod/v4/classic/checks.js";
export * as coerce from "../../node_modules/zod/v4/classic/coerce.js";
export * from "../../node_modules/zod/v4/classic/compat.js";
export { deepPartial } from "../../node_modules/zod/v4/classic/deep-partial.js";
export * from "../../node_modules/zod/v4/classic/errors.js";
export { fromJSONSchema } from "../../node_modules/zod/v4/classic/from-json-schema.js";
export { input, output } from "../../node_modules/zod/v4/classic/in-out.js";
export * as iso from "../../node_modules/zod/v4/classic/iso.js";
export { ZodISODate, ZodISODateTime, ZodISODuration, ZodISOTime } from "../../node_modules/zod/v4/classic/iso.js";
export * from "../../node_modules/zod/v4/classic/parse.js";
export * from "../../node_modules/zod/v4/classic/schemas.js";
export {
  $brand,
  $input,
  $output,
  clone,
  compile,
  config,
  flattenError,
  formatError,
  getDiscriminatedOption,
  globalRegistry,
  INVALID,
  memoizer,
  NEVER,
  prettifyError,
  regexes,
  registry,
  TimePrecision,
  toZod,
  treeifyError,
  util,
  withParser,
  ZodCompileAsyncError,
  ZodCompileUnsupportedError,
} from "../../node_modules/zod/v4/core/index.js";
export { toJSONSchema } from "../../node_modules/zod/v4/core/json-schema-processors.js";
export * as core from "./core.js";
export { z, z as default };
