"""A loopback TCP proxy in front of an HTTP server that can lose the answer to one request.

``hold(path)`` arms it: the next request whose request line names ``path`` still reaches the
server, but the server's answer is read and never passed on, as if the network lost it after
the server acted. ``answer_held`` is set when that answer arrives, i.e. once the server has
acted — a deterministic moment to crash the caller in. Everything else is relayed untouched.

It runs on threads of its own, so the test's event loop and blocking calls do not stall it.
HTTP/1.1 without pipelining (what httpx speaks) is assumed: on one connection, a request's
answer comes before the next request.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class HoldingProxy:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (host, upstream_port)
        self.answer_held = threading.Event()
        self._hold_line: bytes | None = None
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server((host, 0))
        self.port = int(self._listener.getsockname()[1])
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self._accept, name="holding-proxy", daemon=True).start()

    def hold(self, path: str) -> None:
        """Lose the answer to the next ``POST path`` (once)."""
        with self._lock:
            self._hold_line = f"POST {path} ".encode()
        self.answer_held.clear()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> HoldingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._sockets.update((client, server))
            lost = threading.Event()  # this connection's next answer is to be lost
            threading.Thread(target=self._requests, args=(client, server, lost), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client, lost), daemon=True).start()

    def _claims(self, data: bytes) -> bool:
        """Whether ``data`` starts the request whose answer is to be lost (disarming the hold)."""
        with self._lock:
            if self._hold_line is None or not data.startswith(self._hold_line):
                return False
            self._hold_line = None
            return True

    def _requests(self, client: socket.socket, server: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                if self._claims(data):
                    lost.set()
                server.sendall(data)
        self._drop(client, server)

    def _answers(self, server: socket.socket, client: socket.socket, lost: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := server.recv(65536):
                if lost.is_set():
                    self.answer_held.set()  # the server answered, so it acted; the caller never hears
                    continue
                client.sendall(data)
        self._drop(client, server)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            _shut(sock)
            with self._lock:
                self._sockets.discard(sock)


def _shut(sock: socket.socket) -> None:
    """Close ``sock``, waking a thread blocked reading it (a bare close does not)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
