"""Offline tests of the Helm chart: lint, render, schema-validate, golden diff, and assertions on rendered objects.

Matrix: every file in values/ is rendered as release "chorus" in namespace "chorus" for Kubernetes 1.33.0.
Bad values: every file in bad-values/ starts with "# expect: MESSAGE"; `helm template` and `helm lint --strict`
must both fail and print MESSAGE.
Golden renders: golden/<case>.yaml; regenerate with `scripts/chart-test --update`.
"""

from __future__ import annotations

import difflib
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
REQUIRED_SETS = ["--set", "release.releaseTag=chorus-20260301"]


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


def legacy_names(v: dict) -> bool:
    return v["names"] == "chart-0.1"


def worker_name(v: dict, w: dict) -> str:
    """A pool's Deployment and ScaledObject: the runbook's `<pool name>`, or chart 0.1's `<release>-worker-<pool>`."""
    return f"{RELEASE}-worker-{w['name']}" if legacy_names(v) else w["name"]


def api_service(v: dict) -> str:
    """The API Service the Ingress uses: the runbook's `<release>-api-server`, or chart 0.1's `<release>-api`."""
    return f"{RELEASE}-api" if legacy_names(v) else f"{RELEASE}-api-server"


def api_alias_service(v: dict) -> str:
    return f"{RELEASE}-api-server" if legacy_names(v) else f"{RELEASE}-api"


def service_account(v: dict) -> dict:
    """infra.serviceAccount as {create, name}: empty (create <fullname>), a name (created), or a map."""
    sa = v["infra"]["serviceAccount"]
    if isinstance(sa, dict):
        return {"create": sa.get("create", True), "name": sa.get("name") or RELEASE}
    return {"create": True, "name": sa or RELEASE}


def worker_gpu(v: dict, w: dict) -> tuple[str, str]:
    """(resource, accelerator) a pool asks for: gpuType is the extended resource (nvidia.com/gpu); chart 0.1's
    accelerator label (no "/") means nvidia.com/gpu and, on GKE, that accelerator."""
    wa = w["workerArgs"]
    gpu, acc = wa.get("gpuType", ""), wa.get("accelerator", "")
    if gpu and "/" not in gpu:
        return "nvidia.com/gpu", acc or (gpu if v["infra"]["provider"] == "gcp" else "")
    return gpu, acc


def key_mode(v: dict) -> str:
    """Where the API's keys come from, in the chart's order of precedence."""
    api = v["api"]
    if api["tenantKeysOnly"]:
        return "tenant"
    if api["apiKeysSecret"]["name"]:
        return "explicit"
    if api["allowOpen"]:
        return "open"
    return "familiar" if api["keySecret"]["name"] else "none"


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


