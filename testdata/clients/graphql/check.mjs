// check.mjs loads Vigil's GraphQL schema the way GraphiQL, Apollo, codegen
// and Postman do, with graphql-js, and runs every GraphQL example of docs/:
//
//   cd testdata/clients/graphql && npm ci
//   VIGIL_URL=http://127.0.0.1:8080 VIGIL_KEY=<admin key> node check.mjs
//
// It checks that
//   - getIntrospectionQuery() is answered (POST, Accept:
//     application/graphql-response+json), and buildClientSchema and
//     validateSchema accept the result;
//   - GET /graphql/schema.graphql is SDL that buildSchema accepts and that
//     prints the same as the introspected schema;
//   - every ```graphql block of docs/*.md and README.md validates against
//     the introspected schema (graphql-js's rules, the overlap rule among
//     them) and runs by POST and, being a query, by GET, without an error
//     but not_found (the examples name rows a live server may not hold).
// It exits 1 on the first kind of failure it reports, 0 when all pass.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  buildClientSchema, buildSchema, getIntrospectionQuery, lexicographicSortSchema,
  parse, printSchema, validate, validateSchema,
} from "graphql";

const base = (process.env.VIGIL_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const key = process.env.VIGIL_KEY;
if (!key) {
  console.error("set VIGIL_KEY to a key that may read reports (vigil tenant create prints an admin key)");
  process.exit(2);
}
const auth = { Authorization: `Bearer ${key}` };
let failed = false;
const fail = (...msg) => { failed = true; console.error("FAIL", ...msg); };
const ok = (...msg) => console.log("ok  ", ...msg);

async function post(query, variables, accept = "application/graphql-response+json") {
  const res = await fetch(`${base}/graphql`, {
    method: "POST",
    headers: { ...auth, "Content-Type": "application/json", Accept: accept },
    body: JSON.stringify({ query, variables }),
  });
  return { status: res.status, type: res.headers.get("content-type"), body: await res.json() };
}

async function get(query) {
  const res = await fetch(`${base}/graphql?${new URLSearchParams({ query })}`, {
    headers: { ...auth, Accept: "application/graphql-response+json" },
  });
  return { status: res.status, body: await res.json() };
}

// 1. Introspection.
const intro = await post(getIntrospectionQuery());
if (intro.status !== 200 || intro.body.errors) {
  fail("getIntrospectionQuery:", intro.status, JSON.stringify(intro.body.errors));
  process.exit(1);
}
if (!intro.type?.startsWith("application/graphql-response+json")) {
  fail("Content-Type of an application/graphql-response+json request:", intro.type);
}
const schema = buildClientSchema(intro.body.data);
const schemaErrors = validateSchema(schema);
if (schemaErrors.length) fail("validateSchema:", schemaErrors.map(String).join("; "));
else ok(`introspection: ${Object.keys(schema.getTypeMap()).length} types, valid`);

// 2. The SDL.
const sdlRes = await fetch(`${base}/graphql/schema.graphql`, { headers: auth });
const sdl = await sdlRes.text();
if (sdlRes.status !== 200) {
  fail("GET /graphql/schema.graphql:", sdlRes.status, sdl.slice(0, 200));
} else {
  try {
    const fromSDL = buildSchema(sdl);
    const a = printSchema(lexicographicSortSchema(fromSDL));
    const b = printSchema(lexicographicSortSchema(schema));
    if (a !== b) {
      const al = a.split("\n"), bl = b.split("\n");
      const i = al.findIndex((l, n) => l !== bl[n]);
      fail(`the SDL differs from introspection at line ${i + 1}:\n  sdl:           ${al[i]}\n  introspection: ${bl[i]}`);
    } else {
      ok("SDL: builds, and prints the same as introspection");
    }
  } catch (e) {
    fail("buildSchema(SDL):", e.message);
  }
}

// 3. The documented queries.
const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const files = readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => join(root, "docs", f));
files.push(join(root, "README.md"));
let examples = 0;
for (const file of files) {
  const text = readFileSync(file, "utf8");
  for (const m of text.matchAll(/^```graphql\n([\s\S]*?)^```/gm)) {
    examples++;
    const name = `${file.slice(root.length + 1)} example ${examples}`;
    let doc;
    try {
      doc = parse(m[1]);
    } catch (e) {
      fail(name, "does not parse:", e.message);
      continue;
    }
    const errs = validate(schema, doc);
    if (errs.length) {
      fail(name, "is invalid:", errs.map(String).join("; "));
      continue;
    }
    for (const [how, res] of [["POST", await post(m[1], {})], ["GET", await get(m[1])]]) {
      const bad = (res.body.errors || []).filter((e) => e.extensions?.code !== "not_found");
      if (res.status !== 200 || bad.length) fail(name, how, res.status, JSON.stringify(bad));
      else ok(name, how);
    }
  }
}
if (examples === 0) fail("no ```graphql examples found under", root);
process.exit(failed ? 1 : 0);
