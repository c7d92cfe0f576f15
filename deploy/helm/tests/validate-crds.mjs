#!/usr/bin/env node
// Validates the custom resources in rendered manifests against the CRD schemas compiled into the npm packages
// @kubernetes-models/keda, @kubernetes-models/prometheus-operator and @kubernetes-models/gke.
//
//   node deploy/helm/tests/validate-crds.mjs [--modules DIR] [--json] FILE...
//
// DIR is the node_modules folder holding those packages (default: $CHORUS_TOOLS_NODE_MODULES, else
// <repo>/.tools/node_modules). Built-in kinds are left to kubernetes-validate; a kind that is neither built in nor
// known here is an error, so nothing the chart renders goes unchecked.
//
// Two checks per custom resource:
//  1. the package's schema validator (required fields, types, enums, formats);
//  2. unknown fields: the API server silently prunes fields a CRD does not declare, so a misspelt field would vanish
//     without an error. The validator is run on a Proxy that records which properties it looks at; a property it
//     never reads on an object whose keys it never enumerates is not in the schema. (Maps such as labels or KEDA
//     trigger metadata are enumerated by the validator, so their keys are not flagged.)
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../../..");

// apiVersion -> module (relative to node_modules) exporting a class per kind.
const CRD_MODULES = {
  "keda.sh/v1alpha1": "@kubernetes-models/keda/keda.sh/v1alpha1/index.js",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js",
  "networking.gke.io/v1": "@kubernetes-models/gke/networking.gke.io/v1/index.mjs",
  "networking.gke.io/v1beta1": "@kubernetes-models/gke/networking.gke.io/v1beta1/index.mjs",
  "cloud.google.com/v1": "@kubernetes-models/gke/cloud.google.com/v1/index.mjs",
};
// API groups whose kinds are built in (validated by kubernetes-validate, not here).
const BUILTIN_GROUPS = new Set([
  "", "apps", "batch", "policy", "autoscaling", "networking.k8s.io", "rbac.authorization.k8s.io",
  "storage.k8s.io", "scheduling.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "node.k8s.io",
]);

function parseArgs(argv) {
  const opts = { modules: process.env.CHORUS_TOOLS_NODE_MODULES || path.join(repo, ".tools/node_modules"), json: false, files: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--modules") opts.modules = argv[++i];
    else if (a === "--json") opts.json = true;
    else if (a === "-h" || a === "--help") {
      console.log("usage: validate-crds.mjs [--modules DIR] [--json] FILE...");
      process.exit(0);
    } else opts.files.push(a);
  }
  if (opts.files.length === 0) {
    console.error("validate-crds: no files given");
    process.exit(2);
  }
  return opts;
}

async function importFrom(modules, rel) {
  const file = path.join(modules, rel);
  if (!fs.existsSync(file)) {
    throw new Error(`${file} not found: install the CRD model packages (deploy/tools/install)`);
  }
  return import(pathToFileURL(file).href);
}

// Runs `validate` on a deep Proxy of `doc`; returns the dotted paths of properties the validator never looked at.
function unknownFields(validateFn, doc) {
  const seen = new Map(); // object -> { read: Set, enumerated: bool, path }
  const proxies = new WeakMap();
  const wrap = (obj, p) => {
    if (obj === null || typeof obj !== "object") return obj;
    if (proxies.has(obj)) return proxies.get(obj);
    const rec = { read: new Set(), enumerated: false, path: p };
    seen.set(obj, rec);
    const proxy = new Proxy(obj, {
      get(target, key, receiver) {
        if (typeof key === "string") rec.read.add(key);
        const v = Reflect.get(target, key, receiver);
        if (typeof key !== "string" || typeof v === "function") return v;
        return wrap(v, Array.isArray(target) ? `${p}[${key}]` : (p ? `${p}.${key}` : key));
      },
      has(target, key) {
        if (typeof key === "string") rec.read.add(key);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        rec.enumerated = true;
        return Reflect.ownKeys(target);
      },
    });
    proxies.set(obj, proxy);
    return proxy;
  };
  const proxy = wrap(doc, "");
  let error = null;
  try {
    validateFn.call(proxy);
  } catch (e) {
    error = e;
  }
  const unknown = [];
  for (const [obj, rec] of seen) {
    if (Array.isArray(obj) || rec.enumerated) continue;
    for (const key of Object.keys(obj)) {
      if (!rec.read.has(key)) unknown.push(rec.path ? `${rec.path}.${key}` : key);
    }
  }
  return { error, unknown };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const yaml = (await importFrom(opts.modules, "js-yaml/index.js")).default;
  const cache = new Map();
  const results = [];
  for (const file of opts.files) {
    const docs = yaml.loadAll(fs.readFileSync(file, "utf8")).filter((d) => d && typeof d === "object");
    for (const doc of docs) {
      const apiVersion = String(doc.apiVersion || "");
      const kind = String(doc.kind || "");
      const name = (doc.metadata && doc.metadata.name) || "?";
      const id = `${path.basename(file)} ${kind}/${name}`;
      const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
      if (BUILTIN_GROUPS.has(group)) continue;
      const rel = CRD_MODULES[apiVersion];
      if (!rel) {
        results.push({ file, kind, name, ok: false, errors: [`no schema known for ${apiVersion} ${kind}`] });
        continue;
      }
      if (!cache.has(rel)) cache.set(rel, await importFrom(opts.modules, rel));
      const Cls = cache.get(rel)[kind];
      if (typeof Cls !== "function") {
        results.push({ file, kind, name, ok: false, errors: [`${apiVersion} has no kind ${kind}`] });
        continue;
      }
      const errors = [];
      const plain = JSON.parse(JSON.stringify(doc));
      const { error, unknown } = unknownFields(Cls.prototype.validate, plain);
      if (error) errors.push(String(error.message || error).trim());
      for (const u of unknown) errors.push(`unknown field ${u} (not in the ${kind} schema; the API server would drop it)`);
      results.push({ file, kind, name, ok: errors.length === 0, errors });
      if (!opts.json) {
        console.log(`${errors.length ? "FAIL" : "ok  "} ${id}${errors.length ? "\n      " + errors.join("\n      ") : ""}`);
      }
    }
  }
  const failed = results.filter((r) => !r.ok);
  if (opts.json) {
    console.log(JSON.stringify(results, null, 2));
  } else {
    for (const r of failed.filter((r) => r.errors[0].startsWith("no schema") || r.errors[0].includes("has no kind"))) {
      console.log(`FAIL ${path.basename(r.file)} ${r.kind}/${r.name}: ${r.errors.join("; ")}`);
    }
    console.log(`validate-crds: ${results.length - failed.length} custom resources valid, ${failed.length} invalid`);
  }
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  console.error(`validate-crds: ${e.stack || e}`);
  process.exit(2);
});