def test_chart_defaults_need_only_the_release_tag(helm):
    """The familiar key Secret (`api-key-secret`) is the default: only the release tag must be given."""
    r = run(template_cmd(helm))
    assert r.rc != 0
    assert "release.releaseTag is required" in r.err
    assert "api.keySecret.name is empty" not in r.err
    r = run(template_cmd(helm, *REQUIRED_SETS))
    assert r.rc == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    api = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"{RELEASE}-api")
    env = env_of(api["spec"]["template"]["spec"]["containers"][0])
    assert env["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "api-key-secret", "key": "CARTESIA_API_KEY"}


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
    proxy_env = env_of(one(r, "Deployment", f"{RELEASE}-license-proxy")["spec"]["template"]["spec"]["containers"][0])
    mode = key_mode(v)
    if mode == "explicit":
        ref = env["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": v["api"]["apiKeysSecret"]["name"], "key": v["api"]["apiKeysSecret"]["key"]}
        assert "value" not in env["CHORUS_API_KEYS"] and "CHORUS_ALLOW_OPEN" not in env
    elif mode == "familiar":
        # The familiar Secret: CARTESIA_API_KEY is a client key; CONTAINER_KEY the license proxy's upstream token
        # (connected mode only: an air-gapped proxy contacts nothing).
        ks = v["api"]["keySecret"]
        assert env["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": ks["name"], "key": ks["clientKey"]}
        assert "CHORUS_ALLOW_OPEN" not in env
        if v["infra"]["authenticate"]:
            assert proxy_env["CHORUS_LICENSE_UPSTREAM_TOKEN"]["valueFrom"]["secretKeyRef"] == {
                "name": ks["name"], "key": ks["containerKey"], "optional": True}
        else:
            assert "CHORUS_LICENSE_UPSTREAM_TOKEN" not in proxy_env
    elif mode == "tenant":
        # No static key and not open: `chorus api --license-proxy` on 0.0.0.0 then takes only tenant keys.
        assert "CHORUS_API_KEYS" not in env and "CHORUS_ALLOW_OPEN" not in env
    else:
        assert "CHORUS_API_KEYS" not in env and env["CHORUS_ALLOW_OPEN"]["value"] == "true"
    if mode != "familiar":
        assert "CHORUS_LICENSE_UPSTREAM_TOKEN" not in proxy_env
    if v["licenseProxy"]["upstream"]:
        assert proxy_env["CHORUS_LICENSE_MODE"]["value"] == "connected"
        assert proxy_env["CHORUS_LICENSE_UPSTREAM"]["value"] == v["licenseProxy"]["upstream"]
    else:
        assert "CHORUS_LICENSE_MODE" not in proxy_env and "CHORUS_LICENSE_UPSTREAM" not in proxy_env
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
        sa = service_account(v)
        assert spec["serviceAccountName"] == sa["name"]
        assert (sa["name"] in {s["metadata"]["name"] for s in objs(r, "ServiceAccount")}) == sa["create"]
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
    tls = bool(v["api"]["tls"]["secretName"])
    assert c["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http", **({"scheme": "HTTPS"} if tls else {})}
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
    # Two Services select the API pods: the one the Ingress uses and an alias, so the runbook's name
    # (`<release>-api-server:5000`) and chart 0.1's (`<release>-api:5000`) both work.
    svc, alias = one(r, "Service", api_service(v)), one(r, "Service", api_alias_service(v))
    for s in (svc, alias):
        assert {(p["name"], p["port"]) for p in s["spec"]["ports"]} == {("http", 5000), ("metrics", 8080)}
        assert s["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert alias["metadata"]["labels"]["chorus/alias-of"] == api_service(v)
    assert "annotations" not in alias["metadata"], "load balancer settings only on the Service the Ingress uses"
    assert {f"{RELEASE}-api-server", f"{RELEASE}-api"} == {api_service(v), api_alias_service(v)}
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
    assert sorted(d["metadata"]["name"] for d in deps) == sorted(worker_name(v, w) for w in workers)
    for w in workers:
        a = autoscaling(w)
        dep = one(r, "Deployment", worker_name(v, w))
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
        gpu, accelerator = worker_gpu(v, w)
        limits = c["resources"].get("limits", {})
        image = w["workerArgs"].get("image", "chorus")
        if gpu:
            # One GPU per pod, requested as the extended resource gpuType names.
            assert limits[gpu] == 1
            assert not {k for k in limits if "/" in k} - {gpu}
            # The worker runs its forward passes on the GPU (batched), not on the pod's CPU, from the CUDA image.
            assert env["CHORUS_DEVICE"]["value"] == "cuda"
            assert c["image"].split("/")[-1].split(":")[0] == ("chorus-cuda" if image == "chorus" else image)
            assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
            if v["infra"]["provider"] == "gcp":
                if accelerator:
                    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": accelerator}
                    assert "affinity" not in pod
                else:
                    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
                        "nodeSelectorTerms"]
                    assert term == {"matchExpressions": [{"key": "cloud.google.com/gke-accelerator",
                                                          "operator": "Exists"}]}
                    assert "nodeSelector" not in pod
            else:
                expected = {"nvidia.com/gpu.present": "true"}
                if accelerator:
                    expected["nvidia.com/gpu.product"] = accelerator
                assert pod["nodeSelector"] == expected
        else:
            assert not {k for k in limits if "/" in k}
            assert "CHORUS_DEVICE" not in env
            assert c["image"].split("/")[-1].split(":")[0] == image
            assert "nodeSelector" not in pod and "tolerations" not in pod and "affinity" not in pod
        expected_res = w.get("resources") or v["resources"]["worker"]
        assert c["resources"]["requests"] == expected_res["requests"]


# --- artifact store --------------------------------------------------------------------------------------------

ARTIFACT_VARS = {"CHORUS_ARTIFACTS", "CHORUS_RELOAD_INTERVAL", "CHORUS_ENABLE_HOT_RELOAD"}


def check_artifact_store(docs: list[dict], values: dict) -> None:
    """The API and every worker pool get the store's variables and credentials; nothing else does. Without a location
    no pod gets any of it."""
    art = values["artifacts"]
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    users = {f"{RELEASE}-api", *(worker_name(values, w) for w in values["workers"])}
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
                pool = next((w for w in values["workers"] if name == worker_name(values, w)), None)
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
    assert sorted(sos) == sorted(worker_name(v, w) for w in autoscaled)
    for w in autoscaled:
        a = autoscaling(w)
        so = sos[worker_name(v, w)]["spec"]
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": worker_name(v, w)}
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
        assert float(load["metadata"]["threshold"]) == pytest.approx(float(a["threshold"]))
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
    workers = {worker_name(v, w): w["name"] for w in v["workers"]}
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


def expected_paths(v: dict) -> dict:
    routes = v["ingress"]["routes"]
    lp, api = f"{RELEASE}-license-proxy", api_service(v)
    return {h: {"/license": (lp, "Prefix"), "/audit": (lp, "Prefix"), "/": (api, "Prefix")} for h in routes}


@pytest.mark.parametrize("case", [c for c in CASES if load_values(c)["infra"]["provider"] == "aws"])
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
    assert ingress_paths(ing) == expected_paths(v)
    tls = {"alb.ingress.kubernetes.io/backend-protocol": "HTTPS",
           "alb.ingress.kubernetes.io/healthcheck-protocol": "HTTPS"} if v["api"]["tls"]["secretName"] else {}
    assert one(r, "Service", api_service(v))["metadata"]["annotations"] == {
        "alb.ingress.kubernetes.io/healthcheck-path": "/status", **tls}
    assert a["alb.ingress.kubernetes.io/backend-protocol"] == "HTTP", "the license proxy's backends stay HTTP"
    assert not objs(r, "ManagedCertificate") and not objs(r, "BackendConfig")


@pytest.mark.parametrize("case", [c for c in CASES if load_values(c)["infra"]["provider"] == "gcp"])
def test_gke_ingress(renders, case):
    r, v = renders[case], renders[case]["values"]
    (ing,) = objs(r, "Ingress")
    a = ing["metadata"]["annotations"]
    assert a["kubernetes.io/ingress.class"] == "gce"
    assert "ingressClassName" not in ing["spec"]
    certs = objs(r, "ManagedCertificate")
    if legacy_names(v):  # chart 0.1: one certificate per route
        assert sorted(c["spec"]["domains"][0] for c in certs) == sorted(v["ingress"]["routes"])
        assert all(len(c["spec"]["domains"]) == 1 for c in certs)
    else:  # the runbook's one certificate covering every route
        (cert,) = certs
        assert cert["metadata"]["name"] == f"{RELEASE}-ssl-cert"
        assert cert["spec"]["domains"] == v["ingress"]["routes"]
    names = sorted(c["metadata"]["name"] for c in certs)
    assert sorted(a["networking.gke.io/managed-certificates"].split(",")) == names
    if v["ingress"]["globalStaticIpName"]:
        assert a["kubernetes.io/ingress.global-static-ip-name"] == v["ingress"]["globalStaticIpName"]
    fc = one(r, "FrontendConfig", a["networking.gke.io/v1beta1.FrontendConfig"])
    assert fc["spec"]["redirectToHttps"]["enabled"] is True
    assert ingress_paths(ing) == expected_paths(v)
    for svc_name, path, port in ((api_service(v), "/status", 5000), (f"{RELEASE}-license-proxy", "/healthz", 8080)):
        sa = one(r, "Service", svc_name)["metadata"]["annotations"]
        assert json.loads(sa["cloud.google.com/neg"]) == {"ingress": True}
        bc = one(r, "BackendConfig", json.loads(sa["cloud.google.com/backend-config"])["default"])
        assert bc["spec"]["healthCheck"]["requestPath"] == path and bc["spec"]["healthCheck"]["port"] == port
    api_bc = one(r, "BackendConfig", f"{RELEASE}-api")
    assert api_bc["spec"]["timeoutSec"] >= 3600, "WebSockets need a long backend timeout"


@pytest.mark.parametrize("case", [c for c in CASES if load_values(c)["infra"]["provider"] == "none"])
def test_provider_none_renders_no_ingress(renders, case):
    r = renders[case]
    for kind in ("Ingress", "ManagedCertificate", "BackendConfig", "FrontendConfig"):
        assert not objs(r, kind), kind
    for name in (api_service(r["values"]), api_alias_service(r["values"]), f"{RELEASE}-license-proxy"):
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
    "infra.gcsSecretName",
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


def render_notes(helm: Path, tmp_path: Path, values: Path) -> str:
    """`helm template` skips NOTES.txt, so render it from a copy of the chart as a YAML block scalar."""
    chart = tmp_path / "chorus"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt")
    lines = notes.read_text().splitlines(keepends=True)
    (chart / "templates" / "notes-under-test.yaml").write_text(
        "notes: |\n" + "".join("  " + ln if ln.strip() else ln for ln in lines))
    notes.unlink()
    r = run([helm, "template", RELEASE, chart, "--namespace", NAMESPACE, "--values", values,
             "--show-only", "templates/notes-under-test.yaml"])
    assert r.rc == 0, r.err
    return yaml.safe_load(r.out)["notes"]


@pytest.mark.parametrize("case", CASES)
def test_notes_name_every_rollout_and_the_way_in(helm, renders, tmp_path, case):
    text = render_notes(helm, tmp_path, VALUES_DIR / f"{case}.yaml")
    for owner, _ in pod_specs(renders[case]):
        kind = owner["kind"].lower()
        assert f"rollout status {kind}/{owner['metadata']['name']}" in text
    v = renders[case]["values"]
    if v["ingress"]["enabled"]:
        for host in v["ingress"]["routes"]:
            assert f"curl -fsS https://{host}/status" in text
    else:
        assert f"port-forward svc/{api_service(v)} 5000:5000" in text
    assert ("inferno_worker_load" in text) == v["metrics"]["enabled"]
    keys_add = f"exec deploy/{RELEASE}-license-proxy -- chorus keys add NAME --data /var/lib/chorus-license"
    assert (keys_add in text) == v["api"]["tenantKeysOnly"]


def test_worker_entry_defaults(helm):
    """Keys left out of a workers[] entry take the documented defaults."""
    workers = '[{"name": "min", "workerArgs": {"model": "en_US-joe-medium", "capacity": 3}}]'
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"workers={workers}"))
    assert r.rc == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    (dep,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "min"]
    assert dep["spec"]["replicas"] == 1
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/chorus-tts/chorus:chorus-20260301"
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert not [d for d in docs if d["kind"] == "ScaledObject"]


