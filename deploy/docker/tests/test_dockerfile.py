"""The Dockerfile without a Docker engine: hadolint, plus structural checks that tie it to the chart and compose."""

from __future__ import annotations

import fnmatch
import re

import pytest

from deploytest import REPO, run

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
IGNORE = REPO / "deploy" / "docker" / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list] = {}
    current = None
    for ins, arg in instructions():
        if ins == "FROM":
            m = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", arg, re.I)
            assert m, f"every stage is named: FROM {arg}"
            current = m.group(2)
            result[current] = [(ins, arg)]
        elif current:
            result[current].append((ins, arg))
    return result


def test_hadolint(hadolint):
    r = run([hadolint, "--failure-threshold", "info", DOCKERFILE])
    assert r.rc == 0, r.both


def test_stages_and_the_runtime_build_argument():
    known = {"FROM", "ARG", "RUN", "COPY", "ENV", "USER", "WORKDIR", "EXPOSE", "ENTRYPOINT", "CMD"}
    assert {i for i, _ in instructions()} <= known, "the parse above went wrong (a comment inside a RUN?)"
    s = stages()
    assert list(s) == ["build", "binary-prebuilt", "binary-build", "binary", "assets", "assets-prebuilt",
                       "assets-setup", "assets-final", "ort-cuda", "runtime-cpu", "runtime-cuda", "final"]
    args = instructions()
    # The registry build is the default: bases by their usual names, the binary and the assets built in the image.
    for arg in ("RUNTIME=cpu", "BINARY=build", "ASSETS=setup", "RUST_IMAGE=rust:${RUST_VERSION}-bookworm",
                "PYTHON_IMAGE=python:3.11-slim-bookworm", "DEBIAN_IMAGE=debian:bookworm-slim"):
        assert ("ARG", arg) in args, arg
    assert s["final"][0] == ("FROM", "runtime-${RUNTIME} AS final")
    assert s["binary"][0] == ("FROM", "binary-${BINARY} AS binary")
    assert s["assets-final"][0] == ("FROM", "assets-${ASSETS} AS assets-final")
    assert s["runtime-cpu"][0] == ("FROM", "${DEBIAN_IMAGE} AS runtime-cpu")
    # The prebuilt stages take only what scripts/build-images stages.
    assert s["binary-prebuilt"][1:] == [("COPY", ".image-context/chorus /out/chorus")]
    assert all(a.startswith(".image-context/") for i, a in s["assets-prebuilt"][1:] if i == "COPY")
    # No frontend image to pull: the engine's built-in Dockerfile frontend builds it offline.
    assert "# syntax=" not in DOCKERFILE.read_text()
    build = " ".join(a for i, a in s["build"] if i == "RUN")
    assert "cargo build --release --locked -p chorus-cli" in build
    assert "scripts/setup" in " ".join(a for i, a in s["assets"] if i == "RUN")
    assert "onnxruntime-gpu==" in " ".join(a for i, a in s["ort-cuda"] if i == "RUN")


@pytest.mark.parametrize("stage", ["runtime-cpu", "runtime-cuda"])
def test_runtime_stages_are_non_root_and_carry_the_voice_and_runtime(stage):
    body = stages()[stage]
    users = [a for i, a in body if i == "USER"]
    assert users == ["10001:10001"], "non-root, the uid the chart's securityContext uses"
    last_user = max(n for n, (i, _) in enumerate(body) if i == "USER")
    assert all(i not in ("RUN", "COPY") for i, _ in body[last_user + 1:]), "nothing runs as root after USER"
    copies = " ".join(a for i, a in body if i == "COPY")
    for target in ("/usr/local/bin/chorus", "/opt/chorus/runtime/onnxruntime", "/opt/chorus/runtime/espeak-ng",
                   "/opt/chorus/models"):
        assert target in copies, target
    env = " ".join(a for i, a in body if i == "ENV")
    assert "CHORUS_MODELS_DIR=/opt/chorus/models" in env and "CHORUS_RUNTIME_DIR=/opt/chorus/runtime" in env
    assert ("ENTRYPOINT", '["/usr/local/bin/chorus"]') in body
    run_ = " ".join(a for i, a in body if i == "RUN")
    assert "useradd --uid 10001" in run_
    assert "install -d -o 10001 -g 10001" in run_ and "/var/lib/chorus-license" in run_
    assert "/var/lib/chorus-artifacts" in run_, "compose's artifacts volume starts owned by the non-root user"
    assert ("EXPOSE", "5000 8080") in body


def test_chart_paths_and_uid_match_the_image():
    chart = (REPO / "deploy/helm/chorus/templates/_helpers.tpl").read_text()
    assert "runAsUser: 10001" in chart and "fsGroup: 10001" in chart
    workers = (REPO / "deploy/helm/chorus/templates/worker-deployments.yaml").read_text()
    assert "/opt/chorus/models" in workers and "/opt/chorus/runtime" in workers


def test_dockerignore_lets_in_exactly_what_the_build_copies():
    """BuildKit reads <Dockerfile>.dockerignore; every COPY source from the context must survive it."""
    patterns = [p.strip() for p in IGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for p in patterns:
            neg = p.startswith("!")
            pat = p[1:] if neg else p
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat.rstrip("/*") + "/*"):
                keep = neg
        return keep

    sources = []
    for ins, arg in instructions():
        if ins == "COPY" and "--from=" not in arg:
            sources += arg.split()[:-1]
    assert sources, "the build copies sources from the context"
    for src in sources:
        if src.startswith(".image-context/"):  # staged by scripts/build-images (git-ignored)
            assert included(src) and included(src + "/x"), f"{src} is excluded by {IGNORE.name}"
            continue
        assert (REPO / src).exists(), src
        files = [src] if (REPO / src).is_file() else [str(p.relative_to(REPO)) for p in (REPO / src).rglob("*.rs")][:5]
        for f in files:
            assert included(f), f"{f} is excluded by {IGNORE.name}"
    for excluded in ("target/release/chorus", ".venv/bin/python", "models/en_US-joe-medium/en_US-joe-medium.onnx",
                     ".tools/bin/helm", ".git/HEAD"):
        assert not included(excluded), f"{excluded} would be sent to the build"
