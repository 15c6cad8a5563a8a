"""scripts/deploy.sh in dry-run mode: prints what it would do and renders exactly what it would apply."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import IMAGES, REPO, tool


def deploy(tmp_path: Path, *args: str) -> str:
    tool("helm"), tool("kubectl")
    env = {**os.environ, "DEPLOY_RENDER_DIR": str(tmp_path)}
    done = subprocess.run(
        ["bash", "scripts/deploy.sh", "--dry-run", "--registry", "registry.test/tb", "--tag", "v9", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def images_in(path: Path) -> set[str]:
    found = set()
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            found |= {c["image"] for c in doc["spec"]["template"]["spec"]["containers"]}
    return found


def test_dry_run_builds_and_pushes_every_image_then_upgrades_the_helm_release(tmp_path: Path) -> None:
    out = deploy(tmp_path)
    for image in IMAGES:
        assert f"+ docker build -f deployment/docker/{image}.Dockerfile -t registry.test/tb/{image}:v9 ." in out
        assert f"+ docker push registry.test/tb/{image}:v9" in out
    assert "upgrade --install trading-bot deployment/helm/trading-bot" in out
    platform = {image for image in images_in(tmp_path / "helm-trading-bot.yaml") if "/tb/" in image}
    assert platform and all(image.startswith("registry.test/tb/") and image.endswith(":v9") for image in platform)


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_dry_run_with_kustomize_migrates_first_and_points_at_the_pushed_images(tmp_path: Path, overlay: str) -> None:
    out = deploy(tmp_path, "--no-build", "--kustomize", overlay)
    assert "docker" not in out
    phase1 = out.index("--selector tradebot.io/after-migration!=true")
    assert phase1 < out.index("wait --for=condition=complete job/tradebot-migrate") < out.rindex("apply -f")
    rendered = images_in(tmp_path / f"kustomize-{overlay}.yaml")
    ours = {image for image in rendered if "trading-bot/" in image or "/tb/" in image}
    assert ours and all(image.startswith("registry.test/tb/") and image.endswith(":v9") for image in ours)
    if overlay == "dev":
        # Secrets are created by name with their keys listed, never their values.
        keys = "KIS_APPKEY,KIS_APPSECRET,KIS_CANO,KIS_ACNT_PRDT_CD,KIS_HTS_ID"
        assert f"create secret generic tradebot-kis (keys: {keys})" in out
        assert "PSVT" not in out