# --- the familiar install: its values.yaml verbatim, its Secrets, its runbook's names --------------------------

FAMILIAR = [c for c in CASES if c.startswith("familiar-")]


def test_familiar_values_are_in_the_matrix():
    """values/familiar-gcp.yaml is the familiar example verbatim; familiar-aws.yaml the same with provider aws and a
    certificateArn. Being in the matrix, both pass helm lint --strict, render, validate against Kubernetes 1.33 and
    the CRD schemas, and match their golden renders."""
    assert FAMILIAR == ["familiar-aws", "familiar-gcp"]
    gcp, aws = ((VALUES_DIR / f"{c}.yaml").read_text() for c in ("familiar-gcp", "familiar-aws"))
    assert "operation: TTS" in gcp and 'threshold: "0.6"' in gcp and "gpuType: nvidia.com/gpu" in gcp
    assert "serviceAccount: chorus-image-sa" in gcp and "gcsSecretName: gar-pull-secret" in gcp
    diff = [ln for ln in difflib.unified_diff(gcp.splitlines(), aws.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert diff == ["-  provider: gcp  # or aws", "+  provider: aws  # or gcp",
                    "+  certificateArn: arn:aws:acm:us-east-1:123456789012:certificate/"
                    "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"], diff


@pytest.mark.parametrize("case", FAMILIAR)
def test_familiar_install_renders_what_it_means(renders, case):
    r, v = renders[case], renders[case]["values"]
    provider = v["infra"]["provider"]
    # The runbook's names.
    names = {(d["kind"], d["metadata"]["name"]) for d in r["docs"]}
    assert {("Deployment", "chorus-api"), ("Deployment", "tts-worker"), ("Service", "chorus-api-server"),
            ("PodMonitor", "chorus-monitor"), ("ScaledObject", "tts-worker")} <= names
    assert (("ManagedCertificate", "chorus-ssl-cert") in names) == (provider == "gcp")
    svc = one(r, "Service", "chorus-api-server")
    assert {"name": "http", "port": 5000, "targetPort": "http", "protocol": "TCP"} in svc["spec"]["ports"]
    pm = one(r, "PodMonitor", "chorus-monitor")
    assert pm["metadata"]["labels"]["release"] == "prometheus"
    # The API: ready on GET /status; the image from imageRegistry + image + releaseTag; pulled with the Secret.
    api = one(r, "Deployment", "chorus-api")["spec"]["template"]["spec"]
    assert api["containers"][0]["readinessProbe"]["httpGet"] == {"path": "/status", "port": "http"}
    assert api["containers"][0]["image"] == "registry.example.com/chorus/self-serve/chorus:chorus-20251118"
    assert api["imagePullSecrets"] == [{"name": "gar-pull-secret"}]
    # The pods run as the named ServiceAccount, which the chart creates.
    (sa,) = objs(r, "ServiceAccount")
    assert sa["metadata"]["name"] == "chorus-image-sa"
    assert all(spec["serviceAccountName"] == "chorus-image-sa" for _, spec in pod_specs(r))
    # The worker: one nvidia.com/gpu per pod, the CUDA image, the GPU toleration and GPU nodes; un-Ready until its
    # model is loaded and its capacity is > 0 (GET /ready); capacity 4; operation TTS is text to speech.
    worker = one(r, "Deployment", "tts-worker")
    pod = worker["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"] == "registry.example.com/chorus/self-serve/chorus-cuda:chorus-20251118"
    assert env_of(c)["CHORUS_DEVICE"]["value"] == "cuda"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if provider == "gcp":
        assert "cloud.google.com/gke-accelerator" in json.dumps(pod["affinity"])
    else:
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert c["startupProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    assert c["args"][c["args"].index("--capacity") + 1] == "4"
    assert worker["metadata"]["annotations"]["chorus/operation"] == "tts"
    # KEDA: windows 30 s up, 900 s down, target utilisation 0.6, 1 to 10 pods.
    so = one(r, "ScaledObject", "tts-worker")["spec"]
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 30
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 900
    assert so["cooldownPeriod"] == 900
    (trigger,) = so["triggers"]
    assert trigger["metadata"]["threshold"] == "0.6"
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (1, 10)
    # The familiar Secrets: api-key-secret's CARTESIA_API_KEY is a client key, CONTAINER_KEY the proxy's token.
    assert env_of(api["containers"][0])["CHORUS_API_KEYS"]["valueFrom"]["secretKeyRef"] == {
        "name": "api-key-secret", "key": "CARTESIA_API_KEY"}
    proxy = one(r, "Deployment", "chorus-license-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(proxy)["CHORUS_LICENSE_UPSTREAM_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "CONTAINER_KEY"
    # No bucket: gcsSecretName has nothing to read (no volume); no legacy components rendered.
    assert not [vol for _, spec in pod_specs(r) for vol in spec.get("volumes", []) if "secret" in vol]
    # The Ingress serves every route through chorus-api-server.
    (ing,) = objs(r, "Ingress")
    assert {p["backend"]["service"]["name"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]
            if p["path"] == "/"} == {"chorus-api-server"}
    a = ing["metadata"]["annotations"]
    if provider == "aws":
        assert a["alb.ingress.kubernetes.io/certificate-arn"] == v["ingress"]["certificateArn"]
        assert a["alb.ingress.kubernetes.io/ssl-policy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 minimum
        assert a["alb.ingress.kubernetes.io/ssl-redirect"] == "443"  # HTTP to HTTPS
        assert "kubernetes.io/ingress.global-static-ip-name" not in a  # "GKE only": ignored on AWS
    else:
        assert a["networking.gke.io/managed-certificates"] == "chorus-ssl-cert"
        assert a["kubernetes.io/ingress.global-static-ip-name"] == "chorus-ingress-ip"


@pytest.mark.parametrize("case", FAMILIAR)
def test_familiar_notes_give_the_runbook_commands(helm, tmp_path, case):
    text = render_notes(helm, tmp_path, VALUES_DIR / f"{case}.yaml")
    assert "rollout status deployment/chorus-api\n" in text
    assert "rollout status deployment/tts-worker\n" in text
    assert "API Service: chorus-api-server:5000" in text
    assert "create secret generic api-key-secret --from-literal=CONTAINER_KEY=TOKEN --from-literal=CARTESIA_API_KEY=KEY" in text
    assert "CARTESIA_API_KEY is a client API key the API accepts" in text
    assert "CONTAINER_KEY is the license proxy's bearer token for the upstream license server" in text
    assert "GPU pool (nvidia.com/gpu), so it runs the CUDA image chorus-cuda" in text
    assert "chorus smoke --url URL --api-key KEY --golive cpu-2 --metrics-url" in text
    assert "infra.gcsSecretName (gar-pull-secret) is used only with a gs:// artifacts.location" in text
    if case == "familiar-gcp":
        assert "describe managedcertificate chorus-ssl-cert" in text
    else:
        assert "ingress.globalStaticIpName is GKE only; ignored with infra.provider aws" in text


def test_gcs_secret_name_mounts_the_bucket_key_for_a_gs_store(helm):
    """With a gs:// artifact store, infra.gcsSecretName's key file reaches the API and every worker as
    GOOGLE_APPLICATION_CREDENTIALS (read-only); an explicit artifacts.credentialsSecret takes its place."""
    fam = VALUES_DIR / "familiar-gcp.yaml"
    r = run(template_cmd(helm, "--values", fam, "--set", "artifacts.location=gs://chorus-bucket/prod"))
    assert r.rc == 0, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    users = {"chorus-api", "tts-worker"}
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        spec = d["spec"]["template"]["spec"]
        c = spec["containers"][0]
        vols = {vol["name"]: vol for vol in spec["volumes"]}
        if d["metadata"]["name"] in users:
            assert env_of(c)["GOOGLE_APPLICATION_CREDENTIALS"]["value"] == "/var/run/secrets/chorus-gcs/key.json"
            assert vols["gcs-credentials"]["secret"] == {"secretName": "gar-pull-secret",
                                                         "items": [{"key": "key.json", "path": "key.json"}]}
            assert {"name": "gcs-credentials", "mountPath": "/var/run/secrets/chorus-gcs",
                    "readOnly": True} in c["volumeMounts"]
        else:
            assert "gcs-credentials" not in vols
    r = run(template_cmd(helm, "--values", fam, "--set", "artifacts.location=gs://chorus-bucket/prod",
                         "--set", "artifacts.credentialsSecret=gcs-env"))
    assert r.rc == 0, r.err
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in r.out and "gcs-credentials" not in r.out


def test_end_to_end_tls_and_cors(helm, renders):
    """api.tls.secretName: the kubernetes.io/tls Secret mounted whole (so renewals reach the files) and named to the
    API, the readiness probe and the load balancers speaking HTTPS to the API (and only to it); api.cors.origins
    become CHORUS_CORS_ORIGINS."""
    assert "tls-cors" in renders
    r = renders["tls-cors"]
    dep = one(r, "Deployment", f"{RELEASE}-api")
    spec = dep["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = env_of(c)
    assert env["CHORUS_TLS_CERT"]["value"] == "/etc/chorus-tls/tls.crt"
    assert env["CHORUS_TLS_KEY"]["value"] == "/etc/chorus-tls/tls.key"
    assert env["CHORUS_CORS_ORIGINS"]["value"] == "https://app.example.com,https://admin.example.com"
    vols = {vol["name"]: vol for vol in spec["volumes"]}
    assert vols["tls"]["secret"]["secretName"] == "chorus-api-tls"
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    assert mount == {"name": "tls", "mountPath": "/etc/chorus-tls", "readOnly": True}, "no subPath: updates arrive"
    for d in objs(r, "Deployment"):
        if d["metadata"]["name"] != f"{RELEASE}-api":
            assert "CHORUS_TLS_CERT" not in env_of(d["spec"]["template"]["spec"]["containers"][0])
    # Without the values nothing of it is rendered.
    plain = renders["aws"]
    c = one(plain, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]["containers"][0]
    assert not {"CHORUS_TLS_CERT", "CHORUS_CORS_ORIGINS"} & set(env_of(c))
    # GKE: HTTPS to the API's backends, health checked over HTTPS; the license proxy's stay HTTP.
    out = run(template_cmd(helm, "--values", VALUES_DIR / "gcp.yaml", "--set", "api.tls.secretName=chorus-api-tls"))
    assert out.rc == 0, out.err
    gdocs = {"docs": [d for d in yaml.safe_load_all(out.out) if d]}
    v = load_values("gcp")
    svc = one(gdocs, "Service", api_service(v))["metadata"]["annotations"]
    assert json.loads(svc["cloud.google.com/app-protocols"]) == {"http": "HTTPS"}
    assert one(gdocs, "BackendConfig", f"{RELEASE}-api")["spec"]["healthCheck"]["type"] == "HTTPS"
    assert one(gdocs, "BackendConfig", f"{RELEASE}-license-proxy")["spec"]["healthCheck"]["type"] == "HTTP"
    assert "cloud.google.com/app-protocols" not in one(gdocs, "Service", f"{RELEASE}-license-proxy")["metadata"].get(
        "annotations", {})


@pytest.mark.parametrize("sa, created, name", [
    (None, True, RELEASE),
    ("chorus-image-sa", True, "chorus-image-sa"),
    ({"name": "existing-sa", "create": False}, False, "existing-sa"),
    ({"annotations": {"iam.gke.io/gcp-service-account": "x@p.iam.gserviceaccount.com"}}, True, RELEASE),
])
def test_service_account_forms(helm, sa, created, name):
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"infra.serviceAccount={json.dumps(sa)}"))
    assert r.rc == 0, r.err
    assert "cannot overwrite table" not in r.err and "Ignoring non-table" not in r.err, r.err
    docs = [d for d in yaml.safe_load_all(r.out) if d]
    sas = [d for d in docs if d["kind"] == "ServiceAccount"]
    assert [s["metadata"]["name"] for s in sas] == ([name] if created else [])
    if isinstance(sa, dict) and sa.get("annotations"):
        assert sas[0]["metadata"]["annotations"] == sa["annotations"]
    assert {spec["spec"]["template"]["spec"]["serviceAccountName"] for spec in docs
            if spec["kind"] in ("Deployment", "StatefulSet")} == {name}


@pytest.mark.parametrize("operation", ["tts", "TTS", "Tts"])
@pytest.mark.parametrize("threshold", ["0.6", 0.6, "1", ".5"])
def test_operation_any_case_and_threshold_string_or_number(helm, operation, threshold):
    w = [{"name": "tts", "workerArgs": {"model": "en_US-joe-medium", "capacity": 4, "operation": operation},
          "autoscaling": {"enabled": True, "threshold": threshold}}]
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"workers={json.dumps(w)}"))
    assert r.rc == 0, r.err
    (so,) = [d for d in yaml.safe_load_all(r.out) if d and d["kind"] == "ScaledObject"]
    assert float(so["spec"]["triggers"][0]["metadata"]["threshold"]) == pytest.approx(float(threshold))


def test_chart_0_1_names_keep_every_object_of_an_existing_install(helm):
    """names: chart-0.1 renders, for every values case chart 0.1 had, exactly the objects chart 0.1 rendered
    (fixtures/chart-0.1-objects.json, read off its golden renders), plus the runbook's API Service as an alias."""
    before = json.loads((TESTS / "fixtures" / "chart-0.1-objects.json").read_text())
    assert set(before) <= set(CASES)
    for case, objects in before.items():
        r = run(template_cmd(helm, "--values", VALUES_DIR / f"{case}.yaml", "--set", "names=chart-0.1"))
        assert r.rc == 0, r.err
        now = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in yaml.safe_load_all(r.out) if d)
        assert now == sorted([*objects, f"Service/{RELEASE}-api-server"]), case


def test_default_names_rename_only_what_the_runbook_names(renders):
    """With the default names, the objects of a chart 0.1 install are kept but for the documented renames: worker
    Deployments and ScaledObjects to the pool name, the PodMonitor to <release>-monitor, per-route
    ManagedCertificates to one <release>-ssl-cert; and the API Service <release>-api-server is added."""
    before = json.loads((TESTS / "fixtures" / "chart-0.1-objects.json").read_text())
    for case, objects in before.items():
        v = renders[case]["values"]
        renamed = {f"Deployment/{RELEASE}-worker-{w['name']}": f"Deployment/{w['name']}" for w in v["workers"]}
        renamed |= {f"ScaledObject/{RELEASE}-worker-{w['name']}": f"ScaledObject/{w['name']}" for w in v["workers"]}
        renamed[f"PodMonitor/{RELEASE}"] = f"PodMonitor/{RELEASE}-monitor"
        expected = {renamed.get(o, o) for o in objects if not o.startswith("ManagedCertificate/")}
        expected.add(f"Service/{RELEASE}-api-server")
        if any(o.startswith("ManagedCertificate/") for o in objects):
            expected.add(f"ManagedCertificate/{RELEASE}-ssl-cert")
        now = {f"{d['kind']}/{d['metadata']['name']}" for d in renders[case]["docs"]}
        assert now == expected, case


def test_a_pool_named_like_another_deployment_is_refused(helm):
    """With the runbook's names a pool's Deployment is the pool name: one named like the API's is refused."""
    w = [{"name": f"{RELEASE}-api", "workerArgs": {"model": "en_US-joe-medium", "capacity": 4}}]
    r = run(template_cmd(helm, *REQUIRED_SETS, "--set-json", f"workers={json.dumps(w)}"))
    assert r.rc != 0
    assert (f'workers[0].name "{RELEASE}-api": the pool\'s Deployment would be named {RELEASE}-api, like another '
            "Deployment of this release; choose another pool name") in r.err
    assert run(template_cmd(helm, *REQUIRED_SETS, "--set", "names=chart-0.1", "--set-json",
                            f"workers={json.dumps(w)}")).rc == 0, "chart 0.1 names prefix the pool"
