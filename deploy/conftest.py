"""Fixtures for the deploy tests (Dockerfile, compose, Helm chart): the tools, installed by deploy/tools/install.
Run the tests with scripts/chart-test."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploytest import TOOLS, VENV_BIN, INSTALL_HINT, tool


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool(TOOLS / "bin" / "helm", "helm")


@pytest.fixture(scope="session")
def node() -> Path:
    return tool(None, "node")


@pytest.fixture(scope="session")
def node_modules() -> Path:
    nm = TOOLS / "node_modules"
    if not (nm / "@kubernetes-models" / "keda").is_dir():
        pytest.fail(f"{nm} has no CRD validators: {INSTALL_HINT}", pytrace=False)
    return nm


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    return tool(VENV_BIN / "kubernetes-validate", "kubernetes-validate")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    return tool(VENV_BIN / "hadolint", "hadolint")

