/**
 * The `/docs` page: static HTML, CSS and a vanilla script that fetches the OpenAPI document and
 * renders the reference and its "Try it" forms. Everything the document says is put into the page
 * with `textContent` and `createElement`, never parsed as HTML. The script is written without
 * template literals so that it can live in `String.raw` here unchanged.
 */

export interface DocsPageData {
  openapiUrl: string;
  /** The hub's error codes with their HTTP statuses and titles (the document only lists the codes). */
  problemCodes: Record<string, { status: number; title: string }>;
  problemExample: unknown;
}

export const DOCS_STYLE = `
:root {
  --text: #1f2328;
  --muted: #57606a;
  --faint: #6e7781;
  --line: #d8dee4;
  --soft: #f6f8fa;
  --accent: #0a58ca;
  --code-bg: #f3f4f6;
  --sans: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", "Noto Sans", "DejaVu Sans", Arial, sans-serif;
  --mono: ui-monospace, SFMono-Regular, "SF Mono", Menlo, Consolas, "Liberation Mono", "DejaVu Sans Mono", monospace;
}
* { box-sizing: border-box; }
html { color-scheme: light; }
body {
  margin: 0;
  font-family: var(--sans);
  font-size: 16px;
  line-height: 1.55;
  color: var(--text);
  background: #fff;
}
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible {
  outline: 3px solid #f2b600;
  outline-offset: 2px;
}
code, pre, kbd, .mono { font-family: var(--mono); font-size: 0.84em; }
code { background: var(--code-bg); border-radius: 4px; padding: 0.08em 0.35em; }
pre {
  background: var(--soft);
  border: 1px solid var(--line);
  border-radius: 6px;
  padding: 0.75rem 0.9rem;
  overflow: auto;
  line-height: 1.45;
  margin: 0.5rem 0 1rem;
  max-height: 28rem;
}
pre code { background: none; padding: 0; font-size: 1em; }
.skip { position: absolute; left: -999px; top: 0; }
.skip:focus { left: 1rem; top: 1rem; background: #fff; padding: 0.5rem 1rem; z-index: 10; }

.layout { display: grid; grid-template-columns: 300px minmax(0, 1fr); min-height: 100vh; }
.sidebar {
  position: sticky;
  top: 0;
  height: 100vh;
  overflow-y: auto;
  border-right: 1px solid var(--line);
  background: var(--soft);
  padding: 1.25rem 1rem 2rem;
  font-size: 0.9rem;
}
.sidebar .brand { font-weight: 700; font-size: 1.1rem; margin: 0 0 0.25rem; }
.sidebar .brand a { color: var(--text); text-decoration: none; }
.sidebar .version { color: var(--muted); font-size: 0.8rem; margin: 0 0 1rem; }
.token-box { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 0.7rem; margin-bottom: 1.25rem; }
.token-box label { display: block; font-weight: 600; margin-bottom: 0.25rem; }
.token-box input { width: 100%; }
.token-box p { margin: 0.35rem 0 0; color: var(--muted); font-size: 0.78rem; line-height: 1.4; }
.toc h2 { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.06em; color: var(--muted); margin: 1.1rem 0 0.3rem; }
.toc h2 a { color: inherit; text-decoration: none; }
.toc h2 a:hover { color: var(--accent); }
.toc ul { list-style: none; margin: 0; padding: 0; }
.toc li a {
  display: flex;
  gap: 0.45rem;
  align-items: baseline;
  padding: 0.2rem 0.35rem;
  border-radius: 4px;
  color: var(--text);
  text-decoration: none;
}
.toc li a:hover { background: #eaeef2; }
.toc .method { min-width: 3.4rem; text-align: center; }

main { padding: 2rem 3rem 4rem; max-width: 1040px; }
header.intro h1 { font-size: 2rem; margin: 0 0 0.25rem; line-height: 1.2; }
header.intro .meta { color: var(--muted); margin: 0 0 1rem; }
.lead { font-size: 1.05rem; max-width: 46rem; }
section.group { margin-top: 2.5rem; }
section.group > h2 { font-size: 1.5rem; border-bottom: 1px solid var(--line); padding-bottom: 0.35rem; margin: 0 0 0.5rem; }
.group-desc { color: var(--muted); margin: 0 0 1rem; }
article.op { border: 1px solid var(--line); border-radius: 8px; padding: 1.1rem 1.3rem 0.6rem; margin: 1.25rem 0 1.75rem; scroll-margin-top: 1rem; }
article.op > h3 { display: flex; flex-wrap: wrap; gap: 0.6rem; align-items: center; margin: 0 0 0.35rem; font-size: 1.05rem; }
article.op > h3 .path { font-family: var(--mono); font-size: 0.95rem; font-weight: 600; word-break: break-all; }
.summary { font-size: 1.15rem; font-weight: 600; margin: 0 0 0.35rem; }
.op h4 { font-size: 0.95rem; margin: 1.2rem 0 0.4rem; }
.op p { margin: 0.35rem 0; }

.method {
  display: inline-block;
  font-family: var(--mono);
  font-size: 0.72rem;
  font-weight: 700;
  letter-spacing: 0.03em;
  padding: 0.12rem 0.45rem;
  border-radius: 4px;
  color: #fff;
  background: #57606a;
}
.method.get { background: #0a58ca; }
.method.post { background: #1a7f37; }
.method.put, .method.patch { background: #9a6700; }
.method.delete { background: #cf222e; }
.auth { display: inline-flex; gap: 0.4rem; align-items: center; font-size: 0.88rem; padding: 0.15rem 0.55rem; border-radius: 999px; border: 1px solid var(--line); background: var(--soft); }
.auth.admin { border-color: #d4a72c; background: #fff8c5; }
.auth.signature { border-color: #8250df; background: #fbefff; }
.auth.public { border-color: #1a7f37; background: #dafbe1; }

table { border-collapse: collapse; width: 100%; margin: 0.3rem 0 0.8rem; font-size: 0.88rem; }
th, td { text-align: left; vertical-align: top; padding: 0.4rem 0.55rem; border-bottom: 1px solid var(--line); }
th { font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.04em; color: var(--muted); background: var(--soft); }
.name { font-family: var(--mono); font-size: 0.82rem; white-space: nowrap; }
.name .parent { color: var(--faint); }
.name .leaf { font-weight: 600; }
td.type { font-family: var(--mono); font-size: 0.8rem; color: #8250df; white-space: nowrap; }
.name.d1 { padding-left: 1.4rem; }
.name.d2 { padding-left: 2.3rem; }
.name.d3 { padding-left: 3.2rem; }
.name.d4, .name.d5, .name.d6 { padding-left: 4.1rem; }
tbody th { text-transform: none; letter-spacing: normal; background: none; color: var(--text); font-weight: 400; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.req { color: #cf222e; font-weight: 600; font-size: 0.8rem; }
.opt { color: var(--faint); font-size: 0.8rem; }
.constraints { margin: 0.2rem 0 0; padding: 0; list-style: none; color: var(--muted); font-size: 0.8rem; }
.constraints li { margin: 0.1rem 0; }
.constraints code { font-size: 0.95em; word-break: break-all; }
.chip { display: inline-block; font-family: var(--mono); font-size: 0.78rem; background: var(--code-bg); border: 1px solid var(--line); border-radius: 4px; padding: 0 0.3rem; margin: 0 0.2rem 0.15rem 0; }
.content-type { color: var(--muted); font-size: 0.85rem; margin: 0.2rem 0; }

.responses { margin: 0.2rem 0 0.6rem; }
.response { border-top: 1px solid var(--line); padding: 0.55rem 0 0.35rem; }
.response-head { display: flex; gap: 0.6rem; align-items: baseline; flex-wrap: wrap; }
.response-head > .response-desc { flex: 1 1 24rem; }
.status { font-family: var(--mono); font-weight: 700; font-size: 0.85rem; padding: 0.05rem 0.4rem; border-radius: 4px; }
.status.s2 { background: #dafbe1; color: #116329; }
.status.s3 { background: #ddf4ff; color: #0550ae; }
.status.s4 { background: #fff1e5; color: #953800; }
.status.s5 { background: #ffebe9; color: #a40e26; }
.codes { font-size: 0.85rem; color: var(--muted); margin: 0.25rem 0; }
details { margin: 0.3rem 0 0.5rem; }
details > summary { cursor: pointer; color: var(--accent); font-size: 0.88rem; }
details.try { border-top: 1px dashed var(--line); margin-top: 0.8rem; padding-top: 0.5rem; }
details.try > summary { font-weight: 600; font-size: 0.95rem; }

form.try-form { display: grid; gap: 0.65rem; margin: 0.7rem 0; }
.field label { display: block; font-size: 0.82rem; font-weight: 600; margin-bottom: 0.15rem; }
.field .hint { display: block; font-weight: 400; color: var(--muted); font-size: 0.78rem; }
.fields { display: grid; grid-template-columns: repeat(auto-fill, minmax(15rem, 1fr)); gap: 0.6rem 1rem; }
input, select, textarea {
  font: inherit;
  font-size: 0.88rem;
  color: var(--text);
  background: #fff;
  border: 1px solid #afb8c1;
  border-radius: 5px;
  padding: 0.35rem 0.5rem;
  width: 100%;
}
input.mono, textarea { font-family: var(--mono); font-size: 0.82rem; }
textarea { resize: vertical; line-height: 1.45; }
button {
  font: inherit;
  font-size: 0.9rem;
  font-weight: 600;
  border-radius: 6px;
  border: 1px solid #1a7f37;
  background: #1f883d;
  color: #fff;
  padding: 0.4rem 1.1rem;
  cursor: pointer;
  justify-self: start;
}
button:disabled { opacity: 0.6; cursor: progress; }
.note { font-size: 0.82rem; color: var(--muted); }
.result { margin: 0.5rem 0 1rem; }
.result-line { font-family: var(--mono); font-size: 0.9rem; font-weight: 600; }
.error-text { color: #a40e26; }
.loading { color: var(--muted); }

@media (max-width: 900px) {
  .layout { grid-template-columns: 1fr; }
  .sidebar { position: static; height: auto; border-right: 0; border-bottom: 1px solid var(--line); }
  main { padding: 1.25rem; }
}
`;

