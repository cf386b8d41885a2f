/**
 * The documentation's tables agree with what they describe: the error codes with the error module,
 * the vars, secrets and bindings with wrangler.toml, the routes with /openapi.json, the macros and
 * the default body with the template module. `npm run docs:tables` rewrites the generated columns
 * of the first two; the others name what to change.
 */
import { exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import accessPage from "../docs/access.md?raw";
import apiPage from "../docs/api.md?raw";
import attributionPage from "../docs/attribution.md?raw";
import configurationPage from "../docs/configuration.md?raw";
import partnersPage from "../docs/partners-and-delivery.md?raw";
import { ACCESS, type SubjectRule } from "../src/access/policy";
import { LANDING_MACROS } from "../src/attribution/landing-url";
import { FORMATTING_FUNCTIONS } from "../src/delivery/formatting";
import {
  defaultBody,
  KNOWN_MACROS,
  type MacroValues,
  renderBody,
  SAMPLE_VALUES,
  templateWarnings,
} from "../src/delivery/template";
import { PROBLEM_CODES } from "../src/errors";
import wranglerToml from "../wrangler.toml?raw";
import { expectStatus } from "./support/helpers";
import { proseLines, tableWithHeader, unquote } from "./support/markdown";
import { bindingNames, requiredSecrets, vars } from "./support/wrangler-toml";

const REGENERATE = "run npm run docs:tables";

describe("docs/api.md: the error codes", () => {
  const table = tableWithHeader(apiPage, ["Status", "`code`", "Title", "When"]);

  it(`are PROBLEM_CODES, in order, with their statuses and titles (${REGENERATE})`, () => {
    expect(
      table.rows.map(([status, code, title]) => [Number(status), unquote(code ?? ""), title]),
      REGENERATE,
    ).toEqual(Object.entries(PROBLEM_CODES).map(([code, { status, title }]) => [status, code, title]));
  });

  it("each say when they happen", () => {
    for (const [, code, , when] of table.rows) expect(when, `the When of ${code}`).not.toBe("");
  });
});

describe("docs/configuration.md", () => {
  it(`documents every var of wrangler.toml's [vars], with its value as the default (${REGENERATE})`, () => {
    const table = tableWithHeader(configurationPage, ["Var", "Default", "Accepted", "Meaning"]);
    expect(
      table.rows.map(([name, fallback]) => [unquote(name ?? ""), fallback === "empty" ? "" : unquote(fallback ?? "")]),
      REGENERATE,
    ).toEqual(vars(wranglerToml));
    for (const [name, , accepted, meaning] of table.rows) {
      expect(accepted, `what ${name} accepts`).not.toBe("");
      expect(meaning, `what ${name} means`).not.toBe("");
    }
  });

  it("and wrangler.toml repeats the same vars for production, since vars do not inherit", () => {
    const names = (entries: [string, string][]) => entries.map(([name]) => name).sort();
    expect(names(vars(wranglerToml, "production"))).toEqual(names(vars(wranglerToml)));
  });

  it("documents the required secrets", () => {
    const table = tableWithHeader(configurationPage, ["Secret", "Requirement", "Generate"]);
    expect(table.rows.map(([name]) => unquote(name ?? ""))).toEqual(requiredSecrets(wranglerToml));
    expect(requiredSecrets(wranglerToml, "production")).toEqual(requiredSecrets(wranglerToml));
  });

  it("documents every binding, which production declares too", () => {
    const table = tableWithHeader(configurationPage, ["Binding", "Kind", "What it is for"]);
    const documented = table.rows.map(([name]) => unquote(name ?? "")).sort();
    expect(documented).toEqual(bindingNames(wranglerToml).sort());
    expect(bindingNames(wranglerToml, "production").sort()).toEqual(documented);
  });
});

interface Operation {
  security?: Record<string, unknown>[];
  description?: string;
  responses: Record<string, unknown>;
}

describe("docs/api.md: the routes", () => {
  const table = tableWithHeader(apiPage, ["Route", "Auth", "Success", "Explained in"]);
  const rows = table.rows.map(([route = "", auth = "", success = ""]) => ({ route: unquote(route), auth, success }));
  // Served by the hub but not operations of the OpenAPI document: the document itself, its page, and
  // the console's entries (without a session, /console sends the reader to sign in: 303).
  const OUTSIDE_THE_DOCUMENT = ["GET /openapi.json", "GET /docs", "GET /console/login", "GET /console"];

  it("are the operations of /openapi.json, each once, with its first 2xx status and who may call it", async () => {
    const doc = await expectStatus<{ paths: Record<string, Record<string, Operation>> }>(
      await exports.default.fetch("https://hub.test/openapi.json"),
      200,
    );
    const operations = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods)
        .filter(([method]) => ["get", "post", "put", "patch", "delete"].includes(method))
        .map(([method, operation]) => ({ route: `${method.toUpperCase()} ${path}`, operation })),
    );
    const inDocument = operations.map(({ route }) => route);
    const outside = OUTSIDE_THE_DOCUMENT.filter((route) => !inDocument.includes(route));
    expect(
      rows.map(({ route }) => route).sort(),
      "the routes table: add or remove rows to match /openapi.json",
    ).toEqual([...inDocument, ...outside].sort());

    for (const { route, operation } of operations) {
      const row = rows.find((r) => r.route === route);
      // A redirect (the tracking link) succeeds with its 3xx.
      const success = Object.keys(operation.responses).find((status) => /^[23]\d\d$/.test(status));
      expect(row?.success, `the success status of ${route}`).toBe(success);
      // Admin-only routes declare the admin token; routes that also take the network's credentials may not.
      const admin = operation.security?.length === 1 && "apiKey" in (operation.security[0] ?? {});
      // Its scopes, as the operation's description names them (from access/policy.ts).
      const scopes = /Scopes: (.*)\.$/.exec(operation.description ?? "")?.[1];
      if (admin) expect(row?.auth, `who may call ${route}`).toBe(scopes);
      if (row?.auth.startsWith("admin")) expect(admin, `${route} declares the apiKey security alone`).toBe(true);
    }
  });

  it("outside the document, still answer", async () => {
    for (const route of OUTSIDE_THE_DOCUMENT) {
      const [method, path] = route.split(" ");
      const response = await exports.default.fetch(`https://hub.test${path}`, { method, redirect: "manual" });
      expect(String(response.status), route).toBe(rows.find((row) => row.route === route)?.success);
      await response.body?.cancel();
    }
  });
});

