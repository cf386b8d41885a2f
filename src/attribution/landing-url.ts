/**
 * An offer's landing URL: where a tracking link sends the visitor, with click macros such as
 * `https://shop.example/spring?clickid={click_id}`. The visitor's browser follows it, not the hub,
 * so what matters is that it is https, that the click id reaches the advertiser (its postback names
 * the click, which is how a conversion finds its partner), and that nothing in a click (a partner's
 * sub ids) can choose the host a visitor lands on.
 */
import { SUB_ID_NAMES } from "../domain/offer";
import type { FieldError } from "../errors";

export const LANDING_MACROS = ["click_id", "partner_id", "offer_id", ...SUB_ID_NAMES] as const;
export type LandingMacro = (typeof LANDING_MACROS)[number];
export type LandingValues = Partial<Record<LandingMacro, string | null>>;

/** Anything in braces is read as a macro, so that a misspelt one is refused rather than sent as text. */
const MACRO = /\{([^{}]*)\}/g;
const ANY_MACRO = /\{[^{}]*\}/;
const KNOWN = new Set<string>(LANDING_MACROS);
const KNOWN_LIST = LANDING_MACROS.map((name) => `{${name}}`).join(", ");
const EXAMPLE = "https://shop.example/landing?clickid={click_id}";
const INSECURE_FLAG = "only allowed in local development with ALLOW_INSECURE_PARTNER_URLS=true";

/** Values with characters that must be encoded, so a URL that only works for tame values fails when saved. */
const SAMPLE_VALUES: Record<LandingMacro, string> = {
  click_id: "clk_sample/é?&#",
  partner_id: "ptn_01jcx5m2k8b3v9q4w7z6y1t0rs",
  offer_id: "ofr_01jcx5m2k8b3v9q4w7z6y1t0rs",
  sub1: "spring sale",
  sub2: "a/b",
  sub3: "100%",
  sub4: "x=1&y=2",
  sub5: "#top",
};

export interface LandingUrlOptions {
  /** Local development only: allows http (ALLOW_INSECURE_PARTNER_URLS). */
  allowInsecure: boolean;
}

/** Every value percent-encoded, so that a value can add to the path or query but never change the host. */
export function renderLandingUrl(template: string, values: LandingValues): string {
  return template.replace(MACRO, (match, name: string) => {
    if (!KNOWN.has(name)) return match;
    return encodeURIComponent(values[name as LandingMacro] ?? "");
  });
}

export function lintLandingUrl(url: string, options: LandingUrlOptions, location = "body.landing_url"): FieldError[] {
  const problems: string[] = [];
  const names = [...url.matchAll(MACRO)].map((match) => match[1] ?? "");
  for (const name of new Set(names.filter((name) => !KNOWN.has(name)))) {
    problems.push(`unknown macro {${name}}; known: ${KNOWN_LIST}`);
  }
  if (!names.includes("click_id")) {
    problems.push(
      `must contain {click_id}, so that the network can send the click id back in its postback; write it like ${EXAMPLE}`,
    );
  }
  if (hasControl(url) || /^\s|\s$/.test(url)) {
    problems.push("must not contain control characters, or spaces at either end: the URL parser would change them");
  }
  problems.push(...destinationProblems(url, options));
  return problems.map((message) => ({ location, message }));
}

/**
 * Where the visitor goes: judged from the text first (a scheme other than https, or a macro before
 * the path, needs no parsing to refuse), then as the URL parser reads it with sample values.
 */
function destinationProblems(url: string, options: LandingUrlOptions): string[] {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(url)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== "https" && scheme !== "http") return [`must use https, not ${scheme}:`];
  const origin = /^[^/\\?#]*[/\\]*[^/\\?#]*/.exec(url)?.[0] ?? "";
  if (ANY_MACRO.test(origin)) {
    return [
      "must not have a macro in the scheme or host, because a click's values must never choose where the visitor goes; put macros in the path or the query",
    ];
  }
  let parsed: URL;
  try {
    parsed = new URL(renderLandingUrl(url, SAMPLE_VALUES));
  } catch {
    return [`is not a valid absolute URL; write it like ${EXAMPLE}`];
  }
  const problems: string[] = [];
  if (parsed.protocol === "http:" && !options.allowInsecure) problems.push(`must use https (http is ${INSECURE_FLAG})`);
  if (parsed.username !== "" || parsed.password !== "") {
    problems.push("must not contain a user name or password (a visitor would be shown a look-alike host)");
  }
  return problems;
}

/** A C0 control (U+0000 to U+001F) or DEL: the URL parser removes or re-encodes them. */
function hasControl(text: string): boolean {
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
