"""Private PostgreSQL and RabbitMQ servers that the reliability tests stop and start at will.

The machine's shared servers (127.0.0.1:5432 and :5672) are never touched: each private server
lives in a temporary directory of its own, listens on free loopback ports (RabbitMQ even gets
its own epmd) and is torn down at the end of the run, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

POSTGRES_BIN_ROOT = Path("/usr/lib/postgresql")
RABBITMQ_BIN_DIR = Path("/usr/lib/rabbitmq/bin")
# PostgreSQL refuses to run as root: as root, the cluster belongs to this user.
POSTGRES_OS_USER = "postgres"
AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"


class ServerError(RuntimeError):
    """A private server could not be prepared, started or stopped (the message says why)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Call ``check`` until it is true; raise ``ServerError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= deadline:
            raise ServerError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def _run(command: list[str], *, env: dict[str, str] | None = None, timeout: float = 60.0) -> None:
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ServerError(f"{Path(command[0]).name} {' '.join(command[1:3])}… took over {timeout:.0f} s") from exc
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()[-2000:]
        raise ServerError(
            f"{Path(command[0]).name} {' '.join(command[1:3])}… exited with {result.returncode}: {output}"
        )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no {path.name})"


# -- PostgreSQL --------------------------------------------------------------------------------


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL server's ``bin`` folder (with initdb and pg_ctl), if any."""
    found = [d / "bin" for d in POSTGRES_BIN_ROOT.glob("*") if (d / "bin" / "initdb").is_file()]
    if found:
        return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_problem() -> str | None:
    """Why a private PostgreSQL cannot run here, or None."""
    if postgres_bin_dir() is None:
        return f"PostgreSQL server binaries (initdb, pg_ctl) not found under {POSTGRES_BIN_ROOT}/*/bin or on PATH"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root: runuser is needed to run PostgreSQL as its own user"
        try:
            pwd.getpwnam(POSTGRES_OS_USER)
        except KeyError:
            return f"running as root: PostgreSQL needs the OS user {POSTGRES_OS_USER!r}"
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of our own: ``initdb`` into a temporary folder, ``pg_ctl`` to start and stop."""

    def __init__(self) -> None:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise ServerError("no PostgreSQL server binaries")
        self.bin_dir = bin_dir
        self.port = free_port()
        self.owner = POSTGRES_OS_USER if os.geteuid() == 0 else None
        # Under /tmp directly: pytest's own temporary folders are private to root.
        self.root = Path(tempfile.mkdtemp(prefix="tradebot-reliability-pg-"))
        if self.owner is not None:
            shutil.chown(self.root, self.owner, self.owner)
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    @property
    def server_url(self) -> str:
        """URL of the maintenance database."""
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", self.owner, "--", *command] if self.owner else command

    def init(self) -> None:
        args = ["-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"]
        _run(self._command("initdb", *args))

    def start(self, timeout: float = 60.0) -> None:
        # fsync off: these clusters are stopped cleanly or thrown away, never recovered from a power cut.
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        command = self._command(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", str(int(timeout)), "start"
        )
        try:
            _run(command, timeout=timeout + 10)
        except ServerError as exc:
            raise ServerError(f"{exc}\n--- {self.log}:\n{_tail(self.log)}") from exc

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and disconnect every client)."""
        _run(self._command("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop"), timeout=70)

    @property
    def running(self) -> bool:
        status = subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "status"), capture_output=True, check=False
        )
        return status.returncode == 0

    def destroy(self) -> None:
        """Stop it if it runs and remove every file."""
        try:
            if self.data.exists() and self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# -- RabbitMQ ----------------------------------------------------------------------------------


def _rabbitmq_tool(name: str) -> Path | None:
    # The scripts themselves: the /usr/sbin wrappers switch to the rabbitmq user and its cookie.
    direct = RABBITMQ_BIN_DIR / name
    if direct.exists():
        return direct
    found = shutil.which(name)
    return Path(found) if found else None


def rabbitmq_problem() -> str | None:
    """Why a private RabbitMQ node cannot run here, or None."""
    missing = [n for n in ("rabbitmq-server", "rabbitmqctl") if _rabbitmq_tool(n) is None]
    if missing:
        return f"RabbitMQ not installed ({', '.join(missing)} not found in {RABBITMQ_BIN_DIR} or on PATH)"
    if shutil.which("erl") is None:
        return "Erlang (erl) not found on PATH: RabbitMQ cannot start"
    return None


def amqp_answers(port: int) -> bool:
    """Whether a broker on ``port`` answers the AMQP 0-9-1 protocol header with its first frame."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(2)
            sock.sendall(AMQP_PROTOCOL_HEADER)
            frame = sock.recv(7)
    except OSError:
        return False
    return len(frame) == 7 and frame[0] == 1  # a method frame: connection.start


class PrivateRabbitMQ:
    """A RabbitMQ node of our own: its name, ports, epmd, cookie, configuration and data in a temporary folder.

    The node runs in the foreground as a child process (in its own process group); its durable
    queues and persistent messages survive ``stop()``/``start()`` because the data folder stays.
    """

    def __init__(self) -> None:
        server, ctl = _rabbitmq_tool("rabbitmq-server"), _rabbitmq_tool("rabbitmqctl")
        if server is None or ctl is None:
            raise ServerError("RabbitMQ is not installed")
        self.server, self.ctl = server, ctl
        self.root = Path(tempfile.mkdtemp(prefix="tradebot-reliability-rabbitmq-"))
        self.node = f"tradebot-reliability-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port, self.epmd_port = free_port(), free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.output = self.root / "server.out"
        (self.root / "enabled_plugins").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")  # not the machine's /etc/rabbitmq one
        (self.root / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\nloopback_users.guest = true\n"
        )
        cookie = self.root / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def _env(self) -> dict[str, str]:
        root = str(self.root)
        return {
            **os.environ,
            "HOME": root,  # the Erlang cookie of this node and of rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": f"{root}/mnesia",
            "RABBITMQ_LOG_BASE": f"{root}/log",
            "RABBITMQ_PID_FILE": f"{root}/node.pid",
            "RABBITMQ_ENABLED_PLUGINS_FILE": f"{root}/enabled_plugins",
            "RABBITMQ_CONFIG_FILE": f"{root}/rabbitmq.conf",
            "RABBITMQ_CONF_ENV_FILE": f"{root}/rabbitmq-env.conf",
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        """Start the node and wait until it answers AMQP on its port."""
        if self.running:
            return
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.server)],
                env=self._env(),
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process

        def up() -> bool:
            if process.poll() is not None:
                raise ServerError(f"RabbitMQ exited with {process.returncode}:\n{_tail(self.output)}")
            return amqp_answers(self.port)

        wait_until(up, timeout, f"RabbitMQ node {self.node} answering on {self.port}", interval=0.2)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node the operator's way (``rabbitmqctl stop``); signals if that fails."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                _run([str(self.ctl), "-n", self.node, "stop"], env=self._env(), timeout=timeout)
            except ServerError:
                self._signal(signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                process.wait(timeout=10)
        self._signal(signal.SIGKILL)  # anything left in its group (erl_child_setup…)
        self.process = None

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def destroy(self) -> None:
        """Stop the node, its private epmd, and remove every file."""
        try:
            self.stop(timeout=30)
        finally:
            epmd = shutil.which("epmd")
            if epmd is not None:
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    subprocess.run(
                        [epmd, "-port", str(self.epmd_port), "-kill"], capture_output=True, timeout=10, check=False
                    )
            shutil.rmtree(self.root, ignore_errors=True)
