"""Helpers shared by the deploy tests (Dockerfile, compose, Helm chart). Run them with scripts/chart-test.

The tools come from deploy/tools/install (helm in .tools/bin, node validators in .tools/node_modules,
kubernetes-validate and hadolint in .venv). A missing tool is a test failure with the install hint, never a skip:
CI must not pass by skipping the chart tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOLS = Path(os.environ.get("CHORUS_TOOLS_DIR", REPO / ".tools"))
VENV_BIN = Path(os.environ.get("CHORUS_VENV_BIN", REPO / ".venv" / "bin"))
INSTALL_HINT = "run deploy/tools/install (scripts/setup --dev runs it)"


@dataclass
class Result:
    rc: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def run(cmd: list[str | Path], *, cwd: Path = REPO, env: dict[str, str] | None = None, timeout: int = 120) -> Result:
    proc = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def tool(path: Path | None, name: str) -> Path:
    if path is not None and path.exists():
        return path
    found = shutil.which(name)
    if found:
        return Path(found)
    pytest.fail(f"{name} not found ({path}): {INSTALL_HINT}", pytrace=False)


def update_golden() -> bool:
    return os.environ.get("CHORUS_UPDATE_GOLDEN") == "1"
