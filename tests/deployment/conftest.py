"""Renders every deployment artefact once per session, with the project's own tools.

helm, helm4 and kubectl come from ``.tools/bin`` (``scripts/install_tools.sh``, called by
``scripts/bootstrap.sh``); the image closures resolve against ``.tools/wheelhouse``. Nothing here
needs a network or a cluster. A missing tool skips its tests locally and fails them on CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENT = REPO / "deployment"
TOOLS = REPO / ".tools"
CHART = DEPLOYMENT / "helm" / "trading-bot"
OVERLAYS = DEPLOYMENT / "kubernetes" / "overlays"
# The Kubernetes version whose schemas every manifest is validated against (kubernetes-validate).
KUBERNETES_VERSION = "1.37.0"
ON_CI = os.environ.get("CI", "").lower() == "true"

# The seven services and their ports; the KIS simulator is the eighth image.
SERVICES = {
    "api-gateway": 8000,
    "data-collector": 8001,
    "data-processor": 8002,
    "model-trainer": 8003,
    "inferencer": 8004,
    "trader": 8005,
    "web-interface": 8080,
}
IMAGES = [*SERVICES, "kis-sim"]
TORCH_IMAGES = {"model-trainer", "inferencer"}

Manifest = dict[str, Any]


def missing(reason: str) -> None:
    """Skip locally, fail on CI: there the project's own scripts must have installed the tools."""
    if ON_CI:
        pytest.fail(f"required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


def tool(name: str) -> Path:
    path = TOOLS / "bin" / name
    if not os.access(path, os.X_OK):
        missing(f"{path.relative_to(REPO)} is not installed; run scripts/install_tools.sh")
    return path


def run(*args: str | Path, cwd: Path = REPO) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        command = " ".join(map(str, args))
        pytest.fail(f"{command} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done.stdout


def documents(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(overlay: Path) -> str:
    return run(tool("kubectl"), "kustomize", overlay)


def helm_template(*values: str) -> str:
    args: list[str | Path] = [tool("helm"), "template", "trading-bot", CHART, "--kube-version", KUBERNETES_VERSION]
    for file in values:
        args += ["-f", CHART / file]
    return run(*args)


# What each render is called in test ids, and how it is made.
RENDERS: dict[str, Callable[[], str]] = {
    "kustomize-base": lambda: kustomize(DEPLOYMENT / "kubernetes" / "base"),
    "kustomize-dev": lambda: kustomize(OVERLAYS / "dev"),
    "kustomize-prod": lambda: kustomize(OVERLAYS / "prod"),
    "helm-default": lambda: helm_template(),
    "helm-prod": lambda: helm_template("ci/prod-values.yaml"),
    "helm-simulator": lambda: helm_template("ci/simulator-values.yaml"),
}


@pytest.fixture(scope="session")
def render_text() -> Callable[[str], str]:
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            cache[name] = RENDERS[name]()
        return cache[name]

    return get


@pytest.fixture(scope="session")
def render(render_text: Callable[[str], str]) -> Callable[[str], list[Manifest]]:
    return lambda name: documents(render_text(name))


@pytest.fixture(scope="session")
def kubernetes_validate() -> Path:
    path = Path(sys.executable).parent / "kubernetes-validate"
    if not path.is_file():
        missing("kubernetes-validate is not installed (requirements-dev.txt)")
    return path
