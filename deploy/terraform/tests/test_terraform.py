"""Offline tests of deploy/terraform: no cloud, no provider or module download. Run with scripts/terraform-test.

- terraform fmt -check over everything (and the example tfvars files, which fmt does not pick up by name);
- terraform test in modules/chorus-values, fed each example tfvars file: the values and node groups it builds,
  and every bad-variable run (expect_failures), whose message is also checked here by planning the run alone;
- the module's values for each example rendered through the chart (helm template), validated strictly against
  Kubernetes 1.33 and the CRD schemas as the chart tests do, and the promises asserted against what the root
  configurations create: GPU pools placed on the GPU nodes with their GPU request and capacity, the KEDA windows and
  threshold, Prometheus as the root installs it, the ingress of each platform;
- python-hcl2: every key of the example tfvars (and of the familiar workers block) is a declared variable of the
  matching type; the roots declare exactly the module's variables and pass them on; every version is pinned;
- checkov on both root configurations: no failed check, every skip justified beside it.

Tests that need terraform skip with a loud reason where it is not installed (scripts/terraform-test says so too);
every other tool missing is a failure with the install hint, as in the chart tests.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import hcltypes as hcl
from deploytest import INSTALL_HINT, REPO, TOOLS, tool

TF = REPO / "deploy" / "terraform"
MODULE = TF / "modules" / "chorus-values"
ROOTS = {"aws": TF / "infra" / "aws" / "chorus-eks", "gcp": TF / "infra" / "gcp" / "chorus-gke"}
EXAMPLES = {p: TF / f"{p}-terraform.tfvars.example" for p in ROOTS}
TFTESTS = {"aws": ["aws", "aws_bad"], "gcp": ["gcp", "gcp_bad"]}
CHART = REPO / "deploy" / "helm" / "chorus"
HELM_TESTS = REPO / "deploy" / "helm" / "tests"
KUBE_VERSION = "1.33.0"
NAMESPACE = "chorus"
RELEASE = "chorus"
# Set only by the root configurations (computed from the resources they create), never in tfvars.
ROOT_ONLY_MODULE_VARS = {"platform", "service_account_annotations"}
API_KEY_VARS = {"chorus_api_key", "chorus_container_key"}
# What the roots pass as service_account_annotations, for the renders.
ANNOTATIONS = {
    "aws": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/chorus-prod-chorus-artifacts"},
    "gcp": {"iam.gke.io/gcp-service-account": "chorus-prod-chorus@my-project.iam.gserviceaccount.com"},
}
TF_MISSING = ("TERRAFORM IS NOT INSTALLED: the terraform fmt / test / render checks of deploy/terraform are SKIPPED "
              "(install terraform >= 1.9 to run them; no package registry here ships it)")

# The familiar values.yaml's workers block (issue 15), verbatim.
FAMILIAR_WORKERS = """
workers:
  - name: tts-worker
    workerArgs:
      model: en_US-joe-medium
      image: chorus
      gpuType: nvidia.com/gpu
      capacity: 4
      operation: TTS
      useCB: true
      useLora: false
    autoscaling:
      enabled: true
      threshold: "0.6"
      minReplicas: 1
      maxReplicas: 10