export const DOCS_SCRIPT = String.raw`
"use strict";
(function () {
  var HUB = JSON.parse(document.getElementById("hub-data").textContent);
  var TAG_ORDER = ["Postbacks", "Networks", "Partners", "Deliveries", "Conversions", "Operations"];
  var METHODS = ["get", "put", "post", "patch", "delete", "head", "options"];
  var STATUS_TEXT = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 409: "Conflict", 410: "Gone",
    413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Content",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"
  };
  var PROBLEM_TYPE = "application/problem+json";
  var MAX_DEPTH = 6;
  var doc = null;
  var main = document.getElementById("content");
  var tokenInput = document.getElementById("admin-token");

  // ---- DOM helpers: every string from the document goes in as text, never as HTML ----

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === undefined || value === null || value === false) return;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = String(value);
        else if (key.indexOf("on") === 0) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      });
    }
    for (var i = 2; i < arguments.length; i++) append(node, arguments[i]);
    return node;
  }

  function append(node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  /** Descriptions use a little Markdown: paragraphs and backtick code spans. Nothing else is interpreted. */
  function prose(text, tag) {
    var wrapper = document.createDocumentFragment();
    if (typeof text !== "string" || text === "") return wrapper;
    text.split(/\n\s*\n/).forEach(function (paragraph) {
      var p = el(tag || "p");
      inline(p, paragraph);
      wrapper.append(p);
    });
    return wrapper;
  }

  function inline(node, text) {
    String(text).split("\u0060").forEach(function (part, index) {
      if (index % 2 === 1) node.append(el("code", { text: part }));
      else if (part) node.append(document.createTextNode(part));
    });
    return node;
  }

  function slug(text) {
    return String(text).toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  }

  function json(value) {
    return JSON.stringify(value, null, 2);
  }

  // ---- schemas ----

  function refName(schema) {
    if (schema && typeof schema.$ref === "string") {
      var parts = schema.$ref.split("/");
      return parts[parts.length - 1];
    }
    return null;
  }

  function lookup(ref) {
    if (typeof ref !== "string" || ref.indexOf("#/") !== 0) return null;
    var node = doc;
    var parts = ref.slice(2).split("/");
    for (var i = 0; i < parts.length; i++) {
      var key = parts[i].replace(/~1/g, "/").replace(/~0/g, "~");
      if (!node || typeof node !== "object" || !Object.prototype.hasOwnProperty.call(node, key)) return null;
      node = node[key];
    }
    return node;
  }

  /** Follows $refs; sibling keywords of a $ref (description, example) win over the target's. */
  function deref(schema) {
    var seen = 0;
    var current = schema || {};
    while (current && typeof current.$ref === "string" && seen < 20) {
      var target = lookup(current.$ref) || {};
      var siblings = Object.assign({}, current);
      delete siblings.$ref;
      current = Object.assign({}, target, siblings);
      seen++;
    }
    return current || {};
  }

  function variantsOf(schema) {
    return schema.anyOf || schema.oneOf || null;
  }

  function isNullSchema(schema) {
    var s = deref(schema);
    return s.type === "null" || (Array.isArray(s.enum) && s.enum.length === 1 && s.enum[0] === null);
  }

  /** allOf parts merged into one object schema: properties, required and additionalProperties. */
  function merged(schema) {
    var s = deref(schema);
    if (!Array.isArray(s.allOf)) return s;
    var out = Object.assign({}, s, { properties: Object.assign({}, s.properties), required: (s.required || []).slice() });
    delete out.allOf;
    s.allOf.forEach(function (part) {
      var p = merged(part);
      Object.assign(out.properties, p.properties || {});
      (p.required || []).forEach(function (name) { if (out.required.indexOf(name) < 0) out.required.push(name); });
      if (p.additionalProperties !== undefined && out.additionalProperties === undefined) out.additionalProperties = p.additionalProperties;
      if (!out.type && p.type) out.type = p.type;
      if (!out.description && p.description) out.description = p.description;
    });
    return out;
  }

  function typesOf(s) {
    if (Array.isArray(s.type)) return s.type.slice();
    if (typeof s.type === "string") return [s.type];
    if (s.properties || s.additionalProperties || s.allOf) return ["object"];
    if (s.items) return ["array"];
    if (Array.isArray(s.enum)) {
      return s.enum.map(function (v) { return v === null ? "null" : typeof v; })
        .filter(function (t, i, all) { return all.indexOf(t) === i; });
    }
    if (s.const !== undefined) return [s.const === null ? "null" : typeof s.const];
    return [];
  }

  function typeLabel(schema, depth) {
    depth = depth || 0;
    var name = refName(schema);
    var s = merged(schema);
    var variants = variantsOf(s);
    if (variants && depth < MAX_DEPTH) {
      return variants.map(function (v) { return typeLabel(v, depth + 1); })
        .filter(function (t, i, all) { return all.indexOf(t) === i; }).join(" | ");
    }
    var types = typesOf(s);
    if (types.length === 0) return name || "any";
    return types.map(function (t) {
      if (t === "array") return (s.items && depth < MAX_DEPTH ? wrapUnion(typeLabel(s.items, depth + 1)) : "any") + "[]";
      if (t === "object") {
        if (name) return name;
        if (!s.properties && s.additionalProperties && typeof s.additionalProperties === "object") {
          return "map<string, " + typeLabel(s.additionalProperties, depth + 1) + ">";
        }
        return "object";
      }
      if (t === "string" && s.format) return "string<" + s.format + ">";
      return t;
    }).join(" | ");
  }

  function wrapUnion(label) {
    return label.indexOf(" | ") >= 0 ? "(" + label + ")" : label;
  }

  /** The object schema to descend into for nested fields: the object itself, or the items of an array, through nullable unions. */
  function nestedOf(schema) {
    var s = merged(schema);
    var variants = variantsOf(s);
    if (variants) {
      var real = variants.filter(function (v) { return !isNullSchema(v); });
      if (real.length === 1) return nestedOf(real[0]);
      return null;
    }
    var types = typesOf(s);
    if (types.indexOf("object") >= 0 && (s.properties || (s.additionalProperties && typeof s.additionalProperties === "object"))) {
      return { kind: "object", schema: s };
    }
    if (types.indexOf("array") >= 0 && s.items) {
      var inner = nestedOf(s.items);
      if (inner) return { kind: "array", schema: inner.schema, inner: inner };
    }
    return null;
  }

  /** Flattens an object schema into rows: path, depth, schema and whether it is required. */
  function fieldRows(schema, prefix, depth, rows, seenRefs) {
    var s = merged(schema);
    var required = s.required || [];
    var properties = s.properties || {};
    Object.keys(properties).forEach(function (name) {
      var child = properties[name];
      rows.push({ parent: prefix, name: name, depth: depth, schema: child, required: required.indexOf(name) >= 0 });
      descend(child, prefix + name, depth, rows, seenRefs);
    });
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      rows.push({ parent: prefix, name: "{key}", depth: depth, schema: s.additionalProperties, required: false, isMap: true });
    }
    return rows;
  }

  function descend(child, path, depth, rows, seenRefs) {
    if (depth + 1 >= MAX_DEPTH) return;
    var ref = refName(child) || (child && child.items && refName(child.items));
    if (ref && seenRefs.indexOf(ref) >= 0) return;
    var nested = nestedOf(child);
    if (!nested) return;
    var nextRefs = ref ? seenRefs.concat([ref]) : seenRefs;
    if (nested.kind === "array") fieldRows(nested.schema, path + "[].", depth + 1, rows, nextRefs);
    else if (nested.schema.properties) fieldRows(nested.schema, path + ".", depth + 1, rows, nextRefs);
  }

  function constraintsOf(schema) {
    var s = merged(schema);
    var items = [];
    var variants = variantsOf(s);
    var sources = [{ schema: s, of: "" }];
    if (variants) variants.forEach(function (v) { if (!isNullSchema(v)) sources.push({ schema: merged(v), of: "" }); });
    if (s.items) sources.push({ schema: merged(s.items), of: "each item: " });
    if (s.additionalProperties && typeof s.additionalProperties === "object") {
      sources.push({ schema: merged(s.additionalProperties), of: "each value: " });
    }
    sources.forEach(function (source, index) {
      var x = source.schema;
      var of = source.of;
      var values = Array.isArray(x.enum) ? x.enum : null;
      if (values) items.push([of + "one of", values.map(function (v) { return el("span", { class: "chip", text: v === null ? "null" : String(v) }); })]);
      if (x.const !== undefined) items.push(["always", el("span", { class: "chip", text: JSON.stringify(x.const) })]);
      var length = range(x.minLength, x.maxLength, "characters");
      if (length) items.push([of + "length", length]);
      var count = range(x.minItems, x.maxItems, "items");
      if (count) items.push([of + "count", count]);
      var bounds = numberRange(x);
      if (bounds) items.push([of + "range", bounds]);
      if (typeof x.pattern === "string") items.push([of + "pattern", el("code", { text: x.pattern })]);
      if (typeof x.format === "string" && index > 0) items.push(["format", x.format]);
      if (x.multipleOf !== undefined) items.push(["multiple of", String(x.multipleOf)]);
      if (x.uniqueItems) items.push(["unique items", ""]);
      if (index > 0 && x.description && x.description !== s.description) items.push(["", inline(el("span"), x.description)]);
    });
    if (s.default !== undefined) items.push(["default", el("code", { text: JSON.stringify(s.default) })]);
    if (s.example !== undefined) items.push(["example", el("code", { text: JSON.stringify(s.example) })]);
    else if (Array.isArray(s.examples) && s.examples.length) items.push(["example", el("code", { text: JSON.stringify(s.examples[0]) })]);
    if (s.additionalProperties === false && s.properties) items.push(["", "no other fields are accepted"]);
    if (s.readOnly) items.push(["", "read-only"]);
    if (s.deprecated) items.push(["", "deprecated"]);
    return items;
  }

  function range(min, max, unit) {
    if (min === undefined && max === undefined) return null;
    if (min !== undefined && max !== undefined) return min === max ? "exactly " + min + " " + unit : min + " to " + max + " " + unit;
    if (min !== undefined) return "at least " + min + " " + unit;
    return "at most " + max + " " + unit;
  }

  function numberRange(x) {
    var low = x.exclusiveMinimum !== undefined && typeof x.exclusiveMinimum === "number" ? "> " + x.exclusiveMinimum : x.minimum !== undefined ? "\u2265 " + x.minimum : null;
    var high = x.exclusiveMaximum !== undefined && typeof x.exclusiveMaximum === "number" ? "< " + x.exclusiveMaximum : x.maximum !== undefined ? "\u2264 " + x.maximum : null;
    if (!low && !high) return null;
    return [low, high].filter(Boolean).join(" and ");
  }

  function constraintList(schema, extra) {
    var items = (extra || []).concat(constraintsOf(schema));
    if (items.length === 0) return null;
    return el("ul", { class: "constraints" }, items.map(function (item) {
      return el("li", null, item[0] ? item[0] + (item[1] === "" ? "" : ": ") : "", item[1]);
    }));
  }

  function descriptionCell(schema, description, extra) {
    var s = merged(schema);
    var text = description || s.description;
    if (!text) {
      var variants = variantsOf(s);
      if (variants) variants.forEach(function (v) { if (!text && merged(v).description) text = merged(v).description; });
    }
    var td = el("td");
    if (text) td.append(prose(text, "div"));
    var list = constraintList(schema, extra);
    if (list) td.append(list);
    return td;
  }

  function requiredCell(required) {
    return el("td", null, required ? el("span", { class: "req", text: "required" }) : el("span", { class: "opt", text: "optional" }));
  }

  function schemaTable(schema, caption) {
    var s = merged(schema);
    var nested = nestedOf(schema);
    var rows;
    if (nested && nested.kind === "object" && s.properties) rows = fieldRows(schema, "", 0, [], refName(schema) ? [refName(schema)] : []);
    else if (nested && nested.kind === "array") rows = fieldRows(nested.schema, "[].", 0, [], []);
    else rows = null;
    if (!rows || rows.length === 0) {
      return el("table", null, caption ? el("caption", { class: "visually-hidden", text: caption }) : null,
        el("thead", null, el("tr", null, el("th", { scope: "col", text: "Type" }), el("th", { scope: "col", text: "Description" }))),
        el("tbody", null, el("tr", null, el("td", { class: "type", text: typeLabel(schema) }), descriptionCell(schema))));
    }
    return el("table", null,
      el("thead", null, el("tr", null,
        el("th", { scope: "col", text: "Field" }), el("th", { scope: "col", text: "Type" }),
        el("th", { scope: "col", text: "Required" }), el("th", { scope: "col", text: "Description" }))),
      el("tbody", null, rows.map(function (row) {
        return el("tr", null,
          el("th", { scope: "row", class: "name d" + row.depth },
            row.parent ? el("span", { class: "parent", text: row.parent }) : null,
            el("span", { class: "leaf", text: row.name })),
          el("td", { class: "type", text: typeLabel(row.schema) }),
          row.isMap ? el("td", null, el("span", { class: "opt", text: "any key" })) : requiredCell(row.required),
          descriptionCell(row.schema));
      })));
  }

  // ---- examples ----

  function ownExample(s) {
    if (s.example !== undefined) return { value: s.example };
    if (Array.isArray(s.examples) && s.examples.length) return { value: s.examples[0] };
    if (s.default !== undefined) return { value: s.default };
    if (s.const !== undefined) return { value: s.const };
    return null;
  }

  /** An example value from the schema: its examples or defaults, else a placeholder of the right type. */
  function exampleOf(schema, full, depth) {
    depth = depth || 0;
    var s = merged(schema);
    var own = ownExample(s);
    if (own) return own.value;
    if (depth > MAX_DEPTH) return null;
    if (Array.isArray(s.enum) && s.enum.length) {
      var first = s.enum.filter(function (v) { return v !== null; })[0];
      return first === undefined ? null : first;
    }
    var variants = variantsOf(s);
    if (variants) {
      var real = variants.filter(function (v) { return !isNullSchema(v); });
      return real.length ? exampleOf(real[0], full, depth + 1) : null;
    }
    var types = typesOf(s).filter(function (t) { return t !== "null"; });
    var type = types[0] || (types.length === 0 && typesOf(s).indexOf("null") >= 0 ? "null" : "string");
    if (type === "object") {
      var out = {};
      var required = s.required || [];
      Object.keys(s.properties || {}).forEach(function (name) {
        var child = s.properties[name];
        if (full || required.indexOf(name) >= 0 || hasExample(child, depth + 1)) out[name] = exampleOf(child, full, depth + 1);
      });
      return out;
    }
    if (type === "array") return s.items ? [exampleOf(s.items, full, depth + 1)] : [];
    if (type === "integer" || type === "number") return s.minimum !== undefined ? s.minimum : 0;
    if (type === "boolean") return true;
    if (type === "null") return null;
    if (s.format === "date-time") return "2026-01-15T12:34:56Z";
    return "string";
  }

  function hasExample(schema, depth) {
    var s = merged(schema);
    if (ownExample(s)) return true;
    if (depth > MAX_DEPTH) return false;
    var variants = variantsOf(s);
    if (variants) return variants.some(function (v) { return hasExample(v, depth + 1); });
    if (s.items) return hasExample(s.items, depth + 1);
    return Object.keys(s.properties || {}).some(function (name) { return hasExample(s.properties[name], depth + 1); });
  }

  function mediaExample(media, full) {
    if (!media) return undefined;
    if (media.example !== undefined) return media.example;
    if (media.examples && typeof media.examples === "object") {
      var firstKey = Object.keys(media.examples)[0];
      var ex = firstKey !== undefined ? deref(media.examples[firstKey]) : null;
      if (ex && ex.value !== undefined) return ex.value;
    }
    return media.schema ? exampleOf(media.schema, full) : undefined;
  }

  // ---- operations ----

  function operations() {
    var list = [];
    Object.keys(doc.paths || {}).forEach(function (path) {
      var item = doc.paths[path] || {};
      METHODS.forEach(function (method) {
        var op = item[method];
        if (!op) return;
        var params = (item.parameters || []).concat(op.parameters || []).map(deref);
        list.push({ path: path, method: method, op: op, params: params, webhook: false });
      });
    });
    Object.keys(doc.webhooks || {}).forEach(function (name) {
      var item = deref(doc.webhooks[name]);
      METHODS.forEach(function (method) {
        var op = item[method];
        if (op) list.push({ path: name, method: method, op: op, params: (op.parameters || []).map(deref), webhook: true });
      });
    });
    list.forEach(function (entry) {
      entry.id = "op-" + (entry.op.operationId ? slug(entry.op.operationId) : slug(entry.method + " " + entry.path));
      entry.tag = entry.webhook ? "Webhooks" : (entry.op.tags && entry.op.tags[0]) || "Other";
    });
    return list;
  }

  function groups(list) {
    var byTag = {};
    list.forEach(function (entry) { (byTag[entry.tag] = byTag[entry.tag] || []).push(entry); });
    var declared = (doc.tags || []).map(function (t) { return t.name; });
    var order = TAG_ORDER.concat(declared).concat(Object.keys(byTag).sort());
    return order.filter(function (tag, i) { return order.indexOf(tag) === i && byTag[tag]; }).map(function (tag) {
      var info = (doc.tags || []).filter(function (t) { return t.name === tag; })[0] || {};
      return { tag: tag, id: "tag-" + slug(tag), description: info.description, ops: byTag[tag] };
    });
  }

  /** admin: the bearer token; signature: the network's Standard Webhooks secret; public: nothing. */
  function authOf(entry) {
    var security = entry.op.security !== undefined ? entry.op.security : doc.security;
    var schemes = (doc.components && doc.components.securitySchemes) || {};
    if (Array.isArray(security) && security.length > 0) {
      var names = [];
      security.forEach(function (requirement) { Object.keys(requirement).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); }); });
      var bearer = names.some(function (n) { var s = deref(schemes[n]); return s.type === "http" && String(s.scheme).toLowerCase() === "bearer"; });
      return { kind: bearer ? "admin" : "other", names: names, schemes: names.map(function (n) { return deref(schemes[n]); }) };
    }
    var signed = entry.params.some(function (p) { return p.in === "header" && String(p.name).toLowerCase() === "webhook-signature"; });
    if (signed) return { kind: "signature", names: [], schemes: [] };
    // Network routes that authenticate another way (a token, a signed query) say how in their description.
    if (entry.tag === "Postbacks") return { kind: "network", names: [], schemes: [] };
    return { kind: "public", names: [], schemes: [] };
  }

  function authBadge(auth) {
    if (auth.kind === "admin") return el("span", { class: "auth admin" }, "Admin: ", el("code", { text: "Authorization: Bearer <ADMIN_TOKEN>" }));
    if (auth.kind === "signature") return el("span", { class: "auth signature", text: "Network: its Standard Webhooks signature, token or signed query" });
    if (auth.kind === "network") {
      return el("span", { class: "auth signature", text: "Network: the network's own credentials (see above)" });
    }
    if (auth.kind === "other") return el("span", { class: "auth", text: "Auth: " + auth.names.join(", ") });
    return el("span", { class: "auth public", text: "Public: no authentication" });
  }

  function paramTable(params) {
    return el("table", null,
      el("thead", null, el("tr", null,
        ["Name", "In", "Type", "Required", "Description"].map(function (h) { return el("th", { scope: "col", text: h }); }))),
      el("tbody", null, params.map(function (p) {
        var schema = p.schema || {};
        var extra = p.example !== undefined && merged(schema).example === undefined ? [["example", el("code", { text: JSON.stringify(p.example) })]] : [];
        return el("tr", null,
          el("th", { scope: "row", class: "name" }, el("span", { class: "leaf", text: p.name })),
          el("td", { text: p.in }),
          el("td", { class: "type", text: typeLabel(schema) }),
          requiredCell(p.required || p.in === "path"),
          descriptionCell(schema, p.description, extra));
      })));
  }

  function codesFor(status) {
    return Object.keys(HUB.problemCodes).filter(function (code) { return String(HUB.problemCodes[code].status) === String(status); });
  }

  function problemCodesInDocument() {
    var problem = doc.components && doc.components.schemas && doc.components.schemas.Problem;
    var code = problem && merged(problem).properties && merged(problem).properties.code;
    var values = code && merged(code).enum;
    return Array.isArray(values) ? values : Object.keys(HUB.problemCodes);
  }

  function statusClass(status) {
    var first = String(status).charAt(0);
    return "status s" + (/[1-5]/.test(first) ? first : "4");
  }

  function responseBlock(status, response) {
    response = deref(response);
    var content = response.content || {};
    var types = Object.keys(content);
    var block = el("div", { class: "response" },
      el("div", { class: "response-head" },
        el("span", { class: statusClass(status), text: status }),
        el("strong", { text: STATUS_TEXT[status] || (status === "default" ? "Any other status" : "") }),
        inline(el("span", { class: "response-desc" }), response.description || "")));
    if (response.headers) {
      block.append(el("div", { class: "codes" }, "Headers: ", Object.keys(response.headers).map(function (name, i) {
        var h = deref(response.headers[name]);
        return [i ? ", " : "", el("code", { text: name }), h.description ? " (" + h.description + ")" : ""];
      })));
    }
    if (types.length === 0) {
      block.append(el("p", { class: "content-type", text: "No body." }));
      return block;
    }
    types.forEach(function (type) {
      var media = content[type] || {};
      if (type === PROBLEM_TYPE) {
        var codes = codesFor(status).filter(function (c) { return problemCodesInDocument().indexOf(c) >= 0; });
        block.append(el("p", { class: "content-type" }, el("code", { text: type }), " \u2014 a ", el("a", { href: "#errors", text: "Problem" }), "."));
        if (codes.length) {
          block.append(el("p", { class: "codes" }, codes.length === 1 ? "code: " : "code, one of: ",
            codes.map(function (c) { return el("span", { class: "chip", text: c }); })));
        }
        if (media.schema) block.append(el("details", null, el("summary", { text: "Problem fields" }), schemaTable(media.schema)));
        return;
      }
      var label = refName(media.schema);
      block.append(el("p", { class: "content-type" }, el("code", { text: type }), label ? " \u2014 " + label : ""));
      if (media.schema) block.append(schemaTable(media.schema));
      var example = mediaExample(media, true);
      if (example !== undefined) {
        block.append(el("details", null, el("summary", { text: "Example response" }), el("pre", null, el("code", { text: json(example) }))));
      }
    });
    return block;
  }

  function renderOperation(entry) {
    var op = entry.op;
    var auth = authOf(entry);
    var article = el("article", { class: "op", id: entry.id, "aria-labelledby": entry.id + "-title" },
      el("h3", { id: entry.id + "-title" },
        el("span", { class: "method " + entry.method, text: entry.method.toUpperCase() }),
        el("span", { class: "path", text: entry.path })),
      op.summary ? el("p", { class: "summary", text: op.summary }) : null,
      op.description ? prose(op.description) : null,
      el("p", null, authBadge(auth)));
    if (op.deprecated) article.append(el("p", { class: "error-text", text: "Deprecated." }));

    if (entry.params.length) {
      article.append(el("h4", { text: "Parameters" }), paramTable(entry.params));
    }

    var body = op.requestBody ? deref(op.requestBody) : null;
    var bodyType = null;
    var bodyExample;
    if (body && body.content) {
      var bodyTypes = Object.keys(body.content);
      bodyType = bodyTypes.indexOf("application/json") >= 0 ? "application/json" : bodyTypes[0];
      var media = body.content[bodyType] || {};
      article.append(el("h4", null, "Request body ", el("span", { class: body.required ? "req" : "opt", text: body.required ? "required" : "optional" })));
      if (body.description) article.append(prose(body.description));
      article.append(el("p", { class: "content-type" }, el("code", { text: bodyType }), refName(media.schema) ? " \u2014 " + refName(media.schema) : ""));
      if (media.schema) article.append(schemaTable(media.schema));
      bodyExample = mediaExample(media, false);
      if (bodyExample !== undefined) {
        article.append(el("p", { class: "note", text: "Example body:" }), el("pre", null, el("code", { text: json(bodyExample) })));
      }
    }

    var responses = op.responses || {};
    article.append(el("h4", { text: "Responses" }), el("div", { class: "responses" }, Object.keys(responses).map(function (status) {
      return responseBlock(status, responses[status]);
    })));

    if (!entry.webhook) article.append(tryIt(entry, auth, bodyType, bodyExample));
    return article;
  }

  // ---- Try it ----

  function tryIt(entry, auth, bodyType, bodyExample) {
    var inputs = [];
    var formId = entry.id + "-try";
    var fields = el("div", { class: "fields" });
    entry.params.forEach(function (p) {
      var schema = merged(p.schema || {});
      var id = formId + "-" + p.in + "-" + slug(p.name);
      var example = p.example !== undefined ? p.example : ownExample(schema) ? ownExample(schema).value : undefined;
      var control;
      if (Array.isArray(schema.enum)) {
        control = el("select", { id: id }, el("option", { value: "", text: p.required ? "(choose)" : "(not sent)" }),
          schema.enum.filter(function (v) { return v !== null; }).map(function (v) { return el("option", { value: String(v), text: String(v) }); }));
      } else {
        control = el("input", {
          id: id, type: "text", class: "mono", autocomplete: "off", spellcheck: "false",
          placeholder: example !== undefined ? String(example) : schema.default !== undefined ? String(schema.default) : ""
        });
        // Path parameters start filled so the first try works; optional ones stay empty so they are not sent.
        if (p.in === "path" && example !== undefined) control.value = String(example);
        if (p.in === "header" && example !== undefined && p.required) control.value = String(example);
      }
      if (p.required || p.in === "path") control.required = true;
      inputs.push({ param: p, control: control });
      fields.append(el("div", { class: "field" },
        el("label", { for: id }, p.name, " ", el("span", { class: "hint", text: p.in + (p.required || p.in === "path" ? ", required" : ", optional") })),
        control));
    });

    var secretInput = null;
    var form = el("form", { class: "try-form", id: formId, novalidate: true });
    if (auth.kind === "admin") {
      form.append(el("p", { class: "note" }, "Sends ", el("code", { text: "Authorization: Bearer \u2026" }), " with the admin token from the ",
        el("a", { href: "#admin-token", text: "sidebar" }), "."));
    }
    if (inputs.length) form.append(fields);
    if (auth.kind === "signature") {
      var secretId = formId + "-secret";
      secretInput = el("input", { id: secretId, type: "password", class: "mono", autocomplete: "off", spellcheck: "false", placeholder: "whsec_\u2026" });
      form.append(el("div", { class: "field" },
        el("label", { for: secretId }, "Network secret ",
          el("span", { class: "hint", text: "Optional. When set, the page signs the body just before sending: a fresh webhook-id and webhook-timestamp, and webhook-signature = v1,base64(HMAC-SHA256(key, id.timestamp.body)). Kept in this tab only." })),
        secretInput));
    }
    var textarea = null;
    if (bodyType) {
      var bodyId = formId + "-body";
      var initial = bodyExample !== undefined ? json(bodyExample) : "";
      textarea = el("textarea", { id: bodyId, spellcheck: "false", rows: Math.min(24, Math.max(4, initial.split("\n").length + 1)) });
      textarea.value = initial;
      form.append(el("div", { class: "field" }, el("label", { for: bodyId }, "Body ", el("span", { class: "hint", text: bodyType })), textarea));
    }
    var button = el("button", { type: "submit", text: "Send request" });
    var output = el("div", { class: "result", "aria-live": "polite" });
    form.append(button);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      send(entry, auth, inputs, bodyType, textarea, secretInput, button, output);
    });
    return el("details", { class: "try" }, el("summary", { text: "Try it" }), form, output);
  }

  function buildUrl(entry, inputs) {
    var missing = [];
    var path = entry.path.replace(/\{([^}]+)\}/g, function (whole, name) {
      var input = inputs.filter(function (i) { return i.param.in === "path" && i.param.name === name; })[0];
      var value = input ? input.control.value.trim() : "";
      if (!value) missing.push(name);
      return encodeURIComponent(value);
    });
    var url = new URL(path, window.location.origin);
    inputs.forEach(function (i) {
      var value = i.control.value;
      if (i.param.in === "query" && value !== "") url.searchParams.append(i.param.name, value);
      if (i.param.in === "query" && value === "" && i.param.required) missing.push(i.param.name);
    });
    return { url: url, missing: missing };
  }

  async function signBody(secret, body, inputs) {
    var encoded = secret.indexOf("whsec_") === 0 ? secret.slice(6) : secret;
    var keyBytes = Uint8Array.from(atob(encoded), function (ch) { return ch.charCodeAt(0); });
    var key = await crypto.subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    var random = new Uint8Array(12);
    crypto.getRandomValues(random);
    var id = "msg_" + Array.from(random, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
    var timestamp = String(Math.floor(Date.now() / 1000));
    var mac = await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(id + "." + timestamp + "." + body));
    var signature = "v1," + btoa(String.fromCharCode.apply(null, Array.from(new Uint8Array(mac))));
    var values = { "webhook-id": id, "webhook-timestamp": timestamp, "webhook-signature": signature };
    inputs.forEach(function (i) {
      var name = String(i.param.name).toLowerCase();
      if (i.param.in === "header" && values[name] !== undefined) i.control.value = values[name];
    });
  }

  async function send(entry, auth, inputs, bodyType, textarea, secretInput, button, output) {
    output.replaceChildren();
    var built = buildUrl(entry, inputs);
    if (built.missing.length) {
      output.append(el("p", { class: "error-text", role: "alert", text: "Fill in: " + built.missing.join(", ") + "." }));
      return;
    }
    var body = textarea ? textarea.value : null;
    var headers = new Headers();
    button.disabled = true;
    try {
      if (secretInput && secretInput.value.trim()) await signBody(secretInput.value.trim(), body || "", inputs);
      inputs.forEach(function (i) {
        if (i.param.in === "header" && i.control.value !== "") headers.set(i.param.name, i.control.value);
      });
      if (auth.kind === "admin" && tokenInput.value.trim()) headers.set("authorization", "Bearer " + tokenInput.value.trim());
      if (textarea && body !== "" && bodyType) headers.set("content-type", bodyType);
      var started = performance.now();
      var response = await fetch(built.url.href, {
        method: entry.method.toUpperCase(),
        headers: headers,
        body: textarea && body !== "" ? body : undefined,
        credentials: "omit",
        cache: "no-store",
        redirect: "manual"
      });
      var text = await response.text();
      var elapsed = Math.round(performance.now() - started);
      var shown = text;
      try { if (text) shown = json(JSON.parse(text)); } catch (ignored) { shown = text; }
      var headerLines = [];
      response.headers.forEach(function (value, name) { headerLines.push(name + ": " + value); });
      output.append(
        el("p", { class: "result-line" },
          el("span", { class: statusClass(response.status), text: String(response.status) }), " ",
          response.statusText || STATUS_TEXT[response.status] || "", " \u00b7 " + elapsed + " ms \u00b7 ",
          el("code", { text: entry.method.toUpperCase() + " " + built.url.pathname + built.url.search })),
        el("details", null, el("summary", { text: "Response headers" }), el("pre", null, el("code", { text: headerLines.join("\n") }))),
        shown ? el("pre", null, el("code", { text: shown })) : el("p", { class: "note", text: "No body." }));
    } catch (error) {
      output.append(el("p", { class: "error-text", role: "alert", text: "The request failed: " + (error && error.message ? error.message : String(error)) }));
    } finally {
      button.disabled = false;
    }
  }

  // ---- page ----

  function renderSidebar(groupList) {
    var toc = document.getElementById("toc");
    toc.replaceChildren();
    append(toc, [
      el("h2", { text: "Guide" }),
      el("ul", null,
        el("li", null, el("a", { href: "#overview", text: "Overview" })),
        el("li", null, el("a", { href: "#authentication", text: "Authentication" })),
        el("li", null, el("a", { href: "#errors", text: "Errors and codes" }))),
      groupList.map(function (group) {
        return [
          el("h2", null, el("a", { href: "#" + group.id, text: group.tag })),
          el("ul", null, group.ops.map(function (entry) {
            return el("li", null, el("a", { href: "#" + entry.id, title: entry.method.toUpperCase() + " " + entry.path },
              el("span", { class: "method " + entry.method, text: entry.method.toUpperCase() }),
              el("span", { text: entry.op.summary || entry.path })));
          }))
        ];
      })
    ]);
    var info = doc.info || {};
    document.getElementById("brand").textContent = info.title || "API";
    document.getElementById("version").textContent = "Version " + (info.version || "?") + " \u00b7 OpenAPI " + (doc.openapi || "?");
    if (info.title) document.title = info.title + " \u2014 API reference";
  }

  function renderIntro() {
    var info = doc.info || {};
    return el("header", { class: "intro", id: "overview" },
      el("h1", { text: (info.title || "API") + " API reference" }),
      el("p", { class: "meta" }, "Version " + (info.version || "?") + " \u00b7 generated from ",
        el("a", { href: HUB.openapiUrl, text: HUB.openapiUrl }), " (OpenAPI " + (doc.openapi || "?") + ")"),
      info.description ? el("div", { class: "lead" }, prose(info.description)) : null,
      el("p", null, "Every request and response body is JSON with snake_case field names. List routes take ",
        el("code", { text: "limit" }), " and ", el("code", { text: "cursor" }), " and answer ",
        el("code", { text: "{ \"data\": [...], \"next_cursor\": \"\u2026\" | null }" }),
        ". Every response carries an ", el("code", { text: "x-request-id" }), " header; quote it when you report a problem."));
  }

  function renderAuthentication() {
    var schemes = (doc.components && doc.components.securitySchemes) || {};
    return el("section", { class: "group", id: "authentication", "aria-labelledby": "authentication-title" },
      el("h2", { id: "authentication-title", text: "Authentication" }),
      el("p", null, el("strong", { text: "Networks" }), " authenticate each postback with one of the methods the operator enabled for them: ",
        el("strong", { text: "Standard Webhooks" }), " headers over the raw body (", el("code", { text: "webhook-id" }), ", ",
        el("code", { text: "webhook-timestamp" }), ", ", el("code", { text: "webhook-signature" }), " = ",
        el("code", { text: "v1,<base64 HMAC-SHA256 of id.timestamp.raw_body>" }), ", keyed with the base64 part of the ",
        el("code", { text: "whsec_\u2026" }), " secret; bodies only, never a GET); a static ", el("strong", { text: "token" }), " (",
        el("code", { text: "token" }), " parameter or ", el("code", { text: "x-postback-token" }), " header); or a ",
        el("strong", { text: "signed query" }), " (", el("code", { text: "pb_id" }), ", ", el("code", { text: "pb_ts" }), ", ",
        el("code", { text: "pb_sig" }), ", see the README). An IP allowlist may apply on top. A failure is a 401 whose ",
        el("code", { text: "errors" }), " name the check that failed; explain shows what should have been signed."),
      Object.keys(schemes).map(function (name) {
        var s = deref(schemes[name]);
        var how = s.type === "http" ? "HTTP " + s.scheme : s.type === "apiKey" ? "API key in " + s.in + " " + s.name : s.type;
        return el("p", null, el("strong", { text: "Admin routes" }), " (", el("code", { text: name }), ", " + how + "): ",
          el("code", { text: "Authorization: Bearer <token>" }), ". ", s.description ? inline(el("span"), s.description) : null,
          " Type the token into the field in the sidebar to use Try it; the page keeps it in memory only.");
      }));
  }

  function renderErrors() {
    var problem = doc.components && doc.components.schemas && doc.components.schemas.Problem;
    var codes = problemCodesInDocument();
    return el("section", { class: "group", id: "errors", "aria-labelledby": "errors-title" },
      el("h2", { id: "errors-title", text: "Errors and codes" }),
      el("p", null, "Every error is an RFC 9457 problem with content type ", el("code", { text: PROBLEM_TYPE }),
        ". Branch on ", el("code", { text: "code" }), " (stable) and the HTTP status; ", el("code", { text: "title" }), " and ",
        el("code", { text: "detail" }), " are for people. ", el("code", { text: "errors" }), " lists each problem with its ",
        el("code", { text: "location" }), ": ", el("code", { text: "body.amount" }), ", ", el("code", { text: "header.webhook-signature" }),
        ", ", el("code", { text: "query.limit" }), ", ", el("code", { text: "path.network_id" }), "."),
      el("table", null,
        el("thead", null, el("tr", null, ["Code", "HTTP status", "Title"].map(function (h) { return el("th", { scope: "col", text: h }); }))),
        el("tbody", null, codes.map(function (code) {
          var info = HUB.problemCodes[code] || {};
          return el("tr", { id: "code-" + slug(code) },
            el("th", { scope: "row", class: "name" }, el("span", { class: "leaf", text: code })),
            el("td", null, info.status ? el("span", { class: statusClass(info.status), text: String(info.status) }) : "\u2014",
              info.status && STATUS_TEXT[info.status] ? " " + STATUS_TEXT[info.status] : ""),
            el("td", { text: info.title || "" }));
        }))),
      el("h3", { text: "A problem response" }),
      el("pre", null, el("code", { text: "HTTP/1.1 422 Unprocessable Content\ncontent-type: " + PROBLEM_TYPE + "\nx-request-id: " +
        (HUB.problemExample && HUB.problemExample.request_id) + "\n\n" + json(HUB.problemExample) })),
      problem ? [el("h3", { text: "Problem fields" }), schemaTable(problem)] : null);
  }

  function render() {
    var list = operations();
    var groupList = groups(list);
    renderSidebar(groupList);
    main.replaceChildren(renderIntro(), renderAuthentication());
    groupList.forEach(function (group) {
      main.append(el("section", { class: "group", id: group.id, "aria-labelledby": group.id + "-title" },
        el("h2", { id: group.id + "-title", text: group.tag }),
        group.description ? el("div", { class: "group-desc" }, prose(group.description)) : null,
        group.ops.map(renderOperation)));
    });
    main.append(renderErrors());
    main.setAttribute("aria-busy", "false");
    if (window.location.hash.length > 1) {
      var target = document.getElementById(decodeURIComponent(window.location.hash.slice(1)));
      if (target) target.scrollIntoView();
    }
  }

  async function load() {
    try {
      var response = await fetch(HUB.openapiUrl, { headers: { accept: "application/json" }, credentials: "omit" });
      if (!response.ok) throw new Error("HTTP " + response.status + " from " + HUB.openapiUrl);
      doc = await response.json();
      render();
    } catch (error) {
      main.setAttribute("aria-busy", "false");
      main.replaceChildren(el("p", { class: "error-text", role: "alert",
        text: "Could not load the API description: " + (error && error.message ? error.message : String(error)) }));
    }
  }

  load();
})();
`;

