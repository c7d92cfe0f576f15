"""Offline tests of the Helm chart: lint, render, schema-validate, golden diff, and assertions on rendered objects.

Matrix: every file in values/ is rendered as release "chorus" in namespace "chorus" for Kubernetes 1.33.0.
Bad values: every file in bad-values/ starts with "# expect: MESSAGE"; `helm template` and `helm lint --strict`
must both fail and print MESSAGE.
Golden renders: golden/<case>.yaml; regenerate with `scripts/chart-test --update`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deploytest import REPO, run, update_golden
import values_doc

CHART = REPO / "deploy" / "helm" / "chorus"
TESTS = Path(__file__).resolve().parent
VALUES_DIR = TESTS / "values"
BAD_DIR = TESTS / "bad-values"
GOLDEN_DIR = TESTS / "golden"
KUBE_VERSION = "1.33.0"
RELEASE = "chorus"
NAMESPACE = "chorus"

CASES = sorted(p.stem for p in VALUES_DIR.glob("*.yaml"))
BAD_CASES = sorted(p.stem for p in BAD_DIR.glob("*.yaml"))
# Values that make the chart defaults renderable (the only required values).
REQUIRED_SETS = ["--set", "release.releaseTag=chorus-20260301", "--set", "api.apiKeysSecret.name=chorus-api-keys"]


def template_cmd(helm: Path, *extra: str) -> list:
    return [helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, "--kube-version", KUBE_VERSION, *extra]


def load_values(case: str) -> dict:
    """The chart defaults overlaid with a case's values (Helm's merge: maps merge, lists replace)."""

    def merge(base, over):
        if isinstance(base, dict) and isinstance(over, dict):
            out = dict(base)
            for k, v in over.items():
                out[k] = merge(base.get(k), v) if k in base else v
            return out
        return over

    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    return merge(defaults, yaml.safe_load((VALUES_DIR / f"{case}.yaml").read_text()) or {})


# --- rendering (once per session) ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def renders(helm, tmp_path_factory) -> dict[str, dict]:
    """case -> {"text": str, "path": Path, "docs": [dict], "values": dict}."""
    out_dir = tmp_path_factory.mktemp("renders")
    result = {}
    for case in CASES:
        r = run(template_cmd(helm, "--values", VALUES_DIR / f"{case}.yaml"))
        assert r.rc == 0, f"helm template failed for {case}:\n{r.err}"
        path = out_dir / f"{case}.yaml"
        path.write_text(r.out)
        docs = [d for d in yaml.safe_load_all(r.out) if d]
        result[case] = {"text": r.out, "path": path, "docs": docs, "values": load_values(case)}
    return result


def objs(render: dict, kind: str) -> list[dict]:
    return [d for d in render["docs"] if d["kind"] == kind]


def one(render: dict, kind: str, name: str) -> dict:
    found = [d for d in render["docs"] if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_specs(render: dict):
    for d in render["docs"]:
        if d["kind"] in ("Deployment", "StatefulSet"):
            yield d, d["spec"]["template"]["spec"]


def containers(spec: dict):
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def env_of(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def autoscaling(worker: dict) -> dict:
    a = {"enabled": False, "threshold": 0.8, "minReplicas": 1, "maxReplicas": 4}
    a.update(worker.get("autoscaling") or {})
    return a


# --- lint, validation, golden ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_lint_strict(helm, case):
    r = run([helm, "lint", "--strict", CHART, "--kube-version", KUBE_VERSION, "--values", VALUES_DIR / f"{case}.yaml"])
    assert r.rc == 0, r.both
    assert "0 chart(s) failed" in r.out


def test_lint_strict_chart_defaults_with_required_values(helm):
    r = run([helm, "lint", "--strict", CHART, "--kube-version", KUBE_VERSION, *REQUIRED_SETS])
    assert r.rc == 0, r.both


def test_chart_defaults_need_only_the_release_tag_and_api_keys(helm):
    r = run(template_cmd(helm))
    assert r.rc != 0
    assert "release.releaseTag is required" in r.err
    assert "api.apiKeysSecret.name is required" in r.err
    assert run(template_cmd(helm, *REQUIRED_SETS)).rc == 0


@pytest.mark.parametrize("case", [c for c in CASES if load_values(c)["api"]["tenantKeysOnly"]])
def test_tenant_keys_only(renders, case):
    """No static keys, not open: the API follows the license proxy for tenant keys on a public address (the binary
    then refuses every request while no tenant key is valid), and the keys survive a proxy restart."""
    r = renders[case]
    api = one(r, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]["containers"][0]
    env = env_of(api)
    assert env["CHORUS_LICENSE_PROXY"]["value"] == "true"
    assert not {"CHORUS_API_KEYS", "CHORUS_ALLOW_OPEN"} & set(env)
    assert not any("api-key" in a or "allow-open" in a for a in api["args"])
    assert api["args"][api["args"].index("--listen") + 1] == "0.0.0.0:5000"
    (pvc,) = objs(r, "PersistentVolumeClaim")
    data = next(vol for vol in one(r, "Deployment", f"{RELEASE}-license-proxy")["spec"]["template"]["spec"]["volumes"]
                if vol["name"] == "data")
    assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]


def test_tenant_keys_only_is_in_the_matrix():
    assert any(load_values(c)["api"]["tenantKeysOnly"] for c in CASES)


@pytest.mark.parametrize("version", ["1.31.0", KUBE_VERSION])
def test_kubernetes_validate_strict(kubernetes_validate, renders, version):
    """Built-in kinds against the Kubernetes OpenAPI schemas (the chart's minimum, 1.31, and 1.33), unknown fields
    rejected."""
    paths = [renders[c]["path"] for c in CASES]
    r = run([kubernetes_validate, "-k", version, "--strict", *paths])
    assert r.rc == 0, r.both
    assert "ERROR" not in r.both, r.both
    # Every built-in object was checked (one "passed" line each); custom resources only warn here.
    builtin = sum(1 for c in CASES for d in renders[c]["docs"]
                  if "/" not in d["apiVersion"]
                  or d["apiVersion"].split("/")[0] in ("apps", "policy", "networking.k8s.io"))
    assert r.both.count("passed for resource") == builtin, r.both


def test_custom_resources_against_crd_schemas(node, node_modules, renders):
    """ScaledObject, PodMonitor, ManagedCertificate, BackendConfig, FrontendConfig: schema and unknown fields."""
    paths = [renders[c]["path"] for c in CASES]
    r = run([node, TESTS / "validate-crds.mjs", "--modules", node_modules, "--json", *paths])
    assert r.rc == 0, r.both
    results = json.loads(r.out)
    assert all(x["ok"] for x in results), [x for x in results if not x["ok"]]
    kinds = {x["kind"] for x in results}
    assert kinds == {"ScaledObject", "PodMonitor", "ManagedCertificate", "BackendConfig", "FrontendConfig"}
    rendered = sum(1 for c in CASES for d in renders[c]["docs"] if d["kind"] in kinds)
    assert len(results) == rendered


def test_crd_validator_catches_bad_objects(node, node_modules):
    """The CRD validator is not a no-op: wrong types, misspelt fields and unknown kinds fail."""
    r = run([node, TESTS / "validate-crds.mjs", "--modules", node_modules, TESTS / "fixtures" / "bad-crds.yaml"])
    assert r.rc == 1, r.both
    assert "threshold must be string" in r.out
    assert "unknown field spec.pollingIntervall" in r.out
    assert "unknown field spec.advanced.horizontalPodAutoscalerConfig.behaviour" in r.out
    assert "unknown field spec.podMetricsEndpoints[0].intervall" in r.out
    assert "unknown field spec.timeoutSecs" in r.out
    assert "no schema known for example.com/v1 Widget" in r.out
    assert "1 custom resources valid, 5 invalid" in r.out


@pytest.mark.parametrize("case", CASES)
def test_golden(renders, case):
    golden = GOLDEN_DIR / f"{case}.yaml"
    text = renders[case]["text"]
    if update_golden():
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
        return
    assert golden.exists(), f"{golden} missing: run scripts/chart-test --update"
    if golden.read_text() != text:
        diff = subprocess.run(["diff", "-u", str(golden), "-"], input=text, capture_output=True, text=True).stdout
        pytest.fail(f"render of {case} differs from {golden.relative_to(REPO)} "
                    f"(if intended: scripts/chart-test --update)\n{diff[:6000]}", pytrace=False)


def test_no_stale_golden_files():
    stale = sorted(p.name for p in GOLDEN_DIR.glob("*.yaml") if p.stem not in CASES)
    assert not stale, f"golden files without a values case: {stale}"


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_values_fail_with_a_clear_message(helm, case):
    path = BAD_DIR / f"{case}.yaml"
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path} must start with '# expect: MESSAGE'"
    expected = first.removeprefix("# expect: ")
    t = run(template_cmd(helm, "--values", path))
    assert t.rc != 0, f"helm template accepted {case}"
    assert expected in t.err, f"helm template: expected {expected!r} in:\n{t.err}"
    lint = run([helm, "lint", "--strict", CHART, "--kube-version", KUBE_VERSION, "--values", path])
    assert lint.rc != 0, f"helm lint --strict accepted {case}:\n{lint.both}"
    assert expected in lint.both, f"helm lint: expected {expected!r} in:\n{lint.both}"


# --- images, security, secrets ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_every_chorus_image_is_pinned_to_the_release_tag(renders, case):
    v = renders[case]["values"]
    tag, registry = v["release"]["releaseTag"], v["infra"]["imageRegistry"]
    nats = f"{v['nats']['image']['repository']}:{v['nats']['image']['tag']}"
    for owner, spec in pod_specs(renders[case]):
        for c in containers(spec):
            if owner["metadata"]["name"].endswith("-nats"):
                assert c["image"] == nats
                continue
            assert c["image"].startswith(registry + "/"), c["image"]
            name, _, image_tag = c["image"][len(registry) + 1:].partition(":")
            assert image_tag == tag, f"{owner['metadata']['name']}/{c['name']}: {c['image']}"
            assert "@" not in name and ":" not in name
            assert c["imagePullPolicy"] == "IfNotPresent"


@pytest.mark.parametrize("case", CASES)
def test_pods_run_non_root_with_a_locked_down_security_context(renders, case):
    for owner, spec in pod_specs(renders[case]):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001 and psc["runAsGroup"] == 10001
        assert psc["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False
        for c in containers(spec):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            assert "resources" in c and c["resources"].get("requests"), c["name"]


@pytest.mark.parametrize("case", CASES)
def test_secrets_are_referenced_by_name_never_created(renders, case):
    r, v = renders[case], renders[case]["values"]
    assert not objs(r, "Secret")
    api = one(r, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]
    env = env_of(api["containers"][0])
    if v["api"]["apiKeysSecret"]["name"]:
        ref = env["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": v["api"]["apiKeysSecret"]["name"], "key": v["api"]["apiKeysSecret"]["key"]}
        assert "value" not in env["CHORUS_API_KEYS"]
    elif v["api"]["tenantKeysOnly"]:
        # No static key and not open: `chorus api --license-proxy` on 0.0.0.0 then takes only tenant keys.
        assert "CHORUS_API_KEYS" not in env and "CHORUS_ALLOW_OPEN" not in env
    else:
        assert "CHORUS_API_KEYS" not in env and env["CHORUS_ALLOW_OPEN"]["value"] == "true"
    for _, spec in pod_specs(r):
        pull = spec.get("imagePullSecrets", [])
        assert pull == ([{"name": v["infra"]["imagePullSecret"]}] if v["infra"]["imagePullSecret"] else [])


@pytest.mark.parametrize("case", CASES)
def test_references_resolve(renders, case):
    """Services select pods that exist, Ingress backends name existing Services and ports, volumes name objects that
    exist, the ServiceAccount exists when the chart creates it."""
    r, v = renders[case], renders[case]["values"]
    pod_labels = [spec_owner["spec"]["template"]["metadata"]["labels"] for spec_owner, _ in pod_specs(r)]
    services = {s["metadata"]["name"]: s for s in objs(r, "Service")}
    for s in services.values():
        sel = s["spec"]["selector"]
        assert any(sel.items() <= labels.items() for labels in pod_labels), f"Service {s['metadata']['name']}"
        assert len(s["metadata"]["name"]) <= 63
    for ing in objs(r, "Ingress"):
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                assert svc["name"] in services
                assert svc["port"]["name"] in {x["name"] for x in services[svc["name"]]["spec"]["ports"]}
    configmaps = {c["metadata"]["name"] for c in objs(r, "ConfigMap")}
    claims = {c["metadata"]["name"] for c in objs(r, "PersistentVolumeClaim")}
    for owner, spec in pod_specs(r):
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in configmaps
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims
        mounts = {m["name"] for c in containers(spec) for m in c.get("volumeMounts", [])}
        assert mounts <= {vol["name"] for vol in spec.get("volumes", [])}
        sel = owner["spec"]["selector"]["matchLabels"]
        assert sel.items() <= owner["spec"]["template"]["metadata"]["labels"].items()
        if v["infra"]["serviceAccount"]["create"]:
            assert spec["serviceAccountName"] in {s["metadata"]["name"] for s in objs(r, "ServiceAccount")}
        else:
            assert spec["serviceAccountName"] == v["infra"]["serviceAccount"]["name"]
    for so in objs(r, "ScaledObject"):
        one(r, "Deployment", so["spec"]["scaleTargetRef"]["name"])


# --- API, NATS, workers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_api_deployment_and_service(renders, case):
    r, v = renders[case], renders[case]["values"]
    dep = one(r, "Deployment", f"{RELEASE}-api")
    assert dep["spec"]["replicas"] == v["api"]["replicas"]
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": v["release"]["maxUnavailable"]}
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 5000, "metrics": 8080}
    assert c["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
    assert c["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert spec["terminationGracePeriodSeconds"] >= 60
    args = c["args"]
    assert args[0] == "api"
    assert args[args.index("--nats") + 1] == f"nats://{RELEASE}-nats:4222"
    assert args[args.index("--listen") + 1] == "0.0.0.0:5000"
    assert args[args.index("--metrics-listen") + 1] == "0.0.0.0:8080"
    assert ("--config" in args) == bool(v["api"]["config"])
    if v["api"]["config"]:
        cm = one(r, "ConfigMap", f"{RELEASE}-api")
        assert cm["data"]["config.toml"].strip() == v["api"]["config"].strip()
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]
    assert env_of(c)["CHORUS_LICENSE_PROXY"]["value"] == "true", "the API follows the license proxy over NATS"
    svc = one(r, "Service", f"{RELEASE}-api")
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {("http", 5000), ("metrics", 8080)}
    pdbs = objs(r, "PodDisruptionBudget")
    assert len(pdbs) == (1 if v["api"]["replicas"] > 1 else 0)


@pytest.mark.parametrize("case", CASES)
def test_nats_statefulset_with_monitoring_port_and_healthz_probes(renders, case):
    r = renders[case]
    sts = one(r, "StatefulSet", f"{RELEASE}-nats")
    assert sts["spec"]["serviceName"] == f"{RELEASE}-nats-headless"
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"client": 4222, "monitor": 8222}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "monitor"}, probe
    assert c["args"][c["args"].index("--http_port") + 1] == "8222"
    assert "ldm" in " ".join(c["lifecycle"]["preStop"]["exec"]["command"])
    svc = one(r, "Service", f"{RELEASE}-nats")
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {("client", 4222), ("monitor", 8222)}
    assert one(r, "Service", f"{RELEASE}-nats-headless")["spec"]["clusterIP"] == "None"


@pytest.mark.parametrize("case", CASES)
def test_one_worker_deployment_per_pool(renders, case):
    r, v = renders[case], renders[case]["values"]
    workers = v["workers"]
    deps = [d for d in objs(r, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"]
    assert sorted(d["metadata"]["name"] for d in deps) == sorted(f"{RELEASE}-worker-{w['name']}" for w in workers)
    for w in workers:
        a = autoscaling(w)
        dep = one(r, "Deployment", f"{RELEASE}-worker-{w['name']}")
        spec = dep["spec"]
        if a["enabled"]:
            assert "replicas" not in spec, "KEDA owns the replica count"
        else:
            assert spec["replicas"] == a["minReplicas"]
        assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 3, "maxUnavailable": v["release"]["maxUnavailable"]}
        pod = spec["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] >= 60
        c = pod["containers"][0]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": 8080}
        # The startup probe keeps the pod un-Ready until the model is loaded (GET /ready: capacity > 0).
        sp = c["startupProbe"]
        assert sp["httpGet"] == {"path": "/ready", "port": "metrics"}
        assert sp["periodSeconds"] * sp["failureThreshold"] >= 300, "model loads need minutes, not seconds"
        assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
        assert c["livenessProbe"]["httpGet"]["path"] == "/metrics"
        args = c["args"]
        assert args[0] == "worker"
        assert args[args.index("--model") + 1] == w["workerArgs"]["model"]
        assert args[args.index("--capacity") + 1] == str(w["workerArgs"]["capacity"])
        assert args[args.index("--metrics-listen") + 1] == "0.0.0.0:8080"
        assert args[args.index("--nats") + 1] == f"nats://{RELEASE}-nats:4222"
        assert args[args.index("--models-dir") + 1] == "/opt/chorus/models"
        assert args[args.index("--runtime-dir") + 1] == "/opt/chorus/runtime"
        env = env_of(c)
        assert env["CHORUS_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        assert int(env["CHORUS_DRAIN_SECONDS"]["value"]) < pod["terminationGracePeriodSeconds"]
        gpu = w["workerArgs"].get("gpuType", "")
        limits = c["resources"].get("limits", {})
        if gpu:
            assert limits["nvidia.com/gpu"] == 1
            # The worker runs its forward passes on the GPU (batched), not on the pod's CPU.
            assert env["CHORUS_DEVICE"]["value"] == "cuda"
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            if v["infra"]["provider"] == "gcp":
                assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": gpu}
            else:
                assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
        else:
            assert "nvidia.com/gpu" not in limits
            assert "CHORUS_DEVICE" not in env
            assert "nodeSelector" not in pod and "tolerations" not in pod
        expected_res = w.get("resources") or v["resources"]["worker"]
        assert c["resources"]["requests"] == expected_res["requests"]


# --- artifact store --------------------------------------------------------------------------------------------

ARTIFACT_VARS = {"CHORUS_ARTIFACTS", "CHORUS_RELOAD_INTERVAL", "CHORUS_ENABLE_HOT_RELOAD"}


def check_artifact_store(docs: list[dict], values: dict) -> None:
    """The API and every worker pool get the store's variables and credentials; nothing else does. Without a location
    no pod gets any of it."""
    art = values["artifacts"]
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    users = {f"{RELEASE}-api", *(f"{RELEASE}-worker-{w['name']}" for w in values["workers"])}
    assert users <= set(deps)
    for d in docs:
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        name = d["metadata"]["name"]
        for c in containers(d["spec"]["template"]["spec"]):
            env = env_of(c)
            if art["location"] and name in users:
                assert env["CHORUS_ARTIFACTS"]["value"] == art["location"], name
                assert env["CHORUS_RELOAD_INTERVAL"]["value"] == f"{art['reloadIntervalSeconds']:g}", name
                assert env["CHORUS_ENABLE_HOT_RELOAD"]["value"] == str(art["hotReload"]).lower(), name
                for k, val in art["extraEnv"].items():
                    assert env[k] == {"name": k, "value": str(val)}, name
                if art["credentialsSecret"]:
                    assert c["envFrom"] == [{"secretRef": {"name": art["credentialsSecret"]}}], name
                else:
                    assert "envFrom" not in c, name
                pool = next((w for w in values["workers"] if name == f"{RELEASE}-worker-{w['name']}"), None)
                if pool and pool.get("storeModels"):
                    assert env["CHORUS_STORE_MODELS"]["value"] == ",".join(pool["storeModels"]), name
                else:
                    assert "CHORUS_STORE_MODELS" not in env, name
            else:
                assert "CHORUS_STORE_MODELS" not in env, name
                assert not ARTIFACT_VARS & set(env), name
                assert not set(art["extraEnv"]) & set(env), name
                assert "envFrom" not in c, name


@pytest.mark.parametrize("case", CASES)
def test_artifact_store_on_the_api_and_every_worker_pool(renders, case):
    check_artifact_store(renders[case]["docs"], renders[case]["values"])


def test_artifact_store_is_in_the_matrix(renders):
    cases = [c for c in CASES if renders[c]["values"]["artifacts"]["location"]]
    assert cases and any(renders[c]["values"]["artifacts"]["credentialsSecret"] for c in cases)
    assert any(len(renders[c]["values"]["workers"]) > 1 for c in cases), "every pool, not only the first"
    assert any(w.get("storeModels") for c in cases for w in renders[c]["values"]["workers"]), "a pool's filter"


def test_artifact_store_gcs_without_a_secret_and_without_hot_reload(helm):
    """Workload identity (no Secret): no envFrom; hot reload off is passed as "false", the interval as given."""
    art = {"location": "gs://chorus-bucket/prod", "reloadIntervalSeconds": 30, "hotReload": False,
           "credentialsSecret": "", "extraEnv": {}}
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"artifacts={json.dumps(art)}"))
    assert r.rc == 0, r.err
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    check_artifact_store([d for d in yaml.safe_load_all(r.out) if d], {**defaults, "artifacts": art})


# --- autoscaling and metrics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_keda_scaled_object_per_autoscaled_worker(renders, case):
    r, v = renders[case], renders[case]["values"]
    sos = {so["metadata"]["name"]: so for so in objs(r, "ScaledObject")}
    autoscaled = [w for w in v["workers"] if autoscaling(w)["enabled"]]
    assert sorted(sos) == sorted(f"{RELEASE}-worker-{w['name']}" for w in autoscaled)
    for w in autoscaled:
        a = autoscaling(w)
        so = sos[f"{RELEASE}-worker-{w['name']}"]["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{RELEASE}-worker-{w['name']}"}
        assert so["scaleTargetRef"] == target
        assert so["pollingInterval"] == 15
        assert (so["minReplicaCount"], so["maxReplicaCount"]) == (a["minReplicas"], a["maxReplicas"])
        behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 30
        assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
        assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 60}]
        triggers = {t["name"]: t for t in so["triggers"]}
        sel = f'namespace="{NAMESPACE}",chorus_release="{RELEASE}",chorus_worker="{w["name"]}"'
        load = triggers["worker-load"]
        assert load["type"] == "prometheus" and load["metricType"] == "Value"
        assert load["metadata"]["query"] == f"sum(inferno_worker_load{{{sel}}}) / sum(inferno_worker_capacity{{{sel}}})"
        assert float(load["metadata"]["threshold"]) == pytest.approx(a["threshold"])
        assert 0 < float(load["metadata"]["threshold"]) <= 1
        for t in so["triggers"]:
            assert t["metadata"]["serverAddress"] == v["metrics"]["prometheusUrl"]
            assert all(isinstance(x, str) for x in t["metadata"].values()), "KEDA trigger metadata is a string map"
        msel = f'namespace="{NAMESPACE}",chorus_release="{RELEASE}",model="{w["workerArgs"]["model"]}"'
        if a["minReplicas"] == 0:
            assert set(triggers) == {"worker-load", "queue-overflow", "unserviceable-requests"}
            q = triggers["queue-overflow"]["metadata"]
            assert q["query"] == f"sum(api_queue_size{{{msel}}}) / {w['workerArgs']['capacity']}"
            assert q["threshold"] == "1" and q["activationThreshold"] == "0"
            u = triggers["unserviceable-requests"]["metadata"]
            assert u["query"] == f"sum(api_unserviceable_requests_size{{{msel}}})"
            assert u["threshold"] == "0.9" and u["activationThreshold"] == "0"
        else:
            assert set(triggers) == {"worker-load"}, "queue triggers only when minReplicas is 0"


def prometheus_label(pod_label: str) -> str:
    """The meta label Prometheus' Kubernetes discovery makes of a pod label."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", pod_label)


def scrape_targets(pm: dict, pods) -> dict[str, tuple[str, int, dict]]:
    """What Prometheus would scrape for a PodMonitor: pod name -> (port name, container port, target labels).
    Discovery makes one target per selected pod and named container port of an endpoint; `keep`/`drop` relabelings
    filter them (regex anchored, source labels joined with ';'); the other relabelings set target labels."""
    sel = pm["spec"]["selector"]["matchLabels"]
    targets: dict[str, list] = {}
    for owner, spec in pods:
        labels = owner["spec"]["template"]["metadata"]["labels"]
        if not sel.items() <= labels.items():
            continue
        meta = {prometheus_label(k): v for k, v in labels.items()}
        for ep in pm["spec"]["podMetricsEndpoints"]:
            for c in containers(spec):
                for port in c.get("ports", []):
                    if port["name"] != ep["port"]:
                        continue
                    out, kept = {}, True
                    for rl in ep.get("relabelings", []):
                        value = ";".join(meta.get(x, "") for x in rl["sourceLabels"])
                        action = rl.get("action", "replace")
                        if action in ("keep", "drop"):
                            kept = kept and (bool(re.fullmatch(rl["regex"], value)) == (action == "keep"))
                        else:
                            assert action == "replace" and "regex" not in rl, rl
                            if value:
                                out[rl["targetLabel"]] = value
                    if kept:
                        targets.setdefault(owner["metadata"]["name"], []).append((port["name"], port["containerPort"], out))
    for name, found in targets.items():
        assert len(found) == 1, f"{name} would be scraped {len(found)} times: {found}"
    return {name: found[0] for name, found in targets.items()}


@pytest.mark.parametrize("case", CASES)
def test_pod_monitor_scrapes_api_workers_and_license_proxy_and_feeds_the_queries(renders, case):
    r, v = renders[case], renders[case]["values"]
    pms = objs(r, "PodMonitor")
    if not v["metrics"]["enabled"]:
        assert not pms
        return
    (pm,) = pms
    for k, val in v["metrics"]["podMonitorLabels"].items():
        assert pm["metadata"]["labels"][k] == val
    for ep in pm["spec"]["podMetricsEndpoints"]:
        assert (ep["path"], ep["interval"]) == ("/metrics", v["metrics"]["scrapeInterval"])
        targets = {rl["targetLabel"]: rl["sourceLabels"] for rl in ep["relabelings"] if "targetLabel" in rl}
        assert targets == {
            "chorus_release": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"],
            "chorus_component": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
            "chorus_worker": ["__meta_kubernetes_pod_label_chorus_worker"],
        }
    lp = f"{RELEASE}-license-proxy"
    # The license proxy serves /metrics (chorus_license_*) on its one HTTP port: its pod is selected and that
    # port's name is one the PodMonitor scrapes.
    proxy_pod = one(r, "Deployment", lp)["spec"]["template"]
    assert pm["spec"]["selector"]["matchLabels"].items() <= proxy_pod["metadata"]["labels"].items()
    (proxy_port,) = proxy_pod["spec"]["containers"][0]["ports"]
    assert proxy_port["name"] in {ep["port"] for ep in pm["spec"]["podMetricsEndpoints"]}
    scraped = scrape_targets(pm, pod_specs(r))
    workers = {f"{RELEASE}-worker-{w['name']}": w["name"] for w in v["workers"]}
    assert set(scraped) == {f"{RELEASE}-api", lp, *workers}
    # Every target on the port that serves /metrics (8080: the API's public port 5000 has none), and labelled
    # with its component as the autoscaling queries and the license alerts expect.
    assert scraped[f"{RELEASE}-api"] == ("metrics", 8080, {"chorus_release": RELEASE, "chorus_component": "api"})
    assert scraped[lp] == ("http", 8080, {"chorus_release": RELEASE, "chorus_component": "license-proxy"})
    for name, pool in workers.items():
        assert scraped[name] == ("metrics", 8080, {"chorus_release": RELEASE, "chorus_component": "worker",
                                                   "chorus_worker": pool})


# --- ingress ---------------------------------------------------------------------------------------------------


def ingress_paths(ing: dict) -> dict[str, dict[str, tuple[str, str]]]:
    return {rule["host"]: {p["path"]: (p["backend"]["service"]["name"], p["pathType"]) for p in rule["http"]["paths"]}
            for rule in ing["spec"]["rules"]}


def expected_paths(routes: list[str]) -> dict:
    lp, api = f"{RELEASE}-license-proxy", f"{RELEASE}-api"
    return {h: {"/license": (lp, "Prefix"), "/audit": (lp, "Prefix"), "/": (api, "Prefix")} for h in routes}


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("aws")])
def test_aws_alb_ingress(renders, case):
    r, v = renders[case], renders[case]["values"]
    (ing,) = objs(r, "Ingress")
    assert ing["spec"]["ingressClassName"] == "alb"
    a = ing["metadata"]["annotations"]
    assert a["alb.ingress.kubernetes.io/scheme"] == "internet-facing"
    assert a["alb.ingress.kubernetes.io/target-type"] == "ip"
    assert a["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 minimum
    assert a["alb.ingress.kubernetes.io/ssl-redirect"] == "443"
    assert json.loads(a["alb.ingress.kubernetes.io/listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    idle = re.fullmatch(r"idle_timeout\.timeout_seconds=(\d+)", a["alb.ingress.kubernetes.io/load-balancer-attributes"])
    assert idle and int(idle.group(1)) >= 3600, "WebSockets need a long idle timeout"
    if v["ingress"]["certificateArn"]:
        assert a["alb.ingress.kubernetes.io/certificate-arn"] == v["ingress"]["certificateArn"]
    else:
        assert "alb.ingress.kubernetes.io/certificate-arn" not in a  # discovery by hostname
    if v["clusterName"]:
        assert a["alb.ingress.kubernetes.io/tags"] == f"chorus-cluster={v['clusterName']}"
    assert ingress_paths(ing) == expected_paths(v["ingress"]["routes"])
    assert one(r, "Service", f"{RELEASE}-api")["metadata"]["annotations"] == {
        "alb.ingress.kubernetes.io/healthcheck-path": "/status"}
    assert not objs(r, "ManagedCertificate") and not objs(r, "BackendConfig")


@pytest.mark.parametrize("case", [c for c in CASES if c.startswith("gcp")])
def test_gke_ingress(renders, case):
    r, v = renders[case], renders[case]["values"]
    (ing,) = objs(r, "Ingress")
    a = ing["metadata"]["annotations"]
    assert a["kubernetes.io/ingress.class"] == "gce"
    assert "ingressClassName" not in ing["spec"]
    certs = objs(r, "ManagedCertificate")
    assert sorted(c["spec"]["domains"][0] for c in certs) == sorted(v["ingress"]["routes"])
    assert all(len(c["spec"]["domains"]) == 1 for c in certs)
    names = sorted(c["metadata"]["name"] for c in certs)
    assert sorted(a["networking.gke.io/managed-certificates"].split(",")) == names
    if v["ingress"]["globalStaticIpName"]:
        assert a["kubernetes.io/ingress.global-static-ip-name"] == v["ingress"]["globalStaticIpName"]
    fc = one(r, "FrontendConfig", a["networking.gke.io/v1beta1.FrontendConfig"])
    assert fc["spec"]["redirectToHttps"]["enabled"] is True
    assert ingress_paths(ing) == expected_paths(v["ingress"]["routes"])
    for svc_name, path, port in ((f"{RELEASE}-api", "/status", 5000), (f"{RELEASE}-license-proxy", "/healthz", 8080)):
        sa = one(r, "Service", svc_name)["metadata"]["annotations"]
        assert json.loads(sa["cloud.google.com/neg"]) == {"ingress": True}
        bc = one(r, "BackendConfig", json.loads(sa["cloud.google.com/backend-config"])["default"])
        assert bc["spec"]["healthCheck"]["requestPath"] == path and bc["spec"]["healthCheck"]["port"] == port
    api_bc = one(r, "BackendConfig", f"{RELEASE}-api")
    assert api_bc["spec"]["timeoutSec"] >= 3600, "WebSockets need a long backend timeout"


@pytest.mark.parametrize("case", [c for c in CASES if not c.startswith(("aws", "gcp"))])
def test_provider_none_renders_no_ingress(renders, case):
    r = renders[case]
    for kind in ("Ingress", "ManagedCertificate", "BackendConfig", "FrontendConfig"):
        assert not objs(r, kind), kind
    for name in (f"{RELEASE}-api", f"{RELEASE}-license-proxy"):
        assert "annotations" not in one(r, "Service", name)["metadata"]


# --- license proxy ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_license_proxy(renders, case):
    r, v = renders[case], renders[case]["values"]
    lp = v["licenseProxy"]
    dep = one(r, "Deployment", f"{RELEASE}-license-proxy")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    args = ["license-proxy", "--listen", "0.0.0.0:8080", "--data-dir", "/var/lib/chorus-license",
            "--nats", f"nats://{RELEASE}-nats:4222"]
    if lp["seedLicense"]:
        args += ["--seed-license", "/seed/license.json"]
    assert c["args"] == args
    env = env_of(c)
    assert env["CHORUS_AIR_GAPPED"]["value"] == ("false" if v["infra"]["authenticate"] else "true")
    assert ("CHORUS_LICENSE_TRUSTED_KEYS" in env) == bool(lp["trustedKeys"])
    if lp["trustedKeys"]:
        assert env["CHORUS_LICENSE_TRUSTED_KEYS"]["value"] == ",".join(lp["trustedKeys"])
    assert ("CHORUS_ADMIN_KEYS" in env) == bool(lp["adminKeysSecret"]["name"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": 8080}
    data = next(vol for vol in spec["volumes"] if vol["name"] == "data")
    pvcs = objs(r, "PersistentVolumeClaim")
    if lp["persistence"]["enabled"]:
        (pvc,) = pvcs
        assert data["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        sc = lp["persistence"]["storageClass"] or v["filesystem"]["storageClass"]["name"]
        assert pvc["spec"].get("storageClassName", "") == sc
        assert pvc["spec"]["resources"]["requests"]["storage"] == lp["persistence"]["size"]
        assert dep["spec"]["strategy"] == {"type": "Recreate"}, "RWO volume: Recreate, not a rolling update"
    else:
        assert not pvcs and data == {"name": "data", "emptyDir": {}}
    if lp["seedLicense"]:
        cm = one(r, "ConfigMap", f"{RELEASE}-license-proxy-seed")
        assert json.loads(cm["data"]["license.json"]) == json.loads(lp["seedLicense"])
        seed = next(m for m in c["volumeMounts"] if m["name"] == "seed")
        assert seed == {"name": "seed", "mountPath": "/seed", "readOnly": True}
    else:
        assert not [x for x in objs(r, "ConfigMap") if x["metadata"]["name"].endswith("-seed")]
        assert "seed" not in {m["name"] for m in c["volumeMounts"]}
    # The proxy itself uses the seed only when no license is stored (tested in crates/chorus-license).
    assert "initContainers" not in spec


# --- values.yaml: shape, documentation, schema -----------------------------------------------------------------

SEED_KEYS = [
    "clusterName", "infra.provider", "infra.authenticate", "infra.imageRegistry", "infra.imagePullSecret",
    "infra.serviceAccount", "release.version", "release.releaseTag", "release.maxUnavailable",
    "filesystem.storageClass.name", "ingress.enabled", "ingress.routes", "ingress.certificateArn",
    "ingress.globalStaticIpName", "metrics.enabled", "legacyComponents.enabled", "licenseProxy.persistence",
    "licenseProxy.seedLicense", "workers.0.name", "workers.0.workerArgs.model", "workers.0.workerArgs.image",
    "workers.0.workerArgs.gpuType", "workers.0.workerArgs.capacity", "workers.0.workerArgs.operation",
    "workers.0.workerArgs.useCB", "workers.0.workerArgs.useLora", "workers.0.autoscaling.enabled",
    "workers.0.autoscaling.threshold", "workers.0.autoscaling.minReplicas", "workers.0.autoscaling.maxReplicas",
]


def test_values_have_the_seed_shape():
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["metrics"]["podMonitorLabels"] == {"release": "prometheus"}, "kube-prometheus-stack's default"
    assert values["release"]["maxUnavailable"] == 0 and values["release"]["releaseTag"] == ""
    for key in SEED_KEYS:
        node = values
        for part in key.split("."):
            node = node[int(part)] if isinstance(node, list) else node[part]


def key_paths(node, prefix: str = "") -> set[str]:
    """Every key path in a values tree; keys inside list items are `list[0].key` (as values_doc prints them)."""
    paths: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{prefix}.{k}" if prefix else k
            paths.add(p)
            paths |= key_paths(v, p)
    elif isinstance(node, list):
        for item in node[:1]:
            paths |= key_paths(item, f"{prefix}[0]")
    return paths


def test_every_value_is_documented_inline():
    """Every key has a `# --` comment (helm-docs style) on itself or on an ancestor; a map without one of its own
    is documented when every key in it is."""
    text = (CHART / "values.yaml").read_text()
    all_keys = key_paths(yaml.safe_load(text))
    documented = {p for p, desc, _ in values_doc.parse(text) if desc}
    assert documented <= all_keys, f"documented keys that do not exist: {sorted(documented - all_keys)}"

    def ok(key: str) -> bool:
        if any(key == d or key.startswith((d + ".", d + "[")) for d in documented):
            return True
        children = [k for k in all_keys if re.fullmatch(re.escape(key) + r"(\[0\])?\.[^.\[]+", k)]
        return bool(children) and all(ok(c) for c in children)

    missing = sorted(k for k in all_keys if not ok(k))
    assert not missing, f"values without a '# --' description: {missing}"


def test_chart_readme_values_table_is_up_to_date():
    readme = values_doc.README.read_text()
    if update_golden():
        values_doc.README.write_text(values_doc.render(readme))
        return
    assert readme == values_doc.render(readme), (
        "deploy/helm/chorus/README.md values table is out of date: run scripts/chart-test --update")


def test_schema_describes_exactly_the_values():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(node, sch, path):
        if sch.get("additionalProperties") is False and isinstance(node, dict):
            props = sch.get("properties", {})
            for k, v in node.items():
                assert k in props, f"{path}{k} is in values.yaml but not in values.schema.json"
                walk(v, props[k], f"{path}{k}.")
        elif isinstance(node, list) and "items" in sch:
            for item in node:
                walk(item, sch["items"], path + "[].")

    walk(values, schema, "")
    top = set(schema["properties"]) - {"global"}
    assert top == set(values), f"schema and values.yaml differ at the top level: {top ^ set(values)}"


# --- NOTES.txt -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_notes_name_every_rollout_and_the_way_in(helm, renders, tmp_path, case):
    """`helm template` skips NOTES.txt, so render it from a copy of the chart as a YAML block scalar."""
    chart = tmp_path / "chorus"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt")
    lines = notes.read_text().splitlines(keepends=True)
    (chart / "templates" / "notes-under-test.yaml").write_text(
        "notes: |\n" + "".join("  " + ln if ln.strip() else ln for ln in lines))
    notes.unlink()
    r = run([helm, "template", RELEASE, chart, "--namespace", NAMESPACE, "--values", VALUES_DIR / f"{case}.yaml",
             "--show-only", "templates/notes-under-test.yaml"])
    assert r.rc == 0, r.err
    text = yaml.safe_load(r.out)["notes"]
    for owner, _ in pod_specs(renders[case]):
        kind = owner["kind"].lower()
        assert f"rollout status {kind}/{owner['metadata']['name']}" in text
    v = renders[case]["values"]
    if v["ingress"]["enabled"]:
        for host in v["ingress"]["routes"]:
            assert f"curl -fsS https://{host}/status" in text
    else:
        assert "port-forward svc/chorus-api 5000:5000" in text
    assert ("inferno_worker_load" in text) == v["metrics"]["enabled"]
    keys_add = f"exec deploy/{RELEASE}-license-proxy -- chorus keys add NAME --data /var/lib/chorus-license"
    assert (keys_add in text) == v["api"]["tenantKeysOnly"]


def test_worker_entry_defaults(helm):
    """Keys left out of a workers[] entry take the documented defaults."""
    workers = '[{"name": "min", "workerArgs": {"model": "en_US-joe-medium", "capacity": 3}}]'
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"workers={workers}"))
    assert r.rc == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    (dep,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-worker-min"]
    assert dep["spec"]["replicas"] == 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/chorus-tts/chorus:chorus-20260301"
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert not [d for d in docs if d["kind"] == "ScaledObject"]
