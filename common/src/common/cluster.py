"""A local cluster of processes: distributed mode on one machine, for developers and tests.

The KIS simulator and the seven services each run as their own OS process against one
PostgreSQL database and one RabbitMQ exchange, configured only by environment variables — the
same way a container or a Kubernetes pod runs them. ``scripts/run_cluster.sh`` is the command
(``python -m common.cluster``); ``tests/e2e/test_distributed.py`` drives the same class.

Every process gets a process group of its own (a service's children — training jobs, A3C
workers — are in it too) and, on Linux, dies with the process that started it. ``stop()``
sends SIGTERM to every group in reverse start order, waits, then SIGKILLs what is left.
Call ``Cluster`` methods from one thread (the one that will live longest): the parent-death
signal is tied to the thread that started a process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from common.kis.sim.settings import dev_account

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_SIM_DATA = REPO_ROOT.parent / "shared" / "data" / "krx-daily"
SIMULATOR = "kis-sim"


@dataclass(frozen=True)
class ServiceKind:
    """One service as the cluster starts it: console script, settings prefix, default port."""

    name: str
    prefix: str
    port: int
    uses_kis: bool = False


GATEWAY = ServiceKind("api-gateway", "API_GATEWAY_", 8000)
COLLECTOR = ServiceKind("data-collector", "DATA_COLLECTOR_", 8001, uses_kis=True)
PROCESSOR = ServiceKind("data-processor", "DATA_PROCESSOR_", 8002)
TRAINER = ServiceKind("model-trainer", "MODEL_TRAINER_", 8003)
INFERENCER = ServiceKind("inferencer", "INFERENCER_", 8004)
TRADER = ServiceKind("trader", "TRADER_", 8005, uses_kis=True)
WEB = ServiceKind("web-interface", "WEB_INTERFACE_", 8080)
# Start order: consumers before producers, the trader before the inferencer calls it, the
# gateway and the dashboard last. Stopping goes the other way.
KINDS = (PROCESSOR, TRAINER, TRADER, INFERENCER, COLLECTOR, GATEWAY, WEB)
# Second replicas get the default port + 10 (8010, 8014, 8015) when ports are fixed.
REPLICA_PORT_OFFSET = 10


class ClusterError(RuntimeError):
    """The cluster could not be prepared or did not become ready (the message says which part)."""


@dataclass
class ClusterConfig:
    """What the cluster runs on and how many replicas of the scalable services it starts."""

    database_url: str
    amqp_url: str
    work_dir: Path
    exchange: str = "market"
    host: str = "127.0.0.1"
    free_ports: bool = False
    sim_data_dir: Path | None = None
    sim_speed: float = 60.0
    sim_start: str | None = None
    sim_rest_per_second: float = 5.0
    inferencers: int = 1
    gateways: int = 1
    traders: int = 1
    admin_username: str = "admin"
    admin_password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    # Extra variables for every process, then for one member (by member name, e.g. "trader-2").
    env: dict[str, str] = field(default_factory=dict)
    member_env: dict[str, dict[str, str]] = field(default_factory=dict)
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    stop_timeout: float = 20.0


@dataclass
class Member:
    """One process of the cluster."""

    name: str
    kind: str
    port: int
    command: list[str]
    env: dict[str, str]
    log_path: Path
    ready_path: str = "/readyz"
    # Ready also when only these readiness checks fail (a passive trader replica: "lease").
    may_fail: frozenset[str] = frozenset()
    process: subprocess.Popen[bytes] | None = None
    _log: TextIO | None = None

    @property
    def url(self) -> str:
        return f"http://{self.env.get('_HOST', '127.0.0.1')}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the process that started it dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Cluster:
    """The simulator and the services as processes; ``with Cluster(config) as c:`` starts and stops them."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.log_dir = config.work_dir / "logs"
        self.members: dict[str, Member] = {}
        self._plan()

    # -- planning ------------------------------------------------------------------------------

    def _port(self, default: int) -> int:
        return free_port(self.config.host) if self.config.free_ports else default

    def _plan(self) -> None:
        cfg = self.config
        sim_ports = {key: self._port(default) for key, default in _SIM_PORTS.items()}
        self.sim_ports = sim_ports
        replicas = {INFERENCER.name: cfg.inferencers, GATEWAY.name: cfg.gateways, TRADER.name: cfg.traders}
        planned: list[tuple[ServiceKind, str, int]] = []
        for kind in KINDS:
            for index in range(max(1, replicas.get(kind.name, 1))):
                name = kind.name if index == 0 else f"{kind.name}-{index + 1}"
                default = kind.port + (REPLICA_PORT_OFFSET * index if index else 0)
                planned.append((kind, name, self._port(default)))
        urls = {name: f"http://{cfg.host}:{port}" for _, name, port in planned}
        self.upstreams: dict[str, list[str]] = {}
        for kind, name, _ in planned:
            if kind not in (GATEWAY, WEB):
                self.upstreams.setdefault(kind.name, []).append(urls[name])

        sim = Member(
            name=SIMULATOR,
            kind=SIMULATOR,
            port=sim_ports["paper_rest"],
            command=[str(cfg.bin_dir / "tradebot-kis-sim")],
            env=self._sim_env(),
            log_path=self.log_dir / f"{SIMULATOR}.log",
            ready_path="/admin/health",
        )
        self.members[SIMULATOR] = sim
        for kind, name, port in planned:
            env = {**self._shared_env(), **self._service_env(kind, port, urls)}
            if kind.uses_kis:
                env.update(self._kis_env())
            env.update(cfg.member_env.get(name, {}))
            self.members[name] = Member(
                name=name,
                kind=kind.name,
                port=port,
                command=[str(cfg.bin_dir / f"tradebot-{kind.name}")],
                env=env,
                log_path=self.log_dir / f"{name}.log",
                # Whichever replica takes the account lease first is the active one.
                may_fail=frozenset({"lease"}) if kind is TRADER and cfg.traders > 1 else frozenset(),
            )

    def _sim_env(self) -> dict[str, str]:
        cfg = self.config
        env = {
            "KIS_SIM_HOST": cfg.host,
            "KIS_SIM_REAL_REST_PORT": str(self.sim_ports["real_rest"]),
            "KIS_SIM_REAL_WS_PORT": str(self.sim_ports["real_ws"]),
            "KIS_SIM_PAPER_REST_PORT": str(self.sim_ports["paper_rest"]),
            "KIS_SIM_PAPER_WS_PORT": str(self.sim_ports["paper_ws"]),
            "KIS_SIM_SPEED": str(cfg.sim_speed),
            "KIS_SIM_PAPER_REST_PER_SECOND": str(cfg.sim_rest_per_second),
            "_HOST": cfg.host,
        }
        if cfg.sim_data_dir is not None:
            env["KIS_SIM_DATA_DIR"] = str(cfg.sim_data_dir)
        if cfg.sim_start:
            env["KIS_SIM_START"] = cfg.sim_start
        return {**env, **cfg.env, **cfg.member_env.get(SIMULATOR, {})}

    def _shared_env(self) -> dict[str, str]:
        cfg = self.config
        return {
            "TRADEBOT_DATABASE_URL": cfg.database_url,
            "TRADEBOT_AMQP_URL": cfg.amqp_url,
            "TRADEBOT_BUS_EXCHANGE": cfg.exchange,
            # Queues are per vhost, not per exchange: keep this cluster's apart from any other's.
            "TRADEBOT_BUS_QUEUE_PREFIX": f"{cfg.exchange}.",
            # Migrated once by the cluster before anything starts.
            "TRADEBOT_MIGRATE_ON_START": "false",
            "TRADEBOT_LOG_JSON": "true",
            **cfg.env,
        }

    def _kis_env(self) -> dict[str, str]:
        """The simulator's paper domain and its development paper account; tokens shared in the DB."""
        account = dev_account("paper")
        host = self.config.host
        return {
            "KIS_DOMAIN": "paper",
            "KIS_REAL_REST_URL": f"http://{host}:{self.sim_ports['real_rest']}",
            "KIS_REAL_WS_URL": f"ws://{host}:{self.sim_ports['real_ws']}",
            "KIS_PAPER_REST_URL": f"http://{host}:{self.sim_ports['paper_rest']}",
            "KIS_PAPER_WS_URL": f"ws://{host}:{self.sim_ports['paper_ws']}",
            "KIS_APPKEY": account.appkey,
            "KIS_APPSECRET": account.appsecret.get_secret_value(),
            "KIS_CANO": account.cano,
            "KIS_ACNT_PRDT_CD": account.acnt_prdt_cd,
            "KIS_HTS_ID": account.hts_id,
            "KIS_TOKEN_STORE": "db",
            "KIS_RATE_PER_SECOND": str(self.config.sim_rest_per_second),
            # The simulator replays the past in accelerated time: follow its clock.
            "KIS_CLOCK": "simulator",
        }

    def _service_env(self, kind: ServiceKind, port: int, urls: Mapping[str, str]) -> dict[str, str]:
        cfg = self.config
        env = {f"{kind.prefix}HOST": cfg.host, f"{kind.prefix}PORT": str(port), "_HOST": cfg.host}
        if kind is GATEWAY:
            upstreams = {name: found[0] if len(found) == 1 else found for name, found in self.upstreams.items()}
            env.update(
                {
                    "API_GATEWAY_UPSTREAMS": json.dumps(upstreams),
                    "API_GATEWAY_JWT_SECRET": cfg.jwt_secret,
                    "API_GATEWAY_BOOTSTRAP_ADMIN_USERNAME": cfg.admin_username,
                    "API_GATEWAY_BOOTSTRAP_ADMIN_PASSWORD": cfg.admin_password,
                    "API_GATEWAY_DASHBOARD_ORIGIN": urls[WEB.name],
                }
            )
        elif kind is WEB:
            env["WEB_INTERFACE_GATEWAY_URL"] = urls[GATEWAY.name]
        elif kind is TRAINER:
            env["MODEL_TRAINER_ARTIFACT_ROOT"] = str((cfg.work_dir / "models").resolve())
        elif kind is INFERENCER:
            # Every trader replica, in order: the inferencer fails over to the standby by itself.
            env["INFERENCER_TRADER_URL"] = ",".join(self.upstreams[TRADER.name])
        return env

    # -- preparing the database ----------------------------------------------------------------

    def create_database(self) -> bool:
        """Create the cluster's database if it does not exist; True when it was created."""
        return asyncio.run(_create_database(self.config.database_url))

    def migrate(self) -> None:
        """Bring the schema to head once (the services run with migrations off)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self._shared_env()}
        result = subprocess.run(  # noqa: S603 - our own console script
            [str(self.config.bin_dir / "tradebot-migrate")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise ClusterError(
                f"tradebot-migrate failed ({result.returncode}): {(result.stderr or result.stdout)[-2000:]}"
            )

    # -- processes -----------------------------------------------------------------------------

    def start(self, names: Iterable[str] | None = None, *, ready_timeout: float = 180.0) -> None:
        """Start the simulator, wait for it, then every service (or ``names``), and wait for readiness."""
        wanted = list(names) if names is not None else list(self.members)
        if SIMULATOR in wanted:
            self.start_member(SIMULATOR)
            self.wait_ready([SIMULATOR], timeout=ready_timeout)
        services = [n for n in wanted if n != SIMULATOR]
        for name in services:
            self.start_member(name)
        self.wait_ready(services, timeout=ready_timeout)
        traders = [n for n in services if self.members[n].kind == TRADER.name]
        if traders:
            self.wait_active(traders, timeout=ready_timeout)

    def wait_active(self, traders: list[str], *, timeout: float = 60.0) -> str:
        """The trader replica that holds the account lease (its ``/readyz`` says ready)."""
        deadline = time.monotonic() + timeout
        with httpx.Client() as client:
            while True:
                for name in traders:
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(self.url(name) + "/readyz", timeout=3).status_code == 200:
                            return name
                if time.monotonic() >= deadline:
                    raise ClusterError(f"no trader replica holds the account lease after {timeout:.0f} s: {traders}")
                time.sleep(0.5)

    def start_member(self, name: str) -> Member:
        member = self.members[name]
        if member.running:
            return member
        self.log_dir.mkdir(parents=True, exist_ok=True)
        (self.config.work_dir / "models").mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{k: v for k, v in member.env.items() if not k.startswith("_")}}
        log = member.log_path.open("a", encoding="utf-8")
        log.write(f"--- cluster: starting {name} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        log.flush()
        member._log = log
        member.process = subprocess.Popen(  # noqa: S603 - our own console scripts
            member.command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.config.work_dir,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        return member

    def signal_member(self, name: str, sig: signal.Signals) -> None:
        """Send ``sig`` to the member's whole process group."""
        member = self.members[name]
        if member.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(member.process.pid, sig)

    def stop_member(
        self, name: str, *, timeout: float | None = None, sig: signal.Signals = signal.SIGTERM
    ) -> int | None:
        """SIGTERM (or ``sig``) to the member's group; SIGKILL after ``timeout``. Returns the exit code."""
        return self._stop([name], timeout if timeout is not None else self.config.stop_timeout, sig)[name]

    def kill_member(self, name: str) -> int | None:
        """SIGKILL, as a crash would: no shutdown code runs."""
        return self._stop([name], 5.0, signal.SIGKILL)[name]

    def restart_member(self, name: str, *, ready_timeout: float = 120.0) -> int | None:
        code = self.stop_member(name)
        self.start_member(name)
        self.wait_ready([name], timeout=ready_timeout)
        return code

    def stop(self) -> dict[str, int | None]:
        """Stop everything: services in reverse start order, the simulator last."""
        names = [n for n in reversed(self.members) if n != SIMULATOR]
        codes = self._stop(names, self.config.stop_timeout, signal.SIGTERM)
        codes.update(self._stop([SIMULATOR], self.config.stop_timeout, signal.SIGTERM))
        return codes

    def _stop(self, names: list[str], timeout: float, sig: signal.Signals) -> dict[str, int | None]:
        members = [self.members[n] for n in names]
        for member in members:
            if member.running:
                self.signal_member(member.name, sig)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for member in members:
            process = member.process
            if process is None:
                codes[member.name] = None
                continue
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.signal_member(member.name, signal.SIGKILL)
                process.wait(timeout=10)
            # Whatever the leader left behind in its group (job processes) goes too.
            self.signal_member(member.name, signal.SIGKILL)
            codes[member.name] = process.returncode
            if member._log is not None:
                member._log.write(f"--- cluster: {member.name} exited with {process.returncode}\n")
                member._log.close()
                member._log = None
            member.process = None
        return codes

    # -- readiness -----------------------------------------------------------------------------

    def readiness(self, name: str, client: httpx.Client) -> tuple[bool, str]:
        """(ready, why not) of one member, from its ``/readyz`` (the simulator: ``/admin/health``)."""
        member = self.members[name]
        if member.process is None:
            return False, "not started"
        code = member.process.poll()
        if code is not None:
            return False, f"exited with {code}; log: {member.log_path}"
        try:
            response = client.get(member.url + member.ready_path, timeout=3)
        except httpx.HTTPError as exc:
            return False, f"no answer ({type(exc).__name__})"
        if response.status_code == 200:
            return True, "ready"
        try:
            checks: dict[str, str] = response.json().get("checks", {})
        except (ValueError, AttributeError):
            return False, f"HTTP {response.status_code}"
        failing = {k: v for k, v in checks.items() if v != "ok"}
        if failing and set(failing) <= member.may_fail:
            return True, "passive"
        return False, f"HTTP {response.status_code}: {failing or response.text[:200]}"

    def wait_ready(self, names: Iterable[str] | None = None, *, timeout: float = 180.0) -> None:
        """Poll every member's readiness until all are ready; on timeout say which are not and why."""
        pending = list(names) if names is not None else list(self.members)
        deadline = time.monotonic() + timeout
        status: dict[str, str] = {}
        with httpx.Client() as client:
            while pending:
                for name in list(pending):
                    ready, why = self.readiness(name, client)
                    status[name] = why
                    if ready:
                        pending.remove(name)
                    elif why.startswith("exited"):
                        raise ClusterError(f"{name} {why}\n{self.log_tail(name)}")
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    lines = "\n".join(f"  {n}: {status[n]} ({self.members[n].url})" for n in pending)
                    tails = "\n".join(self.log_tail(n, 15) for n in pending)
                    raise ClusterError(f"not ready after {timeout:.0f} s:\n{lines}\n{tails}")
                time.sleep(0.5)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.members[name].log_path
        try:
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return f"--- {name}: no log"
        return f"--- last lines of {path}:\n" + "\n".join(text[-lines:])

    # -- convenience ---------------------------------------------------------------------------

    def url(self, name: str) -> str:
        return self.members[name].url

    @property
    def gateway_url(self) -> str:
        return self.url(GATEWAY.name)

    def summary(self) -> str:
        sim = self.members[SIMULATOR]
        lines = [
            "trading-bot is running (local cluster of processes)",
            f"  dashboard:     {self.url(WEB.name)}/",
            f"  API gateway:   {self.gateway_url}/",
            f"  admin login:   {self.config.admin_username} / {self.config.admin_password}",
            f"  KIS simulator: {sim.url} (paper), http://{self.config.host}:{self.sim_ports['real_rest']} (real)",
        ]
        for name, member in self.members.items():
            if name not in (SIMULATOR, GATEWAY.name, WEB.name):
                lines.append(f"  {name + ':':<16}{member.url}")
        lines.append(f"  logs:          {self.log_dir}/<name>.log")
        lines.append("  stop with Ctrl-C")
        return "\n".join(lines)

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_SIM_PORTS = {"real_rest": 9443, "real_ws": 21000, "paper_rest": 29443, "paper_ws": 31000}