/** JSON inside a script element: `<` escaped so that no value can close the element or open a comment. */
function scriptJson(value: unknown): string {
  return JSON.stringify(value).replaceAll("<", "\\u003c");
}

export function renderDocsPage(nonce: string, data: DocsPageData): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>API reference</title>
<link rel="icon" href="data:,">
<style nonce="${nonce}">${DOCS_STYLE}</style>
</head>
<body>
<a class="skip" href="#content">Skip to the reference</a>
<div class="layout">
<aside class="sidebar" aria-label="Contents and settings">
<p class="brand"><a href="#overview" id="brand">API reference</a></p>
<p class="version" id="version"></p>
<div class="token-box">
<label for="admin-token">Admin token</label>
<input id="admin-token" type="password" class="mono" autocomplete="off" spellcheck="false" placeholder="ADMIN_TOKEN">
<p>Sent as <code>Authorization: Bearer …</code> by Try it on admin routes. Kept in this tab's memory only: never saved.</p>
</div>
<nav class="toc" id="toc" aria-label="Contents"></nav>
</aside>
<main id="content" aria-busy="true">
<p class="loading">Loading the API description from <code>${data.openapiUrl}</code>…</p>
<noscript><p>This page renders <a href="${data.openapiUrl}">${data.openapiUrl}</a> with JavaScript; open the document directly without it.</p></noscript>
</main>
</div>
<script type="application/json" id="hub-data" nonce="${nonce}">${scriptJson(data)}</script>
<script nonce="${nonce}">${DOCS_SCRIPT}</script>
</body>
</html>
`;
}
