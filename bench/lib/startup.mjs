// bench:startup's pure parts (test/tooling/bench.report.test.ts): the workerd configuration of one
// subject, and the summary of its runs beside the baseline's.
import { median, percentile } from "./stats.mjs";

/** A string as a Cap'n Proto text literal. */
export const capnpString = (value) =>
  `"${String(value).replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`;

/**
 * The workerd configuration (Cap'n Proto text) that serves `modules` (names of files beside the
 * configuration, the first one the entry) on 127.0.0.1:`port`, with `text` bindings: what
 * `wrangler deploy` uploads, without wrangler or Miniflare in between.
 * @param {{ modules: string[], port: number, bindings: Record<string, string>, compatibilityDate: string,
 *   compatibilityFlags?: string[] }} options
 */
export function workerdConfig({ modules, port, bindings, compatibilityDate, compatibilityFlags = [] }) {
  const moduleLines = modules.map(
    (name) => `    (name = ${capnpString(name)}, esModule = embed ${capnpString(name)}),`,
  );
  const bindingLines = Object.entries(bindings).map(
    ([name, value]) => `    (name = ${capnpString(name)}, text = ${capnpString(value)}),`,
  );
  return [
    'using Workerd = import "/workerd/workerd.capnp";',
    "const config :Workerd.Config = (",
    '  services = [ (name = "main", worker = .worker) ],',
    `  sockets = [ (name = "http", address = ${capnpString(`127.0.0.1:${port}`)}, http = (), service = "main") ],`,
    ");",
    "const worker :Workerd.Worker = (",
    "  modules = [",
    ...moduleLines,
    "  ],",
    `  compatibilityDate = ${capnpString(compatibilityDate)},`,
    `  compatibilityFlags = [${compatibilityFlags.map(capnpString).join(", ")}],`,
    "  bindings = [",
    ...bindingLines,
    "  ],",
    ");",
    "",
  ].join("\n");
}

/**
 * One row per subject: the median (and p90) of its runs' times, each beside the baseline's
 * median as a ratio and a difference. `runs` is `[{ subject, answerMs, listenMs, cpuMs }]`; the
 * baseline is the subject named `baseline`.
 */
export function startupRows(runs, baseline = "baseline") {
  const subjects = [...new Set(runs.map((run) => run.subject))];
  const of = (subject, field) => runs.filter((run) => run.subject === subject).map((run) => run[field]);
  const base = {
    answerMs: median(of(baseline, "answerMs")),
    cpuMs: median(of(baseline, "cpuMs").filter(Number.isFinite)),
  };
  return subjects.map((subject) => {
    const answers = of(subject, "answerMs");
    const cpu = of(subject, "cpuMs").filter(Number.isFinite);
    const answerMs = median(answers);
    const cpuMs = median(cpu);
    return {
      subject,
      runs: answers.length,
      listenMs: median(of(subject, "listenMs")),
      answerMs,
      answerP90Ms: percentile(answers, 90),
      firstRequestMs: median(of(subject, "firstRequestMs")),
      cpuMs,
      ratio: answerMs / base.answerMs,
      overBaselineMs: answerMs - base.answerMs,
      cpuOverBaselineMs: cpuMs - base.cpuMs,
    };
  });
}