describe("docs/partners-and-delivery.md", () => {
  it("lists every macro a template may use, and no other", () => {
    const table = tableWithHeader(partnersPage, ["Macro", "Value"]);
    const documented = table.rows.flatMap(([macros = ""]) =>
      [...macros.matchAll(/`\{([^}]+)\}`/g)].map((match) => match[1] ?? ""),
    );
    expect(documented.sort()).toEqual([...KNOWN_MACROS, "meta.KEY"].sort());
  });

  it("lists every formatting function, in order, and no other, each example rendering its output", () => {
    const table = tableWithHeader(partnersPage, ["Function", "Argument", "What it does", "Example", "Output"]);
    expect(table.rows.map(([name = ""]) => unquote(name))).toEqual([...FORMATTING_FUNCTIONS]);
    // The conversion the page names above the table.
    const conversion: MacroValues = {
      values: {
        transaction_id: "ord_8812",
        status: "approved",
        amount: "29.99",
        currency: "EUR",
        event_time: "2026-11-27T12:34:56.000Z",
        platform: "android",
      },
      meta: {},
    };
    for (const [name = "", argument, does, example = "", output = ""] of table.rows) {
      expect(argument, `the argument of ${name}`).not.toBe("");
      expect(does, `what ${name} does`).not.toBe("");
      expect(unquote(example), `the example of ${name} uses it`).toContain(`|${unquote(name)}`);
      const rendered = JSON.parse(renderBody(`"${unquote(example)}"`, conversion));
      expect(rendered, `the output of ${example}`).toBe(unquote(output));
    }
  });

  it("lists the macros some conversions lack, which saving a template warns about", () => {
    const lines = proseLines(partnersPage);
    const marker = lines.findIndex((line) => line.includes("checks this list against the macros the hub warns about"));
    expect(marker).toBeGreaterThan(0);
    const paragraph: string[] = [];
    for (let i = marker + 2; i < lines.length && (lines[i] ?? "") !== ""; i++) paragraph.push(lines[i] ?? "");
    const documented = [...paragraph.join(" ").matchAll(/`\{([^}]+)\}`/g)].map((match) => match[1] ?? "");
    const warned = [...KNOWN_MACROS, "meta.KEY"].filter(
      (name) => templateWarnings(`{${name}}`, "body.url_template", "url").length > 0,
    );
    expect(documented.sort()).toEqual(warned.sort());
  });

  it("lists the default body's fields in the order the hub writes them", () => {
    const lines = proseLines(partnersPage);
    const marker = lines.findIndex((line) => line.includes("checks this list against the body the hub renders"));
    expect(marker).toBeGreaterThan(0);
    const paragraph: string[] = [];
    for (let i = marker + 2; i < lines.length && (lines[i] ?? "") !== ""; i++) paragraph.push(lines[i] ?? "");
    const fields = [...paragraph.join(" ").matchAll(/`([a-z_][a-z0-9_]*)`/g)]
      .map((match) => match[1])
      .filter((f) => f !== "null");
    expect(fields).toEqual(Object.keys(JSON.parse(defaultBody(SAMPLE_VALUES))));
  });
});

describe("docs/attribution.md", () => {
  it("lists every landing URL macro, and no other", () => {
    const table = tableWithHeader(attributionPage, ["Macro", "Value"]);
    const documented = table.rows.flatMap(([macros = ""]) =>
      [...macros.matchAll(/`\{([^}]+)\}`/g)].map((match) => match[1] ?? ""),
    );
    expect(documented.sort()).toEqual([...LANDING_MACROS].sort());
  });
});

describe("docs/access.md: who may call each operation", () => {
  /** How the page words a network's or partner's rule. */
  function subjectCell(rule: SubjectRule | undefined): string {
    if (!rule) return "no";
    if ("path" in rule) return `its own (${"`"}${rule.path}${"`"} in the path)`;
    if ("query" in rule) return `its own (${"`"}?${rule.query}=${"`"} required)`;
    return rule.owner === "delivery" ? "its own (the delivery's partner)" : "its own (the request's network)";
  }

  it("is access/policy.ts's ACCESS, an operation a row, in its order", () => {
    const table = tableWithHeader(accessPage, [
      "Operation",
      "admin",
      "operator",
      "read-only",
      "network key",
      "partner key",
    ]);
    const expected = Object.entries(ACCESS).map(([operationId, access]) => [
      `${"`"}${operationId}${"`"}`,
      "yes",
      access.scopes.includes("operator") ? "yes" : "no",
      access.scopes.includes("read-only") ? "yes" : "no",
      subjectCell(access.network),
      subjectCell(access.partner),
    ]);
    expect(table.rows, `the rows should be:\n${expected.map((row) => `| ${row.join(" | ")} |`).join("\n")}`).toEqual(
      expected,
    );
  });
});