"""


# --- tools -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def terraform() -> Path:
    found = shutil.which("terraform")
    if not found:
        pytest.skip(TF_MISSING)
    out = subprocess.run([found, "version", "-json"], capture_output=True, text=True, check=False,
                         env=tf_env_base()).stdout
    version = tuple(int(x) for x in json.loads(out)["terraform_version"].split(".")[:2])
    assert version >= (1, 9), f"terraform {version} is too old: the module's validations need 1.9 or later"
    return Path(found)


@pytest.fixture(scope="session")
def checkov() -> Path:
    return tool(TOOLS / "checkov" / "bin" / "checkov", "checkov")


def tf_env_base() -> dict[str, str]:
    """The environment without any TF_* of the caller (TF_VAR_x would change the tests' variables), no
    checkpoint calls home, no CLI configuration file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    env.update({"CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "TF_CLI_CONFIG_FILE": os.devnull})
    return env


@pytest.fixture(scope="session")
def tf(terraform, tmp_path_factory):
    """Runs terraform in the module directory with its data directory outside the tree, after `terraform init`
    (no providers, no remote modules: nothing is downloaded)."""
    data = tmp_path_factory.mktemp("tf-data")
    env = {**tf_env_base(), "TF_DATA_DIR": str(data)}

    def run(*args, cwd: Path = MODULE, stdin: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(terraform), *args], cwd=cwd, env=env, input=stdin, capture_output=True,
                              text=True, timeout=timeout, check=False)

    r = run("init", "-input=false", "-no-color")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (MODULE / ".terraform.lock.hcl").exists(), "the module must need no provider"
    return run


def plan_outputs(tf, tmp: Path, platform: str, extra_vars: dict | None = None) -> dict:
    """The module's outputs planned from a platform's example tfvars (plus extra variables)."""
    var_file = tmp / "extra.tfvars.json"
    var_file.write_text(json.dumps({"platform": platform, **(extra_vars or {})}))
    plan = tmp / "plan"
    r = tf("plan", "-input=false", "-lock=false", "-no-color", f"-var-file={EXAMPLES[platform]}", f"-var-file={var_file}",
           f"-out={plan}")
    assert r.returncode == 0, r.stdout + r.stderr
    r = tf("show", "-json", str(plan))
    assert r.returncode == 0, r.stderr
    return {k: v["value"] for k, v in json.loads(r.stdout)["planned_values"]["outputs"].items()}


# --- formatting and terraform test -------------------------------------------------------------------------------


def test_terraform_fmt(tf):
    r = tf("fmt", "-check", "-recursive", "-diff", "-no-color", str(TF), cwd=REPO)
    assert r.returncode == 0, f"terraform fmt -recursive deploy/terraform would change:\n{r.stdout}{r.stderr}"
    for example in EXAMPLES.values():
        r = tf("fmt", "-check", "-", stdin=example.read_text())
        assert r.returncode == 0, f"{example.name} is not formatted (terraform fmt - < {example.name})"


def test_tftest_files_do_not_reach_the_cloud_roots():
    """The module's tests must stay provider-free: no reference to the root configurations or a remote module."""
    for f in (MODULE / "tests").glob("*.tftest.hcl"):
        text = f.read_text()
        assert "infra/" not in text and not re.search(r'^\s*(module|provider|mock_provider|override_module)\b', text, re.M), f
    assert not hcl.load_dir(MODULE).get("provider") and not hcl.load_dir(MODULE).get("module")


@pytest.mark.parametrize("platform,name", [(p, n) for p, names in TFTESTS.items() for n in names])
def test_terraform_test(tf, platform, name):
    f = MODULE / "tests" / f"{name}.tftest.hcl"
    runs = len(re.findall(r'^run "', f.read_text(), re.M))
    assert runs > 0
    r = tf("test", "-no-color", f"-filter=tests/{name}.tftest.hcl", f"-var-file={EXAMPLES[platform]}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Success! {runs} passed, 0 failed." in r.stdout, r.stdout


# --- bad variables: each run's message --------------------------------------------------------------------------

BAD = [(p, n) for p, names in TFTESTS.items() for n in names if n.endswith("_bad")]


def bad_runs() -> list[tuple[str, str, str, str]]:
    """(platform, file, run, expected message) for every run of the *_bad.tftest.hcl files."""
    out = []
    for platform, name in BAD:
        text = (MODULE / "tests" / f"{name}.tftest.hcl").read_text()
        found = re.findall(r'^# expect: (.+)\nrun "([^"]+)"', text, re.M)
        assert len(found) == len(re.findall(r'^run "', text, re.M)), f"{name}: every run needs an # expect: line"
        out += [(platform, name, run, msg) for msg, run in found]
    return out


def variable_at(line: int) -> str:
    """The variable whose block holds this line of the module's variables.tf."""
    current = None
    for i, text in enumerate((MODULE / "variables.tf").read_text().splitlines(), start=1):
        m = re.match(r'variable "([a-z_]+)" \{', text)
        if m:
            current = m.group(1)
        if i == line:
            return current
    raise AssertionError(f"variables.tf has no line {line}")


@pytest.fixture(scope="session")
def bad_plans(tf, tmp_path_factory) -> dict:
    """Plans each bad run alone (its file's and its own variables over the example), two at a time."""
    tmp = tmp_path_factory.mktemp("bad")
    parsed = {name: hcl.load(MODULE / "tests" / f"{name}.tftest.hcl") for _, name in BAD}

    def one(case):
        platform, name, run, _ = case
        file_vars = {}
        for v in parsed[name].get("variables", []):
            file_vars.update(hcl.plain(v))
        run_body = hcl.blocks(parsed[name], "run")[run]
        run_vars = {}
        for v in run_body.get("variables", []):
            run_vars.update(hcl.plain(v))
        expected = [re.fullmatch(r"\$\{var\.([a-z_]+)\}", x).group(1) for x in run_body["expect_failures"]]
        var_file = tmp / f"{name}-{run}.tfvars.json"
        var_file.write_text(json.dumps({**file_vars, **run_vars}))
        r = tf("plan", "-input=false", "-lock=false", "-json", f"-var-file={EXAMPLES[platform]}", f"-var-file={var_file}")
        errors = [json.loads(line)["diagnostic"] for line in r.stdout.splitlines()
                  if line.startswith("{") and json.loads(line).get("@level") == "error"]
        return case, (r.returncode, errors, expected)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, bad_runs()))


@pytest.mark.parametrize("case", bad_runs(), ids=lambda c: f"{c[1]}::{c[2]}")
def test_bad_variable_is_refused_with_its_message(bad_plans, case):
    rc, errors, expected_vars = bad_plans[case]
    message = case[3]
    assert rc != 0 and errors, "the plan must fail"
    failed_vars = set()
    for e in errors:
        assert e["summary"] == "Invalid value for variable", e
        m = re.search(r"checked by the validation rule at variables\.tf:(\d+),", e["detail"])
        assert m, e["detail"]
        failed_vars.add(variable_at(int(m.group(1))))
    assert failed_vars == set(expected_vars), f"refused by {failed_vars}, expected {expected_vars}: {errors}"
    details = " ".join(re.sub(r"\s+", " ", e["detail"]) for e in errors)
    assert message in details, f"expected {message!r} in: {details}"


# --- the values through the chart --------------------------------------------------------------------------------

AIR_GAPPED_SEED = json.dumps({"license_id": "lic-test-1", "customer": "Example", "signature": "c2lnbmF0dXJl"})
AIR_GAPPED_KEY = "MCowBQYDK2VwAyEAbX6Ih0aZ+ZqXJ1c0gq0uTg3mF1Y="
RENDER_CASES = {
    "aws": ("aws", {"service_account_annotations": ANNOTATIONS["aws"]}),
    "gcp": ("gcp", {"service_account_annotations": ANNOTATIONS["gcp"]}),
    # Air-gapped with a seed license, no bucket, no ingress, fixed-size pool: the sensitive values document merges.
    "aws-air-gapped": ("aws", {
        "license_mode": "air-gapped", "license_seed": AIR_GAPPED_SEED, "license_trusted_keys": [AIR_GAPPED_KEY],
        "enable_hot_reload": False, "enable_ingress": False, "ingress_route": "", "certificate_arn": "",
    }),
}


@pytest.fixture(scope="session")
def renders(tf, helm, tmp_path_factory) -> dict:
    """case -> {"outputs", "tfvars", "paths", "docs"}: the module planned from the example, rendered by the chart."""
    out = {}
    for case, (platform, extra) in RENDER_CASES.items():
        tmp = tmp_path_factory.mktemp(case)
        outputs = plan_outputs(tf, tmp, platform, extra)
        values = tmp / "values.yaml"
        license_values = tmp / "license-values.yaml"
        values.write_text(outputs["values_yaml"])
        license_values.write_text(outputs["license_values_yaml"])
        r = subprocess.run([str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version",
                            KUBE_VERSION, "--values", str(values), "--values", str(license_values)],
                           capture_output=True, text=True, check=False)
        assert r.returncode == 0, f"helm template failed for the {case} values:\n{r.stderr}"
        path = tmp / "render.yaml"
        path.write_text(r.stdout)
        out[case] = {
            "outputs": outputs,
            "platform": platform,
            "tfvars": {**hcl.plain(hcl.load(EXAMPLES[platform])), **extra},
            "path": path,
            "docs": [d for d in yaml.safe_load_all(r.stdout) if d],
        }
    return out


def one(render: dict, kind: str, name: str) -> dict:
    found = [d for d in render["docs"] if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {[d['metadata']['name'] for d in render['docs'] if d['kind'] == kind]}"
    return found[0]


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_renders_validate_strictly_against_kubernetes(kubernetes_validate, renders):
    paths = [str(r["path"]) for r in renders.values()]
    r = subprocess.run([str(kubernetes_validate), "-k", KUBE_VERSION, "--strict", *paths], capture_output=True,
                       text=True, check=False)
    both = r.stdout + r.stderr
    assert r.returncode == 0 and "ERROR" not in both, both
    builtin = sum(1 for c in renders.values() for d in c["docs"]
                  if "/" not in d["apiVersion"] or d["apiVersion"].split("/")[0] in ("apps", "policy", "networking.k8s.io"))
    assert both.count("passed for resource") == builtin, both


def test_custom_resources_against_crd_schemas(node, node_modules, renders):
    paths = [str(r["path"]) for r in renders.values()]
    r = subprocess.run([str(node), str(HELM_TESTS / "validate-crds.mjs"), "--modules", str(node_modules), "--json",
                        *paths], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    results = json.loads(r.stdout)
    assert all(x["ok"] for x in results), [x for x in results if not x["ok"]]
    assert {"ScaledObject", "PodMonitor", "ManagedCertificate"} <= {x["kind"] for x in results}


def selector_matches(pod_spec: dict, node_labels: dict) -> bool:
    """Whether a node with these labels satisfies the pod's nodeSelector and required node affinity."""
    if any(node_labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = (((pod_spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution"))
    if not required:
        return True

    def expr_ok(e):
        op, key, vals = e["operator"], e["key"], e.get("values", [])
        return {"Exists": key in node_labels, "DoesNotExist": key not in node_labels,
                "In": node_labels.get(key) in vals, "NotIn": node_labels.get(key) not in vals}[op]

    return any(all(expr_ok(e) for e in term.get("matchExpressions", [])) for term in required["nodeSelectorTerms"])


def tolerates(pod_spec: dict, taint: dict) -> bool:
    return any(t.get("key") == taint["key"] and t.get("effect", taint["effect"]) == taint["effect"]
               and (t.get("operator") == "Exists" or t.get("value") == taint.get("value"))
               for t in pod_spec.get("tolerations", []))


def nodes_of(render: dict) -> dict[str, tuple[dict, list[dict]]]:
    """pool/group name -> (labels, taints) of the nodes the root configuration creates (GKE adds its own)."""
    o, v = render["outputs"], render["tfvars"]
    if render["platform"] == "aws":
        effect = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}
        return {k: (g["labels"], [{"key": t["key"], "value": t.get("value"), "effect": effect[t["effect"]]}
                                  for t in g["taints"].values()])
                for k, g in o["eks_managed_node_groups"].items()}
    nodes = {}
    for p in o["gke_node_pools"]:
        labels = {**o["gke_node_pools_labels"][p["name"]], "cloud.google.com/gke-nodepool": p["name"]}
        taints = []
        if "accelerator_type" in p:  # what GKE puts on accelerator nodes
            labels["cloud.google.com/gke-accelerator"] = p["accelerator_type"]
            taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
        nodes[p["name"]] = (labels, taints)
    assert set(nodes) == set(v["node_pools"])
    return nodes


@pytest.mark.parametrize("case", ["aws", "gcp"])
def test_gpu_worker_pool_lands_on_the_gpu_nodes_with_its_gpu_and_capacity(renders, case):
    r = renders[case]
    (w,) = r["tfvars"]["workers"]
    dep = one(r, "Deployment", w["name"])  # the runbook's `deployment/<worker-name>`
    spec = dep["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["args"][c["args"].index("--capacity") + 1] == str(w["workerArgs"]["capacity"])
    assert c["args"][c["args"].index("--model") + 1] == w["workerArgs"]["model"]
    assert c["image"] == f"{r['tfvars']['image_registry']}/{w['workerArgs']['image']}:{r['tfvars']['release_tag']}"
    assert env_of(c)["CHORUS_DEVICE"]["value"] == "cuda"
    nodes = nodes_of(r)
    gpu_labels, gpu_taints = nodes["gpu"]
    cpu_labels, _ = nodes["default"]
    assert gpu_taints and all(tolerates(spec, t) for t in gpu_taints), (gpu_taints, spec.get("tolerations"))
    assert selector_matches(spec, gpu_labels), f"the GPU pool cannot land on the GPU nodes {gpu_labels}"
    assert not selector_matches(spec, cpu_labels), "the GPU pool must not land on the CPU nodes"
    # The other pods run on the untainted CPU nodes.
    api = one(r, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]
    assert selector_matches(api, cpu_labels)


def prometheus_release(platform: str) -> tuple[str, str]:
    """(name, namespace) of the kube-prometheus-stack release the root configuration installs."""
    rel = root_resource(platform, "helm_release", "kube_prometheus_stack")
    return hcl.unquote(rel["name"]), hcl.unquote(rel["namespace"])


@pytest.mark.parametrize("case", ["aws", "gcp"])
def test_keda_windows_threshold_and_the_prometheus_the_root_installs(renders, case):
    r = renders[case]
    (w,) = r["tfvars"]["workers"]
    so = one(r, "ScaledObject", w["name"])["spec"]
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 30
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert so["scaleTargetRef"]["name"] == w["name"]
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (w["autoscaling"]["minReplicas"], w["autoscaling"]["maxReplicas"])
    (load,) = [t for t in so["triggers"] if t["name"] == "worker-load"]
    assert load["metadata"]["threshold"] == "0.6" == w["autoscaling"]["threshold"]
    name, namespace = prometheus_release(r["platform"])
    assert load["metadata"]["serverAddress"] == f"http://prometheus-operated.{namespace}.svc:9090"
    pm = one(r, "PodMonitor", f"{RELEASE}-monitor")
    assert pm["metadata"]["labels"]["release"] == name, "kube-prometheus-stack selects PodMonitors by its release name"


def test_aws_ingress_is_an_alb_with_the_certificate(renders):
    r = renders["aws"]
    ing = one(r, "Ingress", r["outputs"]["ingress_name"])  # the name the root's ingress_address output reads
    a = ing["metadata"]["annotations"]
    assert ing["spec"]["ingressClassName"] == "alb"
    assert a["alb.ingress.kubernetes.io/certificate-arn"] == r["tfvars"]["certificate_arn"]
    assert a["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert a["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert json.loads(a["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert a["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    assert a["alb.ingress.kubernetes.io/tags"] == f"chorus-cluster={r['tfvars']['name']}"
    assert [rule["host"] for rule in ing["spec"]["rules"]] == [r["tfvars"]["ingress_route"]]
    backends = {p["path"]: p["backend"]["service"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert backends["/"] == f"{RELEASE}-api-server"
    assert not [d for d in r["docs"] if d["kind"] == "ManagedCertificate"]


def test_gke_ingress_uses_the_static_ip_and_a_managed_certificate(renders):
    r = renders["gcp"]
    ing = one(r, "Ingress", r["outputs"]["ingress_name"])
    a = ing["metadata"]["annotations"]
    assert a["kubernetes.io/ingress.class"] == "gce"
    # The address the root creates (google_compute_global_address, name from the module) is the one the Ingress names.
    assert a["kubernetes.io/ingress.global-static-ip-name"] == r["outputs"]["ingress_static_ip_name"]
    assert r["outputs"]["ingress_static_ip_name"] == r["tfvars"]["ingress_static_ip_name"]
    assert a["networking.gke.io/managed-certificates"] == f"{RELEASE}-ssl-cert"
    cert = one(r, "ManagedCertificate", f"{RELEASE}-ssl-cert")
    assert cert["spec"]["domains"] == [r["tfvars"]["ingress_route"]]
    assert [rule["host"] for rule in ing["spec"]["rules"]] == [r["tfvars"]["ingress_route"]]
    assert "alb.ingress.kubernetes.io/certificate-arn" not in a


@pytest.mark.parametrize("case", ["aws", "gcp"])
def test_pods_use_the_bucket_through_the_workload_identity(renders, case):
    r = renders[case]
    sa_name = r["outputs"]["service_account_name"]
    sa = one(r, "ServiceAccount", sa_name)
    assert sa["metadata"]["annotations"] == ANNOTATIONS[case]
    location = r["outputs"]["artifacts_location"]
    assert location == f"{'s3' if case == 'aws' else 'gs'}://{r['outputs']['artifact_bucket']}/chorus"
    for name in (f"{RELEASE}-api", r["tfvars"]["workers"][0]["name"]):
        spec = one(r, "Deployment", name)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == sa_name
        env = env_of(spec["containers"][0])
        assert env["CHORUS_ARTIFACTS"]["value"] == location
        assert env["CHORUS_ENABLE_HOT_RELOAD"]["value"] == "true"
        if case == "aws":
            assert env["AWS_REGION"]["value"] == r["tfvars"]["region"]


def root_resource(platform: str, rtype: str, name: str) -> dict:
    found = [b for item in hcl.load_dir(ROOTS[platform]).get("resource", []) for k, v in item.items()
             if hcl.unquote(k) == rtype for n, b in v.items() if hcl.unquote(n) == name]
    assert len(found) == 1, f"{platform}: no single {rtype}.{name}"
    return found[0]


@pytest.mark.parametrize("case", ["aws", "gcp"])
def test_api_key_secret_and_storage_class_are_those_the_root_creates(renders, case):
    r = renders[case]
    secret = root_resource(case, "kubernetes_secret_v1", "api_keys")
    assert "${module.chorus_values.api_key_secret}" in json.dumps(secret["metadata"])
    assert "CARTESIA_API_KEY = var.chorus_api_key" in re.sub(r"\s+", " ", secret["data"])
    api = one(r, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]["containers"][0]
    ref = env_of(api)["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": r["outputs"]["api_key_secret"], "key": "CARTESIA_API_KEY"}
    (pvc,) = [d for d in r["docs"] if d["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["storageClassName"] == r["outputs"]["storage_class"]
    if case == "aws":  # EKS has no default encrypted gp3 class: the root makes it under that name
        sc = root_resource("aws", "kubernetes_storage_class_v1", "gp3")
        assert sc["metadata"][0]["name"] == "${module.chorus_values.storage_class}"
        assert hcl.plain(sc["parameters"]) == {"type": "gp3", "encrypted": "true"}


def test_air_gapped_license_reaches_the_license_proxy(renders):
    r = renders["aws-air-gapped"]
    proxy = one(r, "Deployment", f"{RELEASE}-license-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(proxy)["CHORUS_AIR_GAPPED"]["value"] == "true"
    assert AIR_GAPPED_KEY in json.dumps(proxy)
    seeds = [d for d in r["docs"] if d["kind"] == "ConfigMap"
             and json.loads(AIR_GAPPED_SEED) in [json.loads(v) for v in (d.get("data") or {}).values()]]
    assert seeds, "the seed license goes into the chart's seed ConfigMap"
    assert [d for d in r["docs"] if d["kind"] == "PersistentVolumeClaim"], "air-gapped needs the persistent proxy"
    assert not [d for d in r["docs"] if d["kind"] == "Ingress"]
    api = one(r, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]["containers"][0]
    assert "CHORUS_ARTIFACTS" not in env_of(api)
    assert AIR_GAPPED_SEED not in r["outputs"]["values_yaml"]


# --- variables: declared, typed, the same in the roots and the module -------------------------------------------


def module_vars() -> dict:
    return hcl.variables(MODULE)


def root_vars(platform: str) -> dict:
    return hcl.variables(ROOTS[platform])


@pytest.mark.parametrize("platform", ["aws", "gcp"])
def test_example_tfvars_keys_are_declared_variables_of_matching_type(platform):
    declared = root_vars(platform)
    example = hcl.plain(hcl.load(EXAMPLES[platform]))
    assert example, EXAMPLES[platform]
    problems = []
    for key, value in example.items():
        if key not in declared:
            problems.append(f"{key}: not a variable of {ROOTS[platform].relative_to(REPO)}")
            continue
        problems += hcl.check(value, hcl.parse_type(declared[key]["type"]), key)
    assert not problems, "\n".join(problems)
    required = {k for k, v in declared.items() if not v["has_default"]} - {"chorus_api_key"}
    assert required <= set(example), f"the example must set every required variable: {required - set(example)}"
    assert not API_KEY_VARS & set(example), "API keys are passed with -var, never in a tfvars file"


@pytest.mark.parametrize("platform", ["aws", "gcp"])
def test_familiar_workers_block_is_the_workers_type(platform):
    workers_type = hcl.parse_type(root_vars(platform)["workers"]["type"])
    familiar = yaml.safe_load(FAMILIAR_WORKERS)["workers"]
    assert hcl.check(familiar, workers_type, "workers") == []
    # And the example's workers have exactly the familiar keys.
    (example,) = hcl.plain(hcl.load(EXAMPLES[platform]))["workers"]
    (entry,) = familiar
    assert set(example) == set(entry)
    assert set(example["workerArgs"]) == set(entry["workerArgs"])
    assert set(example["autoscaling"]) == set(entry["autoscaling"])


def test_type_checker_is_not_a_no_op():
    workers_type = hcl.parse_type(module_vars()["workers"]["type"])
    bad = [{"name": "a", "workerArgs": {"model": "m", "gpu_type": "nvidia.com/gpu", "capacity": "4"},
            "autoscaling": {"enabled": "yes"}}, {"workerArgs": {"capacity": 1}}]
    problems = hcl.check(bad, workers_type, "workers")
    assert "workers[0].workerArgs.gpu_type: not an attribute" in problems[0]
    assert any("workers[0].workerArgs.capacity: a number is expected" in p for p in problems)
    assert any("workers[0].autoscaling.enabled: a bool is expected" in p for p in problems)
    assert any(p == "workers[1].name: missing (not optional)" for p in problems)
    assert any(p == "workers[1].workerArgs.model: missing (not optional)" for p in problems)
    node_groups = hcl.parse_type(module_vars()["node_groups"]["type"])
    assert hcl.check({"gpu": {"ami_type": "x", "instance_types": "g5.xlarge", "min_size": 0, "max_size": 1,
                              "desired_size": 0}}, node_groups, "ng") == ["ng['gpu'].instance_types: a list is expected, not 'g5.xlarge'"]


@pytest.mark.parametrize("platform", ["aws", "gcp"])
def test_roots_declare_the_module_variables_and_pass_them_on(platform):
    mod, root = module_vars(), root_vars(platform)
    for name, v in root.items():
        assert v["type"] and v["description"], f"{platform}: {name} needs a type and a description"
        if name in API_KEY_VARS:
            assert v["sensitive"] and v["validations"], name
            continue
        assert name in mod, f"{platform}: {name} is not a variable of modules/chorus-values"
        m = mod[name]
        assert re.sub(r"\s+", "", v["type"]) == re.sub(r"\s+", "", m["type"]), f"{name}: types differ"
        assert v["description"] == m["description"], f"{name}: descriptions differ"
        assert v["sensitive"] == m["sensitive"], f"{name}: sensitivity differs"
        if v["has_default"]:
            assert v["default"] == m["default"], f"{name}: defaults differ"
    call = hcl.blocks(hcl.load_dir(ROOTS[platform]), "module")["chorus_values"]
    passed = {k for k in call if k not in hcl.META_KEYS | {"source"}}
    assert hcl.unquote(call["platform"]) == platform
    for name in set(root) - API_KEY_VARS:
        assert call.get(name) == f"${{var.{name}}}", f"{platform}: module chorus_values must get {name} = var.{name}"
    assert passed - set(root) == ROOT_ONLY_MODULE_VARS, passed - set(root)
    # What the root does not pass belongs to the other platform (its defaults keep it out of the way).
    other = set(mod) - passed
    other_root = set(root_vars("gcp" if platform == "aws" else "aws"))
    assert other <= other_root, other - other_root


def test_every_module_variable_is_typed_described_and_validated():
    for name, v in module_vars().items():
        assert v["type"] and v["description"], name
        if hcl.expression(v["type"]) != "bool":
            assert v["validations"], f"{name} has no validation block"
        for rule in v["validations"]:
            assert len(rule["error_message"]) > 30, f"{name}: say what is wrong and what to do"


def test_roots_pass_the_chart_from_this_repository_with_the_module_values():
    for platform in ROOTS:
        chorus = root_resource(platform, "helm_release", "chorus")
        assert (ROOTS[platform] / hcl.unquote(chorus["chart"]).replace("${path.module}/", "")).resolve() == CHART
        assert chorus["values"] == ["${module.chorus_values.values_yaml}", "${module.chorus_values.license_values_yaml}"]


@pytest.mark.parametrize("platform", ["aws", "gcp"])
def test_every_version_is_pinned(platform):
    parsed = hcl.load_dir(ROOTS[platform])
    providers = {}
    for tf_block in parsed["terraform"]:
        for rp in tf_block.get("required_providers", []):
            providers.update(hcl.plain(rp))
    assert {"helm", "kubernetes"} <= set(providers)
    for name, p in providers.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", p["version"]), f"provider {name} is not pinned: {p['version']}"
    for name, m in hcl.blocks(parsed, "module").items():
        source = hcl.unquote(m["source"])
        if source.startswith("./") or source.startswith("../"):
            continue
        assert re.fullmatch(r"\d+\.\d+\.\d+", hcl.unquote(m.get("version", ""))), f"module {name} is not pinned"
    releases = [b for item in parsed["resource"] for k, v in item.items() if hcl.unquote(k) == "helm_release"
                for b in v.values()]
    for rel in releases:
        if "repository" in rel:
            assert re.fullmatch(r"\d+\.\d+\.\d+", hcl.unquote(rel["version"])), f"chart {rel['chart']} is not pinned"


# --- static security scan ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def checkov_results(checkov) -> dict:
    """checkov on each root, two at a time, offline: no external module download, nothing from the vendor's API."""
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CKV_SKIP_PACKAGE_UPDATE_CHECK": "TRUE"}

    def scan(platform):
        r = subprocess.run([str(checkov), "-d", str(ROOTS[platform]), "--framework", "terraform",
                            "--download-external-modules", "false", "--skip-download", "-o", "json"],
                           capture_output=True, text=True, env=env, check=False, timeout=300)
        return platform, r

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(scan, ROOTS))


@pytest.mark.parametrize("platform", ["aws", "gcp"])
def test_checkov_finds_no_failed_check_and_every_skip_is_justified(checkov_results, platform):
    r = checkov_results[platform]
    assert "MaxRetryError" not in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    report = json.loads(r.stdout)
    reports = report if isinstance(report, list) else [report]
    (tf_report,) = [x for x in reports if x["check_type"] == "terraform"]
    summary, results = tf_report["summary"], tf_report["results"]
    assert summary["parsing_errors"] == 0, results.get("parsing_errors")
    assert summary["resource_count"] >= 10 and summary["passed"] >= 10, summary
    failed = [(c["check_id"], c["resource"], c["file_path"], c["file_line_range"]) for c in results["failed_checks"]]
    assert summary["failed"] == 0 and not failed, failed
    for c in results["skipped_checks"]:
        reason = c["check_result"].get("suppress_comment", "")
        assert len(reason) >= 40, f"{c['check_id']} on {c['resource']} is skipped without a reason beside it"
    assert r.returncode == 0, r.stderr[-2000:]
