// .github/workflows/ci.yml, without GitHub: it parses as YAML, uses the current majors of its
// actions, runs .ci/run, and deploys only on a push to main after the tests, when both Cloudflare
// secrets are set. The secrets check is the step's real shell script, run here with and without
// them; the deploy job's `if:` is evaluated against that step's answer.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";

const ROOT = path.resolve(import.meta.dirname, "../..");
const TEXT = readFileSync(path.join(ROOT, ".github/workflows/ci.yml"), "utf8");

interface Step {
  id?: string;
  uses?: string;
  run?: string;
  if?: string;
  env?: Record<string, string>;
  with?: Record<string, string | number | boolean>;
}
interface Job {
  needs?: string | string[];
  if?: string;
  env?: Record<string, string>;
  outputs?: Record<string, string>;
  steps: Step[];
}
const workflow = parse(TEXT, { strict: true, uniqueKeys: true }) as { on: unknown; jobs: Record<string, Job> };
const { jobs } = workflow;
const job = (name: string): Job => {
  const found = jobs[name];
  if (found === undefined) throw new Error(`ci.yml has no job "${name}"`);
  return found;
};
const allSteps = Object.values(jobs).flatMap((j) => j.steps);
/** A GitHub expression as the workflow spells it: `gh("secrets.X")` is "${{ secrets.X }}". */
const gh = (inner: string) => `$\{{ ${inner} }}`;

/** The current majors, checked on 2026-12-02 against each action's tags. */
const ACTION_MAJORS: Record<string, string> = {
  "actions/checkout": "v7",
  "actions/setup-node": "v7",
  "cloudflare/wrangler-action": "v4",
};

/**
 * Evaluates the one shape of job condition this workflow uses: `a == 'x' && b == 'y' && ...`,
 * where each side is a context path (`github.ref`, `needs.job.outputs.name`) or a quoted string.
 */
function evaluate(condition: string, contexts: Record<string, unknown>): boolean {
  const value = (operand: string): unknown => {
    const literal = /^'(.*)'$/.exec(operand);
    if (literal) return literal[1];
    return operand
      .split(".")
      .reduce<unknown>((at, key) => (at as Record<string, unknown> | undefined)?.[key], contexts);
  };
  return condition.split("&&").every((term) => {
    const comparison = /^\s*([\w.'/-]+)\s*==\s*([\w.'/-]+)\s*$/.exec(term);
    if (!comparison) throw new Error(`the test's evaluator does not read "${term}"`);
    return value(comparison[1] ?? "") === value(comparison[2] ?? "");
  });
}

/** What the deploy-configured step writes to $GITHUB_OUTPUT, running its script with `env`. */
function configuredOutput(env: Record<string, string>): Record<string, string> {
  const step = job("deploy-configured").steps.find((s) => s.id === "check");
  const output = path.join(mkdtempSync(path.join(tmpdir(), "gh-output-")), "output");
  execFileSync("bash", ["-e", "-c", step?.run ?? "exit 1"], {
    env: { PATH: process.env.PATH ?? "", GITHUB_OUTPUT: output, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  return Object.fromEntries(
    readFileSync(output, "utf8")
      .trim()
      .split("\n")
      .map((line) => line.split("=", 2) as [string, string]),
  );
}

describe("the CI workflow", () => {
  it("parses, runs on pushes to main and on pull requests, and tests with .ci/run", () => {
    expect(workflow.on).toEqual({ push: { branches: ["main"] }, pull_request: null });
    expect(
      job("test")
        .steps.map((s) => s.run)
        .filter(Boolean),
    ).toEqual(["bash .ci/run"]);
  });

  it("uses the current major of every action", () => {
    const used = allSteps.flatMap((s) => (s.uses ? [s.uses] : []));
    expect(used.length).toBeGreaterThan(0);
    for (const uses of used) {
      const [action, version] = uses.split("@");
      expect(ACTION_MAJORS[action ?? ""], `${uses} is not one this test knows`).toBeDefined();
      expect(version, action).toBe(ACTION_MAJORS[action ?? ""]);
    }
  });

  it("never reads a secret in an if: (GitHub rejects it) and gives job conditions only their contexts", () => {
    for (const [name, j] of Object.entries(jobs)) {
      if (j.if !== undefined) expect(j.if, name).not.toMatch(/\b(secrets|env|steps|job|runner)\./);
      for (const step of j.steps) if (step.if !== undefined) expect(step.if, name).not.toMatch(/\bsecrets\./);
    }
  });
});

describe("the deploy job", () => {
  const deploy = job("deploy");
  const github = (event: string, ref: string) => ({ event_name: event, ref });

  it("comes after the tests and the secrets check", () => {
    expect(deploy.needs).toEqual(["test", "deploy-configured"]);
  });

  it("tells from the real step whether both secrets are set", () => {
    const both = { CLOUDFLARE_API_TOKEN: "token", CLOUDFLARE_ACCOUNT_ID: "account" };
    expect(configuredOutput(both)).toEqual({ configured: "true" });
    expect(configuredOutput({ ...both, CLOUDFLARE_ACCOUNT_ID: "" })).toEqual({ configured: "false" });
    expect(configuredOutput({ CLOUDFLARE_API_TOKEN: "token" })).toEqual({ configured: "false" });
    expect(configuredOutput({})).toEqual({ configured: "false" });
    const step = job("deploy-configured").steps.find((s) => s.id === "check");
    expect(step?.env).toEqual({
      CLOUDFLARE_API_TOKEN: gh("secrets.CLOUDFLARE_API_TOKEN"),
      CLOUDFLARE_ACCOUNT_ID: gh("secrets.CLOUDFLARE_ACCOUNT_ID"),
    });
    expect(job("deploy-configured").outputs).toEqual({ configured: gh("steps.check.outputs.configured") });
  });

  it("runs on a push to main when the secrets are set, and not otherwise", () => {
    const condition = deploy.if ?? "";
    const needs = (configured: string) => ({ "deploy-configured": { outputs: { configured } } });
    expect(evaluate(condition, { github: github("push", "refs/heads/main"), needs: needs("true") })).toBe(true);
    expect(evaluate(condition, { github: github("push", "refs/heads/main"), needs: needs("false") })).toBe(false);
    expect(evaluate(condition, { github: github("pull_request", "refs/pull/7/merge"), needs: needs("true") })).toBe(
      false,
    );
    expect(evaluate(condition, { github: github("push", "refs/heads/feature"), needs: needs("true") })).toBe(false);
  });

  it("prepares (secrets, queues, database, migrations) before wrangler-action deploys the same environment", () => {
    const action = deploy.steps.find((s) => s.uses?.startsWith("cloudflare/wrangler-action@"));
    expect(action?.with).toMatchObject({
      apiToken: gh("secrets.CLOUDFLARE_API_TOKEN"),
      accountId: gh("secrets.CLOUDFLARE_ACCOUNT_ID"),
      preCommands: `node scripts/deploy.mjs --prepare-only --env ${gh("env.DEPLOY_ENV")}`,
      command: `deploy --env ${gh("env.DEPLOY_ENV")}`,
    });
    expect(action?.with?.wranglerVersion, "the project's pinned wrangler, from npm ci").toBeUndefined();
    expect(deploy.steps.map((s) => s.run ?? s.uses)).toEqual([
      "actions/checkout@v7",
      "actions/setup-node@v7",
      "npm ci",
      "cloudflare/wrangler-action@v4",
    ]);
    expect(deploy.env?.DEPLOY_ENV).toBe(gh("vars.DEPLOY_ENVIRONMENT || 'production'"));
  });
});
