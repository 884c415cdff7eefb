"""Chaos on a distributed rb (issue 19): a 3-node NATS cluster, 2 executors (coordinators only),
2 workers, 2 schedulers, 2 notifiers, the recorder and the API against a PostgreSQL of the test's
own. A steady stream of executions of a runbook whose http step counts its side effects (by
Idempotency-Key) on a loopback server and that notifies a loopback Slack and an SMTP server on
success; beside it, through the front doors (traffic.py), the example runbooks executed through
the API under an Idempotency-Key (one of them a sub-runbook), alerts on the Alertmanager webhook
and a cron schedule every 5 s on both schedulers; all while services are killed (-9) and restarted, the NATS node leading the events stream
is killed and restarted, and that PostgreSQL is crashed and restarted. At the end: every
accepted trigger (request, alert, cron fire, child) has exactly one execution, every fire time
one or a recorded miss, every execution is terminal and succeeded, no side
effect happened more often than the deliveries recorded for its key, every event chain
verifies, the recorder's tables equal a fold of the streams, every execution's Slack message
was posted exactly once, and its email sent at least once, repeats only under the same
Message-ID (as documented: an email whose answer was lost is sent again).

Short by default (CI); `RB_CHAOS_MINUTES=N` (bench/chaos.sh --minutes N) keeps the load and the
kills going for N minutes with a seeded random schedule (RB_CHAOS_SEED)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from cluster import ADMIN_KEY, CounterServer, NatsCluster, PostgresServer, Stack

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration" / "notifier"))
from notifier_peers import Mailbox, SlackApi, SmtpServer
from traffic import ALERT_TOKEN, ApiTraffic, cron_executions

from rb_common.audit import verify_chain
from rb_common.bus import Bus, connect, read_execution
from rb_common.events import TERMINAL_EVENTS, Event, EventType
from rb_common.loader import load_runbook_text
from rb_common.messages import TriggerRequest
from rb_common.registry_events import announce, ensure_bucket
from rb_common.slots_bucket import ensure_slots_bucket
from rb_engine.child_runs import child_execution_id
from rb_engine.coordinator import fold
from rb_engine.runner import RunRequest
from rb_notifier.claims import Claims

pytestmark = [pytest.mark.integration]

MINUTES = float(os.environ.get("RB_CHAOS_MINUTES", "0"))
SEED = int(os.environ.get("RB_CHAOS_SEED", "19"))
LOAD_SECONDS = MINUTES * 60 if MINUTES else 60.0
TRIGGER_INTERVAL = 0.5
API_INTERVAL = 2.0  # an example through the API, or an alert
SLACK_TOKEN = "xoxb-chaos-0f1e"


def runbook_yaml(runbook_id: str, url: str) -> str:
    return (
        f"id: {runbook_id}\nname: Chaos effect\n"
        "notify:\n"
        "  - {on: [succeeded], slack: {channel: '#ops'}, email: {to: [ops@example.com]}}\n"
        "steps:\n"
        f"  - {{id: effect, type: http, timeout: 20s, retry: {{max_attempts: 5}},"
        f" inputs: {{url: {url!r}, method: POST, body: {{n: 1}}}}}}\n"
        "  - {id: shape, type: transform, depends_on: [effect], inputs: {ok: true}}\n"
    )


@pytest.fixture
def distributed(
    tmp_path: Path,
) -> Iterator[tuple[NatsCluster, Stack, CounterServer, PostgresServer, SlackApi, SmtpServer]]:
    cluster = NatsCluster(tmp_path / "nats")
    postgres = PostgresServer()
    counter = CounterServer(delay=1.0)
    slack = SlackApi()
    smtp = SmtpServer(Mailbox())
    smtp.start()
    home = tmp_path / "home"
    home.mkdir()
    try:
        postgres.start()
        stack = Stack(home, cluster, postgres.url, f"c{uuid.uuid4().hex[:8]}")
        stack.env.update(
            RB_SLACK_TOKEN=SLACK_TOKEN,
            RB_SLACK_BASE_URL=slack.base_url,
            RB_SMTP_URL=smtp.url,
            RB_NOTIFIER_DELIVER="all",
            RB_NOTIFIER_ACK_WAIT="3",
            RB_NOTIFY_RETRY_INITIAL="0.3",
            RB_ALERTMANAGER_TOKEN=ALERT_TOKEN,
        )
        try:
            cluster.start()
            yield cluster, stack, counter, postgres, slack, smtp
        finally:
            stack.stop()
    finally:
        cluster.stop()
        counter.close()
        slack.close()
        smtp.stop()
        postgres.stop()


async def publish(bus: Bus, runbook_id: str, data: dict[str, object], execution_id: str) -> bool:
    """Accepted = JetStream acknowledged it (retried under the same Nats-Msg-Id for 15 s)."""
    message = TriggerRequest(execution_id=execution_id, actor="chaos", data=data)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            await bus.js.publish(
                bus.names.trigger_subject(runbook_id),
                message.encode(),
                headers={"Nats-Msg-Id": execution_id},
                stream=bus.names.triggers_stream,
                timeout=3,
            )
            return True
        except Exception:
            await asyncio.sleep(0.3)
    return False


async def stream_leader(bus: Bus, timeout: float = 60.0) -> str:
    """The node leading the events stream, once there is one (asked again during an election)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await bus.js.stream_info(bus.names.events_stream)
            if info.cluster and info.cluster.leader:
                return info.cluster.leader
        except Exception:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("the events stream has no leader")
        await asyncio.sleep(0.5)


