"""A distributed rb on this machine, as real processes: a 3-node NATS JetStream cluster (routes on
loopback, each node its own store), the services against it with RB_STREAM_REPLICAS=3 and a fresh
database on the shared PostgreSQL, and a loopback HTTP server that counts side effects by
Idempotency-Key. Used by tests/chaos (and bench/chaos.sh)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

PG_ADMIN = os.environ.get("RB_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
ADMIN_KEY = "rbk_chaos-tests-admin-key-0123456789abcdefghijklmnop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_server_binary() -> str:
    candidate = Path(sys.executable).parent / "nats-server"
    return str(candidate) if candidate.exists() else (shutil.which("nats-server") or "nats-server")


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():  # type: ignore[operator]
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class NatsNode:
    name: str
    port: int
    route_port: int
    monitor_port: int
    store: Path
    routes: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        routes = ",".join(f"nats://127.0.0.1:{p}" for p in self.routes)
        log = (self.store.parent / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [
                nats_server_binary(), "-n", self.name, "-a", "127.0.0.1", "-p", str(self.port),
                "-m", str(self.monitor_port), "-js", "-sd", str(self.store),
                "--cluster_name", "rbchaos", "--cluster", f"nats://127.0.0.1:{self.route_port}",
                "--routes", routes,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def jsz(self) -> dict[str, object]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/jsz", timeout=2) as r:
            return dict(json.loads(r.read()))

    def meta_leader(self) -> str | None:
        meta = self.jsz().get("meta_cluster") or {}
        return meta.get("leader") if isinstance(meta, dict) else None


class NatsCluster:
    def __init__(self, root: Path, size: int = 3) -> None:
        route_ports = [free_port() for _ in range(size)]
        self.nodes = [
            NatsNode(
                name=f"n{i}", port=free_port(), route_port=route_ports[i], monitor_port=free_port(),
                store=root / f"n{i}", routes=[p for j, p in enumerate(route_ports) if j != i],
            )
            for i in range(size)
        ]
        for node in self.nodes:
            node.store.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        self.wait_meta_leader(timeout)

    def wait_meta_leader(self, timeout: float = 30.0) -> str:
        """Until every running node names the same JetStream meta leader."""
        leader: list[str] = []

        def agreed() -> bool:
            seen = {n.meta_leader() for n in self.nodes if n.process and n.process.poll() is None}
            if len(seen) == 1 and None not in seen:
                leader[:] = [str(seen.pop())]
                return True
            return False

        wait_until(agreed, timeout, "a JetStream meta leader")
        return leader[0]

    def node(self, name: str) -> NatsNode:
        return next(n for n in self.nodes if n.name == name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class CounterServer:
    """Counts POSTs by Idempotency-Key: the side effects of the chaos runbook's http step."""

    def __init__(self, delay: float = 0.0) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                with counter.lock:
                    counter.counts[self.headers.get("Idempotency-Key") or ""] += 1
                time.sleep(delay)  # a side effect that takes a while: kills catch steps in flight
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/effect"

    def snapshot(self) -> Counter[str]:
        with self.lock:
            return Counter(self.counts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def postgres_bin() -> Path:
    """Debian's PostgreSQL server binaries (initdb, pg_ctl): RB_CHAOS_PG_BIN or the newest
    /usr/lib/postgresql/<n>/bin."""
    if os.environ.get("RB_CHAOS_PG_BIN"):
        return Path(os.environ["RB_CHAOS_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/<n>/bin/pg_ctl (apt-get install postgresql)")
    return found[-1].parent


class PostgresServer:
    """A PostgreSQL cluster of the chaos test's own (initdb into a temporary directory, pg_ctl on
    a free loopback port), so it can be killed and restarted: the machine's PostgreSQL is shared
    and never restarted. initdb refuses root, so as root it runs as the `postgres` user."""

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="rb-chaos-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user: str | None = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.root, self.user)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/rb"
        self.restarts = 0

    def _run(self, *args: str, timeout: float = 120.0) -> None:
        command = [str(self.bin / args[0]), *args[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, timeout=timeout, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-o", options, "-w", "-t", "60", "start")
        if self.restarts == 0:
            with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
                conn.execute('CREATE DATABASE "rb"')

    def crash(self) -> None:
        """Stop at once, as a crash would (`immediate`: no checkpoint; recovery at the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart(self, down: float = 0.0) -> None:
        self.crash()
        time.sleep(down)
        self.restarts += 1
        self.start()

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


class Database:
    """A fresh database on the shared PostgreSQL (never restarted here), dropped at the end."""

    def __init__(self) -> None:
        self.name = f"rb_chaos_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.url = PG_ADMIN.rsplit("/", 1)[0] + f"/{self.name}"

    def drop(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class Stack:
    """`rb serve SERVICE` processes against the cluster, each seeded with one node's URL (a client
    learns the others from it and fails over by itself)."""

    def __init__(self, home: Path, cluster: NatsCluster, database_url: str, namespace: str) -> None:
        self.home = home
        self.cluster = cluster
        self.api_port = free_port()
        self.env = {
            **os.environ,
            "RB_HOME": str(home),
            "RB_NAMESPACE": namespace,
            "RB_STREAM_REPLICAS": "3",
            "RB_DATABASE_URL": database_url,
            "RB_TASK_ACK_WAIT": "3",
            "RB_LOG_LEVEL": "INFO",
            "RB_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "RB_API_KEY": ADMIN_KEY,
            "RB_API_ADDR": f"127.0.0.1:{self.api_port}",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.services: dict[str, tuple[str, dict[str, str]]] = {}  # label -> (service, its env)
        self.starts: Counter[str] = Counter()

    def restart(self, label: str, node: int) -> subprocess.Popen[bytes]:
        service, env = self.services[label]
        return self.start(label, service, node, **env)

    def exited(self) -> dict[str, int]:
        """Services that ended by themselves (not killed here): label -> exit code."""
        return {
            label: code
            for label, p in self.processes.items()
            if (code := p.poll()) is not None and code != -signal.SIGKILL
        }

    def start(self, label: str, service: str, node: int, **env: str) -> subprocess.Popen[bytes]:
        self.starts[label] += 1
        self.services[label] = (service, env)
        log = (self.home / f"{label}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "rb_cli", "serve", service],
            env={**self.env, **env, "RB_NATS_URL": self.cluster.nodes[node % len(self.cluster.nodes)].url},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.processes[label] = process
        return process

    def kill(self, label: str) -> None:
        process = self.processes[label]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def api_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            url = f"http://127.0.0.1:{self.api_port}/health/ready"
            with urllib.request.urlopen(url, timeout=2) as r:
                return bool(r.status == 200)

        wait_until(ready, timeout, "the API's readiness")

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.home.glob("*.log"))
        )

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
