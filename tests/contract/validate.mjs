// validate.mjs - the contract test: checks every HTTP response recorded by
// the end-to-end tests against openapi.yaml, and checks that the spec and
// the server's route table (server/routes.c) name the same routes.
//
// usage: node validate.mjs OPENAPI.yaml RESPONSES.jsonl [ROUTES.c]
//
// Each line of RESPONSES.jsonl is {"method","path","status",
// "content_type","body"} (body parsed when it was JSON). A response is
// valid when the spec has its path and method and documents its status
// with a media type whose schema accepts the body. A path the spec does
// not have must have been answered 404, a method it does not have 405,
// both with the spec's error body. Fails (exit 1) on any mismatch, on a
// route served but not in the spec or in the spec but not served, and on
// a spec operation that no recorded request reached.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import YAML from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const [specPath, jsonlPath, routesPath = join(here, '../../server/routes.c')] =
  process.argv.slice(2);
if (!specPath || !jsonlPath) {
  console.error('usage: node validate.mjs OPENAPI.yaml RESPONSES.jsonl [ROUTES.c]');
  process.exit(2);
}

const spec = YAML.parse(readFileSync(specPath, 'utf8'));
const failures = [];
const fail = (msg) => failures.push(msg);

if (!/^3\.1\./.test(spec.openapi ?? '')) fail(`openapi must be 3.1.x, got ${spec.openapi}`);

// ajv compiles each schema with the spec's components reachable by $ref
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema({ $id: 'spec', components: spec.components ?? {} });
const fixRefs = (s) => JSON.parse(JSON.stringify(s).replaceAll('"#/components/', '"spec#/components/'));
const compiled = new Map();
function validator(schema) {
  const key = JSON.stringify(schema);
  if (!compiled.has(key)) compiled.set(key, ajv.compile(fixRefs(schema)));
  return compiled.get(key);
}
function resolve(obj) {
  // a Response object may itself be a $ref into components.responses
  while (obj && obj.$ref) {
    const parts = obj.$ref.replace(/^#\//, '').split('/');
    obj = parts.reduce((o, p) => o?.[p], spec);
  }
  return obj;
}

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];
const templates = Object.keys(spec.paths ?? {}).map((t) => ({
  template: t,
  re: new RegExp('^' + t.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\\?\{[^}]+\\?\}/g, '[^/]+') + '$'),
}));
const matchPath = (p) => templates.find(({ re }) => re.test(p))?.template;

// the spec's routes
const specRoutes = new Set();
for (const [t, item] of Object.entries(spec.paths ?? {}))
  for (const m of METHODS) if (item[m]) specRoutes.add(`${m.toUpperCase()} ${t}`);

// the server's routes: rows {"METHOD", "path", handler, limit, flags, "name"}
const served = new Set();
const src = readFileSync(routesPath, 'utf8');
for (const row of src.matchAll(/\{\s*"(GET|POST|PUT|DELETE|PATCH)"\s*,((?:[^{}"]|"[^"]*")*)\}/g)) {
  const strings = [...row[2].matchAll(/"([^"]*)"/g)].map((m) => m[1]);
  served.add(`${row[1]} ${strings[strings.length - 1]}`);
}
if (served.size === 0) fail(`no routes found in ${routesPath}`);
for (const r of served) if (!specRoutes.has(r)) fail(`served but not in the spec: ${r}`);
for (const r of specRoutes) if (!served.has(r)) fail(`in the spec but not served: ${r}`);

const errorSchema = spec.components?.schemas?.ErrorBody;
if (!errorSchema) fail('components.schemas.ErrorBody is missing');

const reached = new Set();
const lines = readFileSync(jsonlPath, 'utf8').split('\n').filter(Boolean);
let checked = 0;
for (const [i, line] of lines.entries()) {
  const rec = JSON.parse(line);
  const where = `response ${i + 1}: ${rec.method} ${rec.path} -> ${rec.status}`;
  const template = matchPath(rec.path);
  const op = template && spec.paths[template][rec.method.toLowerCase()];
  let schema;
  let media = rec.content_type.split(';')[0].trim();
  if (!template || !op) {
    const want = template ? 405 : 404;
    if (rec.status !== want) {
      fail(`${where}: ${template ? 'method' : 'path'} not in the spec, expected ${want}`);
      continue;
    }
    schema = errorSchema;
  } else {
    reached.add(`${rec.method} ${template}`);
    const resp = resolve(op.responses?.[String(rec.status)] ?? op.responses?.default);
    if (!resp) {
      fail(`${where}: status ${rec.status} not documented for ${rec.method} ${template}`);
      continue;
    }
    const content = resp.content ?? {};
    if (!content[media]) {
      fail(`${where}: content type '${media}' not documented (has ${Object.keys(content).join(', ') || 'none'})`);
      continue;
    }
    schema = content[media].schema;
  }
  if (schema && media === 'application/json') {
    const v = validator(schema);
    if (!v(rec.body)) {
      fail(`${where}: body does not match the schema: ${ajv.errorsText(v.errors)}\n    body: ${JSON.stringify(rec.body).slice(0, 300)}`);
      continue;
    }
  } else if (schema && typeof rec.body !== 'string') {
    fail(`${where}: expected a text body`);
    continue;
  }
  checked++;
}
for (const r of specRoutes) if (!reached.has(r)) fail(`no recorded request reached ${r}`);

console.log(`contract: ${checked} of ${lines.length} responses valid; ${specRoutes.size} spec routes, ${served.size} served, ${reached.size} reached`);
if (failures.length) {
  for (const f of failures) console.log(`contract: FAIL ${f}`);
  process.exit(1);
}