def _split_database_url(url: str) -> tuple[str, str]:
    """(URL of the server's maintenance database, the database name)."""
    base, _, name = url.rpartition("/")
    name = name.split("?", 1)[0]
    if not base or not name or not url.startswith("postgresql"):
        raise ClusterError(f"not a PostgreSQL URL with a database name: {url.split('@')[-1]}")
    return f"{base}/postgres", name


async def _create_database(url: str) -> bool:
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.ext.asyncio import create_async_engine

    maintenance, name = _split_database_url(url)
    if not name.replace("_", "").isalnum():
        raise ClusterError(f"database name {name!r}: letters, digits and underscores only")
    engine = create_async_engine(maintenance, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = await conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
            if exists:
                return False
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
            return True
    except (OSError, SQLAlchemyError) as exc:
        raise ClusterError(f"cannot create database {name}: {type(exc).__name__}: {str(exc)[:300]}") from exc
    finally:
        await engine.dispose()


# -- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="run_cluster.sh",
        description="Run the KIS simulator and the seven services as separate processes (distributed mode).",
    )
    parser.add_argument(
        "--database-url",
        default=env("TRADEBOT_CLUSTER_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/tradebot_cluster"),
        help="PostgreSQL database of the cluster (default %(default)s)",
    )
    parser.add_argument("--no-create-database", action="store_true", help="fail instead of creating the database")
    parser.add_argument("--amqp-url", default=env("TRADEBOT_CLUSTER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    parser.add_argument("--exchange", default=env("TRADEBOT_CLUSTER_EXCHANGE", "tradebot-cluster"))
    parser.add_argument("--work-dir", type=Path, default=Path("var/cluster"), help="logs, model artifacts")
    parser.add_argument("--free-ports", action="store_true", help="pick free ports instead of 8000-8005/8080")
    parser.add_argument("--inferencers", type=int, choices=(1, 2), default=1)
    parser.add_argument("--gateways", type=int, choices=(1, 2), default=1)
    parser.add_argument("--traders", type=int, choices=(1, 2), default=1, help="2: a passive standby replica")
    parser.add_argument(
        "--sim-data-dir",
        type=Path,
        default=Path(env("KIS_SIM_DATA_DIR", str(DEFAULT_SIM_DATA))),
        help="bars the simulator replays (default %(default)s; synthetic market when missing)",
    )
    parser.add_argument("--sim-speed", type=float, default=float(env("KIS_SIM_SPEED", "60")))
    parser.add_argument("--sim-start", default=env("KIS_SIM_START"))
    parser.add_argument("--admin-password", default=env("TRADEBOT_CLUSTER_ADMIN_PASSWORD"))
    parser.add_argument("--ready-timeout", type=float, default=180.0)
    return parser


def config_from_args(args: argparse.Namespace) -> ClusterConfig:
    config = ClusterConfig(
        database_url=args.database_url,
        amqp_url=args.amqp_url,
        work_dir=args.work_dir.resolve(),
        exchange=args.exchange,
        free_ports=args.free_ports,
        sim_data_dir=args.sim_data_dir.resolve() if args.sim_data_dir and args.sim_data_dir.is_dir() else None,
        sim_speed=args.sim_speed,
        sim_start=args.sim_start,
        inferencers=args.inferencers,
        gateways=args.gateways,
        traders=args.traders,
    )
    if args.admin_password:
        config.admin_password = args.admin_password
    return config


@contextlib.contextmanager
def _stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: handler(signum))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = config_from_args(args)
    cluster = Cluster(config)
    out = sys.stderr
    stopping: list[int] = []

    def request_stop(signum: int) -> None:
        stopping.append(signum)
        raise KeyboardInterrupt

    code = 0
    with _stop_signals(request_stop):
        try:
            if not args.no_create_database and cluster.create_database():
                out.write(f"cluster: created database {config.database_url.rsplit('/', 1)[-1]}\n")
            out.write("cluster: migrating\n")
            cluster.migrate()
            out.write(f"cluster: starting {', '.join(cluster.members)}\n")
            cluster.start(ready_timeout=args.ready_timeout)
            out.write("\n" + cluster.summary() + "\n\n")
            out.flush()
            _watch(cluster, out)
        except KeyboardInterrupt:
            out.write("\ncluster: stopping\n")
        except ClusterError as exc:
            out.write(f"cluster: {exc}\n")
            code = 1
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            codes = cluster.stop()
            out.write("cluster: stopped (" + ", ".join(f"{n} {c}" for n, c in codes.items() if c is not None) + ")\n")
    return code


def _watch(cluster: Cluster, out: TextIO) -> None:
    """Until interrupted: say once about any member that exits on its own."""
    reported: set[str] = set()
    while True:
        for name, member in cluster.members.items():
            process = member.process
            if process is not None and process.poll() is not None and name not in reported:
                reported.add(name)
                out.write(f"cluster: {name} exited with {process.returncode}\n{cluster.log_tail(name)}\n")
                out.flush()
        time.sleep(1.0)


if __name__ == "__main__":
    raise SystemExit(main())
