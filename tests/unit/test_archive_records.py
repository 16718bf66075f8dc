"""The archive's pure parts: name/tags validation, fingerprints, records, filters, URLs."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest

from strategyq.archive.db import Database, describe
from strategyq.archive.record import NotARun, build, fingerprint
from strategyq.archive.store import MetricFilter, RunFilter
from strategyq.errors import ArchiveError, ConfigError
from strategyq.protocol.envelope import MalformedTask
from strategyq.protocol.task import parse_task
from strategyq.settings import Settings


def task(**args: Any) -> bytes:
    return orjson.dumps({"task_id": "t", "task_type": "screening",
                         "args": {"strategy_code": "def s(df):\n    return []\n",
                                  "universe": ["AAPL"], **args}})  # fmt: skip


def test_name_and_tags_are_validated_when_a_task_is_parsed() -> None:
    parsed = parse_task(task(name=" sma cross ", tags=["trend", "v2", "trend"]))
    assert parsed.options.name == "sma cross" and parsed.options.tags == ("trend", "v2")
    assert parse_task(task(tags="a,b")).options.tags == ("a", "b")
    for bad, needle in (
        ({"name": ""}, "args.name must be a non-empty string"),
        ({"name": "x" * 201}, "at most 200 characters"),
        ({"name": 5}, "args.name must be"),
        ({"tags": ["ok", "no spaces"]}, "'no spaces' is not a tag"),
        ({"tags": [f"t{i}" for i in range(33)]}, "at most 32 tags"),
        ({"tags": {"a": 1}}, "args.tags must be a list"),
    ):
        with pytest.raises(MalformedTask, match=needle):
            parse_task(task(**bad))


def test_fingerprint_ignores_line_endings_and_trailing_space_only() -> None:
    code = "def s(df):\n    return []\n"
    assert fingerprint(code) == fingerprint(code.replace("\n", "\r\n") + "  \n\n")
    assert fingerprint(code) != fingerprint(code.replace("[]", "[ ]"))
    assert len(fingerprint(code)) == 16


def test_records_that_are_not_terminal_strategyq_results_are_refused() -> None:
    for raw, needle in (
        (None, "no result record"),
        (b"{oops", "not JSON"),
        (b"[1, 2]", "not a strategyq record"),
        (b'{"status": "running", "data": {}}', "not a terminal one"),
        (b'{"status": "completed", "data": 7}', "data is not an object"),
    ):
        with pytest.raises(NotARun, match=needle):
            build("t", raw, None, finished_ms=0)
    run = build("t", b'{"status": "error", "data": {"error": "x"}}', b"not json", finished_ms=5)
    assert run.task is None and run.task_type == "unknown" and run.args == {}


def test_metric_filters_and_bad_filters_say_what_to_write() -> None:
    assert MetricFilter.parse(" sharpe_ratio >= -1.5 ") == MetricFilter("sharpe_ratio", ">=", -1.5)
    with pytest.raises(ArchiveError, match="use one of total_return"):
        MetricFilter.parse("sharpe>1")
    with pytest.raises(ArchiveError, match=re.escape("write e.g. sharpe_ratio>1")):
        MetricFilter.parse("sharpe_ratio is big")
    with pytest.raises(ArchiveError, match="ask for 1 to 1000"):
        RunFilter.build(limit=0)
    with pytest.raises(ArchiveError, match="2024-05-01"):
        RunFilter.build(since="yesterday")
    with pytest.raises(ArchiveError, match="'next' value"):
        RunFilter.build(before="garbage")


def test_archive_urls_and_their_passwords() -> None:
    with pytest.raises(ConfigError, match=re.escape("sqlite:///path/archive.db or postgresql://")):
        Database("mysql://u@h/db")
    assert Database("postgres://u@h/db").dialect == "postgresql"
    assert describe("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    settings = Settings.from_env({"STRATEGYQ_ARCHIVE_URL": "postgresql://u:s3cret@h/db"})
    # The executor and the sandbox never hold the archive's password.
    assert b"s3cret" not in settings.for_child_process()
    assert "s3cret" not in repr(settings)
    home = Settings.from_env({"STRATEGYQ_HOME": "/tmp/h"})
    assert home.archive_db_url == "sqlite:////tmp/h/archive.db"


def test_the_archiver_loads_no_sandbox_engine_or_executor() -> None:
    import subprocess
    import sys

    def loaded(imports: str, prefixes: tuple[str, ...]) -> str:
        code = (
            f"import sys, {imports}\n"
            f"print(','.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              check=True)  # fmt: skip
        return done.stdout.strip()

    # The archiver itself: no user code, no trading, no worker, not even pandas.
    assert loaded("strategyq.archive.archiver", ("strategyq.worker", "strategyq.executor",
                  "strategyq.sandbox", "strategyq.engine", "pandas")) == ""  # fmt: skip
    # As 'strategyq archive' runs it, through the CLI.
    forbidden = ("strategyq.sandbox", "strategyq.engine", "strategyq.executor.run",
                 "strategyq.executor.main")  # fmt: skip
    assert loaded("strategyq.cli, strategyq.cli.archive", forbidden) == ""
