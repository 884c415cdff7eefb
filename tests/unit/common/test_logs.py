"""rb_common.logs: JSON lines (or text) carrying the execution and step a line is about, and
no secret in either, message or traceback."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from rb_common import logs
from rb_common.secrets import MaskingFilter
from rb_common.settings import Settings

SECRET = "s3cr3t-Valu3-xyz"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"rb-test-logs-{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    yield logger, stream, handler
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_json_lines_name_the_bound_execution_and_step(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logs.formatter("json", "executor"))
    logger.info("outside")
    with logs.bound("exec-1"):
        logger.info("advancing %s", "exec-1")
        with logs.bound("exec-1", "step-a"):
            logger.warning("attempt %d", 2)
        logger.info("back")
    records = [json.loads(line) for line in lines(stream)]
    assert [(r["message"], r["execution_id"], r["step_id"]) for r in records] == [
        ("outside", None, None),
        ("advancing exec-1", "exec-1", None),
        ("attempt 2", "exec-1", "step-a"),
        ("back", "exec-1", None),
    ]
    assert {r["service"] for r in records} == {"executor"}
    assert [r["level"] for r in records] == ["INFO", "INFO", "WARNING", "INFO"]
    assert all(r["logger"] == logger.name and r["time"] for r in records)


async def test_the_ids_follow_tasks_started_inside_the_block(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logs.formatter("json", "executor"))

    async def step(step_id: str) -> None:
        with logs.bound("exec-2", step_id):
            await asyncio.sleep(0)
            logger.info("ran")

    with logs.bound("exec-2"):
        await asyncio.gather(step("a"), step("b"))
        logger.info("both done")
    records = [json.loads(line) for line in lines(stream)]
    assert sorted((r["message"], r["step_id"]) for r in records) == [("both done", None), ("ran", "a"), ("ran", "b")]
    assert {r["execution_id"] for r in records} == {"exec-2"}


def test_text_lines_keep_the_ids_at_the_end(captured: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logs.formatter("text", "worker"))
    logger.info("plain")
    with logs.bound("exec-3", "s"):
        logger.info("in a step")
    first, second = lines(stream)
    assert first.endswith(f"worker INFO {logger.name}: plain")
    assert second.endswith(f"worker INFO {logger.name}: in a step [execution=exec-3 step=s]")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_masked_secret_stays_masked_in_message_and_traceback(
    captured: tuple[logging.Logger, io.StringIO, logging.Handler], log_format: str
) -> None:
    logger, stream, handler = captured
    handler.setFormatter(logs.formatter(log_format, "worker"))
    handler.addFilter(MaskingFilter(lambda: [SECRET]))
    with logs.bound("exec-4", "call"):
        logger.info("calling with %s", SECRET)
        try:
            raise RuntimeError(f"refused: {SECRET}")
        except RuntimeError:
            logger.exception("step failed")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("***") >= 2
    if log_format == "json":
        records = [json.loads(line) for line in lines(stream) if line.startswith("{")]
        assert records[0]["message"] == "calling with ***"
        assert "RuntimeError: refused: ***" in records[1]["exc_info"]
        assert records[1]["step_id"] == "call"


def test_configure_installs_one_handler_in_the_chosen_format(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        handler = logs.configure(Settings(log_format="text", log_level="WARNING"), "api")
        assert root.handlers == [handler]
        assert root.level == logging.WARNING
        assert isinstance(handler.formatter, logs.TextLines)
        handler = logs.configure(Settings(), "api")
        assert isinstance(handler.formatter, logs.JsonLines)  # the default
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_the_log_format_setting_refuses_other_values() -> None:
    with pytest.raises(ValueError):
        Settings(log_format="xml")  # type: ignore[arg-type]