async def events_of(bus: Bus, execution_id: str) -> list[Event]:
    try:
        return [event for event, _ in await read_execution(bus, execution_id)]
    except Exception:
        return []


async def settle_until(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():  # type: ignore[operator]
        await asyncio.sleep(0.5)


def final(events: list[Event]) -> Event:
    """The execution's terminal event (notification records may follow it)."""
    return next(e for e in events if e.type in TERMINAL_EVENTS)


def recorder_differences(url: str, ends: dict[str, list[Event]]) -> list[str]:
    """What the recorder's rows say that a fold of each execution's events does not: events by
    (execution, seq) with their ids and types, the execution's status and last seq, each step's
    status and attempts."""
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            stored: dict[str, list[tuple[int, str, str]]] = {}
            for execution_id, seq, id_, type_ in conn.execute(
                "SELECT execution_id, seq, id, type FROM events"
            ):
                stored.setdefault(execution_id, []).append((seq, id_, type_))
            executions = {
                r[0]: (r[1], r[2])
                for r in conn.execute("SELECT id, status, last_seq FROM runbook_executions")
            }
            steps = {
                (r[0], r[1]): (r[2], r[3])
                for r in conn.execute("SELECT execution_id, step_id, status, attempts FROM runbook_step_logs")
            }
    except psycopg.OperationalError as exc:
        return [f"database: {exc}"]
    differences: list[str] = []
    for execution_id, events in ends.items():
        rows = sorted(stored.get(execution_id, []))
        if rows != [(e.seq, e.id, e.type.value) for e in events]:
            differences.append(f"{execution_id}: {len(rows)} event rows, {len(events)} events in the stream")
            continue
        state = fold(events)
        if executions.get(execution_id) != (state.status, len(events)):
            differences.append(
                f"{execution_id}: row {executions.get(execution_id)}, fold {(state.status, len(events))}"
            )
        for sid, step in state.steps.items():
            row = steps.get((execution_id, sid))
            if row is None or row != (step.status, step.attempt):
                differences.append(f"{execution_id}/{sid}: row {row}, fold {(step.status, step.attempt)}")
    return differences


def missed_fire_times(url: str, runbook_id: str) -> set[datetime]:
    """The fire times the schedulers recorded as missed (rb_store.schedules.record_missed)."""
    with psycopg.connect(url, connect_timeout=5) as conn:
        rows = conn.execute("SELECT fire_time FROM schedule_misses WHERE runbook_id = %s", (runbook_id,))
        return {(t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC) for (t,) in rows}


def describe(events: list[Event]) -> str:
    """An execution's record, one line an event: what a failed invariant shows."""
    return "\n".join(
        f"  {e.seq} {e.time.isoformat()} {e.type.value} {e.actor} {json.dumps(e.data, default=str)[:300]}"
        for e in events
    )


@pytest.mark.timeout(LOAD_SECONDS + 900)
async def test_executions_survive_kills_of_services_the_stream_leader_and_postgres(
    distributed: tuple[NatsCluster, Stack, CounterServer, PostgresServer, SlackApi, SmtpServer],
) -> None:
    cluster, stack, counter, postgres, slack, smtp = distributed
    rng = random.Random(SEED)
    coordinators_only = {"RB_EXECUTOR_WORKERS": "false"}
    stack.start("recorder", "recorder", 0)
    stack.start("executor-a", "executor", 1, **coordinators_only)
    stack.start("executor-b", "executor", 2, **coordinators_only)
    stack.start("worker-a", "worker", 0)
    stack.start("worker-b", "worker", 1)
    stack.start("scheduler-a", "scheduler", 2)
    stack.start("scheduler-b", "scheduler", 0)
    stack.start("notifier-a", "notifier", 1)
    stack.start("notifier-b", "notifier", 2)
    stack.start("api", "api", 0)
    bus = await connect(cluster.nodes[0].url, namespace=stack.env["RB_NAMESPACE"], replicas=3, name="chaos")
    try:
        runbook, _ = load_runbook_text(runbook_yaml("chaos-effect", counter.url))
        await ensure_bucket(bus.js, bus.names)
        await Claims(bus, 60.0).bucket()  # the notifiers' claims (the one they made, or the same)
        await ensure_slots_bucket(bus.js, bus.names)  # the executors' slot table (likewise)
        for stream in [*(c.name or "" for c in bus.names.streams()), *bus.names.kv_streams()]:
            info = await bus.js.stream_info(stream)
            assert info.config.num_replicas == 3, f"{stream}: {info.config.num_replicas} replicas"
        await announce(bus, runbook.id, "approved", revision=1, status="APPROVED", actor="chaos")
        await asyncio.to_thread(stack.api_ready, 90.0)
        traffic = ApiTraffic(f"http://127.0.0.1:{stack.api_port}/api/v1", ADMIN_KEY)
        await traffic.setup()

        accepted: dict[str, float] = {}
        refused: list[str] = []
        kills: Counter[str] = Counter()
        leader_changes: list[tuple[str, str]] = []
        windows: list[tuple[float, float]] = []  # wall-clock spans from a kill to recovery
        stop = asyncio.Event()

        async def load() -> None:
            end = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < end:
                execution_id = uuid.uuid4().hex
                data = RunRequest(runbook=runbook, trigger={"revision": 1}).event_data()
                if await publish(bus, runbook.id, data, execution_id):
                    accepted[execution_id] = time.monotonic()
                else:
                    refused.append(execution_id)
                await asyncio.sleep(TRIGGER_INTERVAL)
            stop.set()

        async def kill_service() -> None:
            label = rng.choice(sorted(stack.services))
            began = time.time()
            stack.kill(label)
            kills[label] += 1
            await asyncio.sleep(rng.uniform(1, 3))
            stack.restart(label, rng.randrange(3))
            windows.append((began, time.time() + 3))

        async def restart_postgres() -> None:
            began = time.time()
            await asyncio.to_thread(postgres.restart, rng.uniform(1, 4))
            kills["postgres"] += 1
            windows.append((began, time.time() + 3))

        async def kill_stream_leader() -> None:
            leader = await stream_leader(bus)
            node = cluster.node(leader)
            began = time.time()
            node.kill()
            kills[f"nats-{leader}"] += 1
            await asyncio.sleep(rng.uniform(3, 6))
            node.start()
            await asyncio.to_thread(cluster.wait_meta_leader, 60.0)
            leader_changes.append((leader, await stream_leader(bus)))
            windows.append((began, time.time() + 3))

        async def chaos() -> None:
            await asyncio.sleep(5)
            # Services, the stream leader, services, PostgreSQL, ...: the victims and pauses are
            # the seed's.
            actions = [kill_service, kill_stream_leader, kill_service, restart_postgres]
            turn = 0
            while not stop.is_set():
                await actions[turn % len(actions)]()
                turn += 1
                await asyncio.sleep(rng.uniform(4, 8))

        chaos_task = asyncio.create_task(chaos())
        api_task = asyncio.create_task(traffic.run(stop, API_INTERVAL))
        await load()
        load_end = datetime.now(UTC)
        await chaos_task
        await api_task

        not_terminal: list[str] = []
        # Every invariant is checked after the numbers are printed, so a failed run has them.
        failures: list[str] = []

        def expect(ok: bool, why: Callable[[], str]) -> None:
            if not ok:
                failures.append(why())

        async def terminal(ids: set[str], timeout: float = 90.0) -> dict[str, list[Event]]:
            """Every one of `ids` ends (within a minute and a half of the last kill)."""
            found: dict[str, list[Event]] = {}
            deadline = time.monotonic() + timeout
            while len(found) < len(ids) and time.monotonic() < deadline:
                for execution_id in ids - set(found):
                    events = await events_of(bus, execution_id)
                    if any(e.type in TERMINAL_EVENTS for e in events):
                        found[execution_id] = events
                await asyncio.sleep(0.5)
            not_terminal.extend(sorted(ids - set(found)))
            return found

        # Every accepted trigger has exactly one execution, and it ends: straight onto the
        # stream, through the API (by Idempotency-Key), each accepted alert (as the router
        # recorded it), each sub-runbook's child.
        alert_runs = await traffic.alert_executions()
        several = {d: ids for d, ids in alert_runs.items() if len(ids) != 1}
        expect(not several, lambda: f"alerts without exactly one execution: {list(several.items())[:3]}")
        ends = await terminal(set(accepted) | set(traffic.accepted) | {ids[0] for ids in alert_runs.values()})
        children = {
            child_execution_id(str(e.data["idempotency_key"]))
            for execution_id in traffic.by_runbook.get("rb-014-sub-runbook", set())
            for e in ends.get(execution_id, [])
            if e.type == EventType.STEP_SCHEDULED and e.data["step_id"] == "hello"
        }
        ends |= await terminal(children)
        # Each cron fire time from shortly after approval to the load's end started its one
        # execution (its id derives from the fire time), or is recorded as missed.
        assert traffic.cron_since is not None
        fires = cron_executions(traffic.cron_since + timedelta(seconds=10), load_end - timedelta(seconds=5))
        fired = {eid for eid in fires.values() if await events_of(bus, eid)}
        ends |= await terminal(fired)
        recorded_missed = await asyncio.to_thread(missed_fire_times, postgres.url, "chaos-cron")
        unaccounted = sorted(t for t, eid in fires.items() if eid not in fired and t not in recorded_missed)
        missed = len(set(fires) & recorded_missed)
        expect(
            not unaccounted,
            lambda: (
                f"cron: {len(unaccounted)} of {len(fires)} fire times with neither an execution nor a"
                f" recorded miss, e.g. {[t.isoformat() for t in unaccounted[:3]]}"
            ),
        )

        latencies: list[float] = []
        calm: list[float] = []
        stormy: list[float] = []
        scheduled_keys: dict[str, int] = {}
        for execution_id, events in ends.items():
            requested = [e for e in events if e.type == EventType.EXECUTION_REQUESTED]
            if len(requested) != 1:
                failures.append(f"{execution_id}: {len(requested)} execution.requested")
            ending = [e for e in events if e.type in TERMINAL_EVENTS]
            if len(ending) != 1:
                failures.append(f"{execution_id}: ended {len(ending)} times")
            if problems := verify_chain(events):
                failures.append(f"{execution_id}: {[str(p) for p in problems]}")
            deliveries: dict[tuple[str, int, str], int] = {}
            for e in events:
                if e.type in (EventType.STEP_STARTED, EventType.STEP_SUCCEEDED, EventType.STEP_FAILED):
                    key = (e.data["step_id"], int(e.data.get("attempt", 1)), e.data.get("phase", "main"))
                    deliveries[key] = max(deliveries.get(key, 1), int(e.data.get("delivery", 1)))
            for e in events:
                if e.type == EventType.STEP_SCHEDULED:
                    key = (e.data["step_id"], int(e.data["attempt"]), e.data.get("phase", "main"))
                    scheduled_keys[e.data["idempotency_key"]] = deliveries.get(key, 1)
            latency = (ending[0].time - events[0].time).total_seconds()
            latencies.append(latency)
            start, end = events[0].time.timestamp(), ending[0].time.timestamp()
            (stormy if any(start <= b and end >= a for a, b in windows) else calm).append(latency)
        effects = counter.snapshot()
        unknown = set(effects) - set(scheduled_keys)
        expect(
            not unknown, lambda: f"side effects under keys no step was scheduled with: {sorted(unknown)[:3]}"
        )
        over = {
            k: (n, scheduled_keys[k])
            for k, n in effects.items()
            if k in scheduled_keys and n > scheduled_keys[k]
        }
        expect(
            not over,
            lambda: (
                f"side effects beyond the recorded deliveries (count, deliveries): {over}\n"
                + "\n".join(describe(ends[k.split(":", 1)[0]]) for k in list(over)[:3])
                + f"\n{stack.logs()}"
            ),
        )
        outcomes = Counter(final(events).type.value for events in ends.values())
        expect(outcomes.get("execution.succeeded", 0) == len(ends), lambda: f"outcomes: {outcomes}")

        # One Slack message per execution of the notifying runbook (its execution.succeeded),
        # none lost, none twice.
        succeeded_ids = {final(ends[execution_id]).id for execution_id in accepted if execution_id in ends}

        def slack_ids() -> list[str]:
            return [str((m.metadata or {}).get("event_payload", {}).get("event_id")) for m in slack.posted()]

        def mail_ids() -> Counter[str]:
            return Counter(str(message["Message-ID"]) for _, message in smtp.mailbox.messages)

        await settle_until(
            lambda: set(slack_ids()) >= succeeded_ids and len(mail_ids()) >= len(accepted), 180.0
        )
        posted = Counter(slack_ids())
        expect(
            set(posted) == succeeded_ids,
            lambda: (
                f"Slack: {len(succeeded_ids - set(posted))} lost, {len(set(posted) - succeeded_ids)} unknown"
                f"\n{stack.logs()}"
            ),
        )
        twice = {k: n for k, n in posted.items() if n > 1}
        # Email: one Message-ID per execution; a repeat of one is the documented resend.
        mails = mail_ids()
        email_repeats = sum(n - 1 for n in mails.values())

        # The recorder's tables equal a fold of the streams (read again: notification records
        # come after the end), once the recorder has caught up.
        deadline = time.monotonic() + 180
        while True:
            streams = {execution_id: await events_of(bus, execution_id) for execution_id in ends}
            differences = await asyncio.to_thread(recorder_differences, postgres.url, streams)
            if not differences or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)

        def p95(values: list[float]) -> float:
            if not values:
                return float("nan")
            return statistics.quantiles(values, n=20)[-1] if len(values) >= 20 else max(values)

        print(  # the numbers for the note (pytest -s)
            f"\nchaos: seed={SEED} seconds={LOAD_SECONDS:.0f} accepted={len(accepted)} refused={len(refused)}"
            f" api={ {k: len(v) for k, v in traffic.by_runbook.items()} } api_refused={len(traffic.refused)}"
            f" api_retries={traffic.retries} alerts={len(alert_runs)} children={len(children)}"
            f" cron_fires={len(fires)} cron_executions={len(fired)} cron_missed={missed} executions={len(ends)}"
            f" not_terminal={len(not_terminal)}"
            f" outcomes={dict(outcomes)} kills={dict(kills)} leader_changes={leader_changes}"
            f" effects={sum(effects.values())} keys={len(effects)} redelivered={sum(n > 1 for n in effects.values())}"
            f" slack={len(posted)} slack_twice={len(twice)} emails={sum(mails.values())} email_repeats={email_repeats}"
            f" recorder_differences={len(differences)}"
            f" exited_by_themselves={stack.exited()}"
            f" latency_p50={statistics.median(latencies):.2f}s p95={p95(latencies):.2f}s"
            f" p95_calm={p95(calm):.2f}s (n={len(calm)}) p95_chaos={p95(stormy):.2f}s (n={len(stormy)})"
        )
        expect(
            not not_terminal,
            lambda: f"{len(not_terminal)} not terminal, e.g. {not_terminal[:3]}\n{stack.logs()}",
        )
        expect(not twice, lambda: f"Slack messages posted more than once: {twice}")
        expect(
            len(mails) == len(accepted),
            lambda: f"email: {len(mails)} Message-IDs for {len(accepted)} executions",
        )
        expect(not differences, lambda: f"recorder vs streams: {differences[:5]}\n{stack.logs()}")
        expect(bool(kills), lambda: "no chaos happened")
        # Services wait for what they need and reconnect; none gives up and exits by itself.
        expect(
            not stack.exited(),
            lambda: f"services that exited by themselves: {stack.exited()}\n{stack.logs()}",
        )
        assert not failures, "\n".join(failures)
    finally:
        await bus.close()
