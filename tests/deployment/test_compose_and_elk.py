"""docker-compose.yml, nginx.conf and the ELK configuration agree with each other and with the services."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import DEPLOYMENT, SERVICES

ELK = DEPLOYMENT / "elk"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOYMENT / "docker-compose.yml").read_text())
    return loaded


def test_compose_runs_the_whole_platform(compose: dict[str, Any]) -> None:
    services = compose["services"]
    infrastructure = {"timescaledb", "rabbitmq", "elasticsearch", "logstash", "kibana", "kibana-setup", "nginx"}
    assert {*SERVICES, "kis-sim", "migrate", *infrastructure} <= set(services)
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["rabbitmq"]["image"].endswith("-management")


@pytest.mark.parametrize("service", [*SERVICES, "kis-sim"])
def test_compose_builds_each_image_from_its_dockerfile_and_hardens_it(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["build"]["context"] == ".."
    assert (DEPLOYMENT.parent / spec["build"]["dockerfile"]).is_file()
    assert spec["user"] == "10001:10001"
    assert spec["read_only"] is True
    assert spec["cap_drop"] == ["ALL"]
    assert any(mount.startswith("/tmp") for mount in spec["tmpfs"])


@pytest.mark.parametrize("service", SERVICES)
def test_compose_services_start_after_the_migration(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    assert spec["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert spec["environment"]["TRADEBOT_MIGRATE_ON_START"] == "false"
    assert compose["services"]["migrate"]["command"] == ["tradebot-migrate"]
    assert compose["services"]["migrate"]["depends_on"]["timescaledb"] == {"condition": "service_healthy"}


def test_compose_mounts_only_files_that_exist(compose: dict[str, Any]) -> None:
    for name, spec in compose["services"].items():
        for mount in spec.get("volumes", []):
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (DEPLOYMENT / source).exists(), (name, source)
        for env_file in spec.get("env_file", []):
            default = re.sub(r"\$\{[A-Z_]+:-([^}]+)\}", r"\1", env_file)
            assert (DEPLOYMENT / default).is_file(), (name, env_file)


def test_nginx_fronts_the_gateway_and_the_dashboard(compose: dict[str, Any]) -> None:
    conf = (DEPLOYMENT / "nginx.conf").read_text()
    upstreams = dict(re.findall(r"upstream (\w+) \{\s*server ([\w.-]+:\d+);", conf))
    assert upstreams == {"api_gateway": "api-gateway:8000", "web_interface": "web-interface:8080"}
    for target in upstreams.values():
        host, port = target.split(":")
        assert SERVICES[host] == int(port) and host in compose["services"]
    assert re.search(r"location /api/ \{[^}]*proxy_pass http://api_gateway;", conf)
    assert re.search(r"location / \{[^}]*proxy_pass http://web_interface;", conf)
    assert conf.count("{") == conf.count("}")


def test_logstash_takes_json_lines_on_the_services_port_and_indexes_per_day(compose: dict[str, Any]) -> None:
    pipeline = (ELK / "logstash" / "pipeline" / "tradebot.conf").read_text()
    port = re.search(r"tcp \{[^}]*port => (\d+)", pipeline)
    assert port and port.group(1) == compose["services"]["api-gateway"]["environment"]["LOGSTASH_PORT"] == "5959"
    assert "codec => json_lines" in pipeline
    assert 'index => "tradebot-%{+YYYY.MM.dd}"' in pipeline
    assert pipeline.count("{") == pipeline.count("}")
    template = json.loads((ELK / "elasticsearch" / "tradebot-template.json").read_text())
    assert template["index_patterns"] == ["tradebot-*"]
    assert template["template"]["mappings"]["properties"]["@timestamp"] == {"type": "date"}


def test_kibana_saved_objects_are_a_data_view_and_searches_over_it() -> None:
    lines = (ELK / "kibana" / "saved-objects.ndjson").read_text().splitlines()
    objects = {obj["id"]: obj for obj in map(json.loads, lines)}
    views = [obj for obj in objects.values() if obj["type"] == "index-pattern"]
    assert [view["attributes"]["title"] for view in views] == ["tradebot-*"]
    assert views[0]["attributes"]["timeFieldName"] == "@timestamp"
    for obj in objects.values():
        for reference in obj["references"]:
            assert objects[reference["id"]]["type"] == reference["type"]
        if obj["type"] == "search":
            json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def test_the_elk_component_and_compose_use_the_same_files() -> None:
    component = yaml.safe_load((ELK / "kustomization.yaml").read_text())
    files = {file for generator in component["configMapGenerator"] for file in generator["files"]}
    assert files == {
        "logstash/pipeline/tradebot.conf", "logstash/logstash.yml", "elasticsearch/tradebot-template.json",
        "kibana/saved-objects.ndjson", "kibana/import-saved-objects.sh",
    }
    for file in files:
        assert (ELK / file).is_file()
    assert Path(ELK / "kibana" / "import-saved-objects.sh").stat().st_mode & 0o111
