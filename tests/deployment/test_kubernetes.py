"""The Kubernetes manifests and the Helm chart: rendered, schema-validated, and hardened alike."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CHART, KUBERNETES_VERSION, RENDERS, SERVICES, Manifest, run, tool

Render = Callable[[str], list[Manifest]]

ALL_RENDERS = sorted(RENDERS)
SECRET_NAME = re.compile(
    r"PASSWORD|PASS$|SECRET|APPKEY|TOKEN(?!_STORE)|CANO|ACNT|HTS_ID|DATABASE_URL|AMQP_URL|WEBHOOK|COOKIE"
)
KIS_SECRET_KEYS = {"KIS_APPKEY", "KIS_APPSECRET", "KIS_CANO", "KIS_ACNT_PRDT_CD", "KIS_HTS_ID"}


def pod_specs(docs: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any]]]:
    """Every workload with its pod spec (Deployment, StatefulSet, Job, CronJob)."""
    for doc in docs:
        spec = doc.get("spec", {})
        if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield doc, spec["template"]["spec"]
        elif doc["kind"] == "CronJob":
            yield doc, spec["jobTemplate"]["spec"]["template"]["spec"]


def is_platform_image(image: str) -> bool:
    return "trading-bot/" in image


def platform_containers(docs: list[Manifest]) -> Iterator[tuple[Manifest, dict[str, Any], dict[str, Any]]]:
    for doc, pod in pod_specs(docs):
        for container in pod["containers"]:
            if is_platform_image(container["image"]):
                yield doc, pod, container


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_render_is_valid_against_the_current_kubernetes_schema(
    name: str, render_text: Callable[[str], str], kubernetes_validate: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(render_text(name))
    run(kubernetes_validate, "--strict", "--kubernetes-version", KUBERNETES_VERSION, "--quiet", manifest)


def test_strict_validation_rejects_an_unknown_field(kubernetes_validate: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 80}], selectr: {app: x}}\n"
    )
    done = subprocess.run(
        [kubernetes_validate, "--strict", "-k", KUBERNETES_VERSION, "--quiet", manifest],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode != 0, done.stdout


@pytest.mark.parametrize("helm", ["helm", "helm4"])
@pytest.mark.parametrize("values", [None, "ci/prod-values.yaml", "ci/simulator-values.yaml"])
def test_the_chart_passes_strict_lint(helm: str, values: str | None) -> None:
    args: list[str | Path] = [tool(helm), "lint", "--strict", CHART]
    if values:
        args += ["-f", CHART / values]
    run(*args)


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_service_has_a_deployment_and_a_service_on_its_port(name: str, render: Render) -> None:
    docs = render(name)
    deployments, services = by_kind(docs, "Deployment"), by_kind(docs, "Service")
    for service, port in SERVICES.items():
        container = deployments[service]["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert services[service]["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_platform_containers_are_hardened(name: str, render: Render) -> None:
    checked = 0
    for doc, pod, container in platform_containers(render(name)):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"]["runAsUser"] == 10001, where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert pod["automountServiceAccountToken"] is False, where
        security = container["securityContext"]
        assert security["allowPrivilegeEscalation"] is False, where
        assert security["readOnlyRootFilesystem"] is True, where
        assert security["capabilities"]["drop"] == ["ALL"], where
        assert security.get("privileged", False) is False, where
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) >= {"cpu", "memory"}, where
        # A read-only root needs somewhere to write temporary files.
        assert "/tmp" in {mount["mountPath"] for mount in container["volumeMounts"]}, where
        checked += 1
    assert checked >= len(SERVICES) + 1  # the services and at least the migration


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_services_are_probed_on_healthz_and_readyz(name: str, render: Render) -> None:
    deployments = by_kind(render(name), "Deployment")
    for service in SERVICES:
        container = deployments[service]["spec"]["template"]["spec"]["containers"][0]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, service
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, service
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", service


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_every_pod_meets_the_restricted_pod_security_standard(name: str, render: Render) -> None:
    for doc, pod in pod_specs(render(name)):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), where
        assert not any("hostPath" in volume for volume in pod.get("volumes", [])), where
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container["securityContext"]
            non_root = security.get("runAsNonRoot", pod["securityContext"].get("runAsNonRoot"))
            assert non_root is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["capabilities"]["drop"] == ["ALL"], where
            assert "limits" in container["resources"], where


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_secrets_are_only_referenced_never_written(name: str, render: Render) -> None:
    docs = render(name)
    assert [doc["metadata"]["name"] for doc in docs if doc["kind"] == "Secret"] == []
    for doc in docs:
        if doc["kind"] == "ConfigMap":
            assert not {key for key in doc.get("data", {}) if SECRET_NAME.search(key)}, doc["metadata"]["name"]
    for doc, pod in pod_specs(docs):
        for container in pod["containers"]:
            for variable in container.get("env", []):
                if SECRET_NAME.search(variable["name"]):
                    assert "secretKeyRef" in variable.get("valueFrom", {}), (doc["metadata"]["name"], variable["name"])
                    assert "value" not in variable


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_kis_credentials_reach_only_the_collector_and_the_trader_by_secret_reference(name: str, render: Render) -> None:
    with_kis = set()
    for doc, _pod, container in platform_containers(render(name)):
        refs = {source["secretRef"]["name"] for source in container.get("envFrom", []) if "secretRef" in source}
        if any("kis" in ref for ref in refs):
            with_kis.add(doc["metadata"]["name"])
        assert not KIS_SECRET_KEYS & {variable["name"] for variable in container.get("env", [])}
    assert with_kis == {"data-collector", "trader"}


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_the_trader_is_a_single_writer(name: str, render: Render) -> None:
    docs = render(name)
    trader = by_kind(docs, "Deployment")["trader"]
    assert trader["spec"]["replicas"] == 1
    assert trader["spec"]["strategy"] == {"type": "Recreate"}
    autoscaled = {doc["spec"]["scaleTargetRef"]["name"] for doc in docs if doc["kind"] == "HorizontalPodAutoscaler"}
    assert "trader" not in autoscaled


@pytest.mark.parametrize("name", ["kustomize-base", "kustomize-dev", "kustomize-prod", "helm-default", "helm-prod"])
def test_the_gateway_and_the_inferencer_autoscale_and_leave_replicas_to_it(name: str, render: Render) -> None:
    docs = render(name)
    autoscalers = {
        doc["spec"]["scaleTargetRef"]["name"]: doc for doc in docs if doc["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(autoscalers) == {"api-gateway", "inferencer"}
    deployments = by_kind(docs, "Deployment")
    for target, hpa in autoscalers.items():
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployments[target]["spec"], target


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_the_schema_is_migrated_by_a_job_and_not_by_the_services(name: str, render: Render) -> None:
    docs = render(name)
    migrations = [
        doc for doc, pod in pod_specs(docs)
        if doc["kind"] == "Job" and pod["containers"][0].get("command") == ["tradebot-migrate"]
    ]
    assert len(migrations) == 1
    config = next(doc for doc in docs if doc["kind"] == "ConfigMap" and "TRADEBOT_MIGRATE_ON_START" in doc["data"])
    assert config["data"]["TRADEBOT_MIGRATE_ON_START"] == "false"
    job = migrations[0]
    if name.startswith("helm"):
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    else:
        # scripts/deploy.sh applies everything but these first, then waits for the Job.
        after = {
            doc["metadata"]["name"]
            for doc in docs
            if doc["metadata"].get("labels", {}).get("tradebot.io/after-migration") == "true"
        }
        assert set(SERVICES) <= after
        assert job["metadata"]["name"] not in after


@pytest.mark.parametrize("name", ["kustomize-dev", "kustomize-prod", "helm-default", "helm-prod"])
def test_training_has_a_cronjob_that_asks_the_trainer(name: str, render: Render) -> None:
    (cronjob,) = [doc for doc in render(name) if doc["kind"] == "CronJob"]
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert "/model-trainer:" in container["image"]
    assert {"name": "TRAINER_URL", "value": "http://model-trainer:8003"} in container["env"]


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_services_and_ingress_route_to_something_that_exists(name: str, render: Render) -> None:
    docs = render(name)
    pods = [(doc, pod) for doc, pod in pod_specs(docs) if doc["kind"] in ("Deployment", "StatefulSet")]
    services = by_kind(docs, "Service")
    for service in services.values():
        selector = service["spec"]["selector"]
        matches = [
            (doc, pod) for doc, pod in pods
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matches, f"Service {service['metadata']['name']} selects no pod"
        port_names = {port.get("name") for _, pod in matches for c in pod["containers"] for port in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names, (service["metadata"]["name"], port)
    for ingress in by_kind(docs, "Ingress").values():
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                target = services[backend["name"]]
                assert backend["port"]["name"] in {port["name"] for port in target["spec"]["ports"]}


@pytest.mark.parametrize("name", ["kustomize-dev", "kustomize-prod", "helm-default", "helm-prod"])
def test_images_are_pinned(name: str, render: Render) -> None:
    for doc, pod in pod_specs(render(name)):
        for container in pod["containers"]:
            image = container["image"]
            assert ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), (doc["metadata"]["name"], image)


def test_the_dev_overlay_runs_everything_inside_the_cluster(render: Render) -> None:
    docs = render("kustomize-dev")
    workloads = {doc["metadata"]["name"] for doc, _ in pod_specs(docs)}
    assert {"timescaledb", "rabbitmq", "elasticsearch", "logstash", "kibana", "kis-sim"} <= workloads
    images = {c["image"] for _, pod in pod_specs(docs) for c in pod["containers"]}
    assert any(image.startswith("timescale/timescaledb:") for image in images)
    assert any(image.startswith("rabbitmq:") and image.endswith("-management") for image in images)
    config = next(
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].startswith("tradebot-config")
    )
    assert config["data"]["KIS_PAPER_REST_URL"] == "http://kis-sim:29443"


def test_the_prod_overlay_uses_external_databases_and_tls(render: Render) -> None:
    docs = render("kustomize-prod")
    workloads = {doc["metadata"]["name"] for doc, _ in pod_specs(docs)}
    assert not {"timescaledb", "rabbitmq", "kis-sim"} & workloads
    assert {"elasticsearch", "logstash", "kibana"} <= workloads
    (ingress,) = by_kind(docs, "Ingress").values()
    assert ingress["spec"]["tls"][0]["secretName"] == "tradebot-tls"
    namespaces = by_kind(docs, "Namespace")
    assert namespaces["tradebot"]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_chart_refuses_to_autoscale_the_trader() -> None:
    done = subprocess.run(
        [tool("helm"), "template", "x", CHART, "--kube-version", KUBERNETES_VERSION,
         "--set", "services.trader.autoscaling.enabled=true"],
        capture_output=True, text=True, check=False,
    )
    assert done.returncode != 0
    assert "single active writer" in done.stderr


def test_the_chart_takes_existing_secret_names() -> None:
    rendered = run(
        tool("helm"), "template", "x", CHART, "--kube-version", KUBERNETES_VERSION,
        "--set", "secrets.kis.name=my-kis", "--set", "secrets.database.name=my-db",
    )
    assert "name: my-kis" in rendered and "name: my-db" in rendered
    assert "tradebot-kis" not in rendered


@pytest.mark.parametrize("name", ALL_RENDERS)
def test_the_gateway_reads_its_jwt_secret_from_a_secret(name: str, render: Render) -> None:
    gateway = by_kind(render(name), "Deployment")["api-gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert {"secretRef": {"name": "tradebot-api-gateway"}} in gateway["envFrom"]
