"""The Dockerfiles: one per image, multi-stage and non-root, and an install closure that holds
torch only where it is needed — resolved by pip itself, offline, against .tools/wheelhouse."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import DEPLOYMENT, IMAGES, REPO, SERVICES, TOOLS, TORCH_IMAGES, missing

DOCKERFILES = DEPLOYMENT / "docker"


def dockerfile(image: str) -> str:
    return (DOCKERFILES / f"{image}.Dockerfile").read_text()


def instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [line.strip() for line in joined.splitlines() if line.strip()]


def local_projects(text: str) -> set[str]:
    """The repository folders the image installs (the ./<folder> arguments of pip install)."""
    found: set[str] = set()
    for line in instructions(text):
        if line.startswith("RUN") and "pip install" in line:
            found |= {word[2:] for word in shlex.split(line) if word.startswith("./")}
    return found


def installs_cpu_torch_first(text: str) -> bool:
    lines = instructions(text)
    torch = [i for i, line in enumerate(lines) if re.search(r"pip install .*torch==2\.13\.0\+cpu", line)]
    projects = [i for i, line in enumerate(lines) if "pip install -c constraints.txt" in line]
    cpu_index = "--index-url https://download.pytorch.org/whl/cpu"
    return bool(torch) and cpu_index in lines[torch[0]] and torch[0] < projects[0]


def test_there_is_one_dockerfile_per_image() -> None:
    assert sorted(path.name for path in DOCKERFILES.glob("*.Dockerfile")) == sorted(f"{i}.Dockerfile" for i in IMAGES)


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_is_multi_stage_non_root_and_healthchecked(image: str) -> None:
    lines = instructions(dockerfile(image))
    assert [line for line in lines if line.startswith("FROM")] == [
        "FROM python:3.11-slim AS builder",
        "FROM python:3.11-slim AS runtime",
    ]
    runtime = lines[lines.index("FROM python:3.11-slim AS runtime"):]
    assert "COPY --from=builder /opt/venv /opt/venv" in runtime
    assert "USER 10001:10001" in runtime
    assert any(line.startswith("HEALTHCHECK") for line in runtime)
    script = "tradebot-kis-sim" if image == "kis-sim" else f"tradebot-{image}"
    assert runtime[-1] == f'CMD ["{script}"]'
    expose = next(line for line in runtime if line.startswith("EXPOSE")).split()[1:]
    if image == "kis-sim":
        assert expose == ["9443", "21000", "29443", "31000"]
    else:
        assert expose == [str(SERVICES[image])]
        assert "/healthz" in next(line for line in runtime if line.startswith("HEALTHCHECK"))


@pytest.mark.parametrize("image", IMAGES)
def test_dockerfile_installs_only_common_and_its_own_service(image: str) -> None:
    expected = {"common"} if image == "kis-sim" else {"common", image}
    assert local_projects(dockerfile(image)) == expected


@pytest.mark.parametrize("image", IMAGES)
def test_everything_a_dockerfile_copies_is_in_the_build_context(image: str) -> None:
    allowed = {line[1:] for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for line in instructions(dockerfile(image)):
        if line.startswith("COPY") and "--from=" not in line:
            for source in line.split()[1:-1]:
                assert source in allowed, f"{source} is excluded by .dockerignore"


@pytest.fixture(scope="session")
def closures() -> dict[str, dict[str, str]]:
    """Each image's install, resolved by pip (name -> version), all images at once."""
    wheelhouse = TOOLS / "wheelhouse"
    if not wheelhouse.is_dir():
        missing(".tools/wheelhouse is missing; run scripts/install_tools.sh")

    def resolve(image: str) -> dict[str, str]:
        # --isolated: no pip configuration, no index; only the wheelhouse. --no-build-isolation:
        # the venv's hatchling reads the local projects' metadata without a network.
        command = [
            sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
            "--no-index", "--find-links", str(wheelhouse), "--no-build-isolation", "--report", "-",
            "-c", "constraints.txt", *(f"./{p}" for p in sorted(local_projects(dockerfile(image)))),
        ]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            pytest.fail(f"pip could not resolve {image} (run scripts/install_tools.sh?):\n{done.stderr}", pytrace=False)
        report = json.loads(done.stdout)
        return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in report["install"]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(IMAGES, pool.map(resolve, IMAGES), strict=True))


@pytest.mark.parametrize("image", IMAGES)
def test_torch_is_in_an_image_only_where_a_service_needs_it(image: str, closures: dict[str, dict[str, str]]) -> None:
    closure = closures[image]
    assert "tradebot-common" in closure
    if image in TORCH_IMAGES:
        assert closure["torch"] == "2.13.0+cpu"
        assert not any(name.startswith("nvidia-") for name in closure)
        assert installs_cpu_torch_first(dockerfile(image))
    else:
        assert "torch" not in closure
        assert "torch" not in dockerfile(image).replace("# torch is not in this image", "")
