"""Log formats of the CLI, and that the helpers never write secrets or strategy source."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from strategyq.logs import configure_logging, redact, strategy_fingerprint

SECRET = "hunter2-S3cr3t"
EXTRAS = {
    "task_id": "t-123",
    "task_type": "backtest",
    "duration_ms": 2500,
    "outcome": "completed",
    "worker_id": "strategy-worker-abc",
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A private stream; the root logger is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    yield out
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def test_json_puts_fields_and_extras_at_top_level(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    logging.getLogger("strategyq.worker").info("task %s done", "t-123", extra=EXTRAS)
    (line,) = lines(stream)
    entry = json.loads(line)
    assert entry["level"] == "INFO"
    assert entry["logger"] == "strategyq.worker"
    assert entry["msg"] == "task t-123 done"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])
    for key, val in EXTRAS.items():
        assert entry[key] == val


def test_json_includes_the_traceback(stream: io.StringIO) -> None:
    configure_logging("json", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("strategyq.x").exception("failed")
    entry = json.loads(stream.getvalue())
    assert entry["msg"] == "failed"
    assert "RuntimeError: boom" in entry["exc"]


def test_text_is_one_line_with_extras_as_key_value(stream: io.StringIO) -> None:
    configure_logging("text", stream=stream)
    extra = {**EXTRAS, "message_hint": "two words"}
    logging.getLogger("strategyq.worker").warning("task requeued", extra=extra)
    (line,) = lines(stream)
    assert " WARNING strategyq.worker: task requeued " in line
    for pair in ("task_id=t-123", "task_type=backtest", "duration_ms=2500", "outcome=completed"):
        assert pair in line
    assert 'message_hint="two words"' in line


def test_level_filters_records(stream: io.StringIO) -> None:
    configure_logging("text", "WARNING", stream=stream)
    log = logging.getLogger("strategyq.y")
    log.info("quiet")
    log.warning("loud")
    assert [line.split(": ", 1)[1] for line in lines(stream)] == ["loud"]


def test_configuring_twice_keeps_one_handler(stream: io.StringIO) -> None:
    configure_logging("text", stream=stream)
    configure_logging("json", stream=stream)
    logging.getLogger("strategyq.z").info("once")
    (line,) = lines(stream)
    assert json.loads(line)["msg"] == "once"


def test_unknown_format_or_level_is_refused(stream: io.StringIO) -> None:
    with pytest.raises(ValueError, match="'text' or 'json'"):
        configure_logging("xml", stream=stream)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("text", "LOUD", stream=stream)


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_masked_in_both_formats(stream: io.StringIO, fmt: str) -> None:
    configure_logging(fmt, stream=stream)  # type: ignore[arg-type]
    log = logging.getLogger("strategyq.cli")
    log.info("connecting to %s", f"redis://default:{SECRET}@cache:6379/0")
    log.info(
        "settings",
        extra={"redis_password": SECRET, "api_key": SECRET, "url": f"rediss://:{SECRET}@h"},
    )
    try:
        raise ConnectionError(f"cannot reach redis://:{SECRET}@cache:6379")
    except ConnectionError:
        log.exception("lost connection")
    output = stream.getvalue()
    assert SECRET not in output
    assert "redis://default:***@cache:6379/0" in output


def test_redact_leaves_urls_without_passwords_alone() -> None:
    assert redact("redis://cache:6379/0") == "redis://cache:6379/0"
    assert redact("unix:///tmp/valkey.sock") == "unix:///tmp/valkey.sock"
    assert (
        redact("redis://user:pw@h:1 and https://a:b@c")
        == "redis://user:***@h:1 and https://a:***@c"
    )


def test_fingerprint_identifies_code_without_revealing_it() -> None:
    code = f"def my_strategy(df):\n    key = '{SECRET}'\n    return []\n"
    fp = strategy_fingerprint(code)
    assert re.fullmatch(r"len=\d+ sha256=[0-9a-f]{12}", fp)
    assert fp.startswith(f"len={len(code)} ")
    assert SECRET not in fp and "my_strategy" not in fp
    assert fp == strategy_fingerprint(code)
    assert fp != strategy_fingerprint(code + " ")


def test_fingerprint_accepts_any_str() -> None:
    assert strategy_fingerprint("").startswith("len=0 sha256=e3b0c44298fc")
    assert strategy_fingerprint("\ud800x").startswith("len=2 ")
