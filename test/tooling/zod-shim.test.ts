// shims/zod/ (wrangler.toml's [alias] for `zod`): zod's own exports less `locales`, so the Worker's
// bundle leaves out zod's translations and nothing else; and the bundle wrangler builds proves it.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { parse } from "smol-toml";
import { describe, expect, it } from "vitest";
import * as zod from "zod";
import * as shim from "../../shims/zod/index.js";

const ROOT = path.resolve(import.meta.dirname, "../..");
const keys = (namespace: object) => Object.keys(namespace).sort();

describe("the zod shim", () => {
  it("exports what zod exports, less the locales (at the top and in core)", () => {
    expect(keys(shim)).toEqual(keys(zod).filter((key) => key !== "locales"));
    expect(keys(shim.core)).toEqual(keys(zod.core).filter((key) => key !== "locales"));
    expect(shim.z).toBe(shim);
    expect(shim.default).toBe(shim);
    // The same bindings, not copies: schemas, registries and instanceof checks are zod's own.
    expect(shim.string).toBe(zod.string);
    expect(shim.core.$ZodType).toBe(zod.core.$ZodType);
    expect(shim.globalRegistry).toBe(zod.globalRegistry);
  });

  it("keeps zod's English messages", () => {
    const result = shim.object({ amount: shim.string() }).safeParse({ amount: 1 });
    expect(result.error?.issues[0]?.message).toBe("Invalid input: expected string, received number");
  });

  it("is what wrangler bundles for zod, in the hub and in bench/cpu", async () => {
    const hub = parse(await readFile(path.join(ROOT, "wrangler.toml"), "utf8")) as { alias?: Record<string, string> };
    expect(hub.alias).toEqual({ zod: "./shims/zod/index.js" });
    const cpu = parse(await readFile(path.join(ROOT, "bench/cpu/wrangler.toml"), "utf8")) as {
      alias?: Record<string, string>;
    };
    expect(cpu.alias).toEqual({ zod: "../../shims/zod/index.js" });
  });

  it("leaves every locale but English out of the Worker's bundle", async () => {
    const outdir = await mkdtemp(path.join(os.tmpdir(), "zod-shim-"));
    try {
      await promisify(execFile)(
        path.join(ROOT, "node_modules/.bin/wrangler"),
        ["deploy", "--dry-run", "--env=", "--outdir", outdir, "--metafile", path.join(outdir, "meta.json")],
        { cwd: ROOT, env: { ...process.env, CI: "true" }, maxBuffer: 16 * 1024 * 1024 },
      );
      const meta = JSON.parse(await readFile(path.join(outdir, "meta.json"), "utf8")) as {
        outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
      };
      const inputs = Object.entries(meta.outputs)
        .filter(([file]) => file.endsWith(".js"))
        .flatMap(([, output]) => Object.keys(output.inputs));
      expect(inputs.filter((input) => input.includes("zod/v4/locales/"))).toEqual([
        "node_modules/zod/v4/locales/en.js",
      ]);
      expect(inputs).toContain("shims/zod/index.js");
    } finally {
      await rm(outdir, { recursive: true, force: true });
    }
  });
});
