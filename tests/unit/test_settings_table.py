"""The settings table: every object is built from it, and the docs and --help show it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from tools.settings_table import DOCUMENTS, stale, tables
from typer.testing import CliRunner

from strategyq.api.config import ApiConfig, hash_token
from strategyq.cli import app
from strategyq.errors import ConfigError
from strategyq.settings import (
    SETTINGS,
    RedisSettings,
    SandboxLimits,
    Setting,
    Settings,
    markdown,
    table,
)

TOKEN = f"ci:write:{hash_token('x' * 20)}"


def sample(row: Setting) -> tuple[str, Any]:
    """A valid text for the row's variable that is not its default, and the value it gives."""
    special: dict[str, tuple[str, Any]] = {
        "STRATEGYQ_HOME": ("/tmp/strategyq-elsewhere", Path("/tmp/strategyq-elsewhere")),
        "REDIS_SENTINELS": ("s1:26380,[::1]", (("s1", 26380), ("::1", 26379))),
        "STRATEGYQ_API_TOKENS": (TOKEN, None),
        "STRATEGYQ_API_ALLOWED_HOSTS": ("a.test, b.test", ("a.test", "b.test")),
        "STRATEGYQ_HEARTBEAT_INTERVAL": ("1.5", 1.5),
        "STRATEGYQ_SANDBOX_LIBRARIES": ("scipy, TALIB", ("scipy", "talib")),
    }
    if row.env in special:
        return special[row.env]
    default = row.default
    if isinstance(default, bool):
        return ("false" if default else "true"), not default
    if isinstance(default, int):
        return str(default + 3), default + 3
    if isinstance(default, float):
        return str(default + 3.5), default + 3.5
    return "some-value", "some-value"


def value_of(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_every_row_sets_its_field_and_nothing_else() -> None:
    # The cache's "auto" default follows the memory available at the moment: pinned here
    # so that two reads of the same environment agree.
    base = {"STRATEGYQ_HOME": "/h", "STRATEGYQ_WORKER_ID": "w", "STRATEGYQ_DATA_CACHE_MB": "512"}
    defaults = Settings.from_env(base)
    for row in SETTINGS:
        text, expected = sample(row)
        env = {**base, row.env: text}
        built = Settings.from_env(env)
        assert value_of(built, row.name) == expected, row.env
        name = row.name.split(".")[0]
        others = {f.name for f in dataclasses.fields(Settings)} - {name}
        assert all(getattr(built, n) == getattr(defaults, n) for n in others), row.env
    for row in table(ApiConfig):
        text, expected = sample(row)
        config = ApiConfig.from_env({row.env: text})
        got = value_of(config, row.name)
        assert got != value_of(ApiConfig(), row.name), row.env
        if expected is not None:
            assert got == expected, row.env


def test_the_table_covers_every_object_and_names_each_variable_once() -> None:
    rows = tables()["all"]
    names = [r.env for r in rows]
    assert len(names) == len(set(names))
    assert {r.name for r in rows if r.name.startswith("redis.")} == {
        f"redis.{f.name}" for f in dataclasses.fields(RedisSettings)
    }
    assert {r.name for r in rows if r.name.startswith("sandbox.")} == {
        f"sandbox.{f.name}" for f in dataclasses.fields(SandboxLimits) if f.name != "max_open_files"
    }
    for row in rows:
        assert row.help and not row.help.endswith("."), row.env
        assert row.env.startswith(("STRATEGYQ_", "REDIS_")), row.env
    by_env = {r.env: r for r in rows}
    assert by_env["STRATEGYQ_RESULT_TTL"].shown_unit == "s"
    assert by_env["STRATEGYQ_MEMORY_MB"].shown_unit == "MiB"
    assert by_env["STRATEGYQ_MAX_RESULT_BYTES"].shown_default == "16 MiB"
    assert by_env["REDIS_SSL"].shown_default == "false"


def test_the_docs_tables_are_generated_from_the_table() -> None:
    assert stale() == [], "run: python -m tools.settings_table"
    readme = DOCUMENTS[0].read_text()
    assert markdown(tables()["all"]) in readme
    assert "| `STRATEGYQ_API_MAX_BODY` | 2 MiB | bytes | request body cap |" in readme


def test_a_changed_setting_makes_the_docs_check_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    (row,) = (r for r in SETTINGS if r.env == "STRATEGYQ_CONCURRENCY")
    changed = dataclasses.replace(row, help="tasks at once")
    monkeypatch.setattr(
        "tools.settings_table.SETTINGS", tuple(changed if r is row else r for r in SETTINGS)
    )
    assert stale() == ["README.md: all"]


@pytest.mark.parametrize(
    ("env", "message", "advice"),
    [
        (
            {"STRATEGYQ_CONCURRENCY": "two"},
            "STRATEGYQ_CONCURRENCY='two' is not a whole number",
            "set it to e.g. 1",
        ),
        (
            {"STRATEGYQ_CONCURRENCY": "0"},
            "STRATEGYQ_CONCURRENCY=0 is below the minimum 1",
            "set it to at least 1",
        ),
        (
            {"STRATEGYQ_TIME_LIMIT": "soon"},
            "STRATEGYQ_TIME_LIMIT='soon' is not a number",
            "set it to e.g. 60",
        ),
        (
            {"STRATEGYQ_ALLOW_EVICTION": "maybe"},
            "STRATEGYQ_ALLOW_EVICTION='maybe' is not a boolean",
            "use true or false",
        ),
        ({"REDIS_PORT": "0"}, "REDIS_PORT=0 is below the minimum 1", "default 6379"),
        (
            {"REDIS_SENTINELS": "s1:port"},
            "REDIS_SENTINELS: 's1:port' is not host:port",
            "list the sentinels as",
        ),
        (
            {"STRATEGYQ_HEARTBEAT_INTERVAL": "5", "STRATEGYQ_HEARTBEAT_TIMEOUT": "10"},
            "at most a third of STRATEGYQ_HEARTBEAT_TIMEOUT",
            "a busy worker looks dead",
        ),
    ],
)
def test_a_bad_value_says_which_variable_and_what_to_set(
    env: dict[str, str], message: str, advice: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value) and advice in str(caught.value)


def test_the_api_variables_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="STRATEGYQ_API_MAX_BODY=1000 is below the minimum 65536"):
        ApiConfig.from_env({"STRATEGYQ_API_MAX_BODY": "1000"})
    with pytest.raises(ConfigError, match="STRATEGYQ_API_TOKENS entry"):
        ApiConfig.from_env({"STRATEGYQ_API_TOKENS": "nope"})
    assert ApiConfig.from_env({"STRATEGYQ_API_PORT": "9"}, port=10).port == 10


def test_fallbacks_when_a_variable_is_unset() -> None:
    assert Settings.from_env({"HOSTNAME": "pod-7"}).worker_id == "pod-7"
    assert Settings.from_env({"STRATEGYQ_HEARTBEAT_TIMEOUT": "3"}).heartbeat_interval_s == 1.0
    assert Settings.from_env({"XDG_DATA_HOME": "/x"}).home == Path("/x/strategyq")
    assert Settings.from_env({}, concurrency=4).concurrency == 4


def test_secrets_stay_out_of_repr() -> None:
    conf = RedisSettings.from_env({"REDIS_PASSWORD": "s3cret", "REDIS_SENTINEL_PASSWORD": "p2"})
    assert conf.password == "s3cret" and "s3cret" not in repr(conf) and "p2" not in repr(conf)


def test_cli_help_is_generated_from_the_table() -> None:
    runner = CliRunner()
    worker = runner.invoke(app, ["worker", "--help"], env={"COLUMNS": "200"}).output
    for row in (r for r in SETTINGS if r.name in ("concurrency", "queue_name", "metrics_port")):
        assert row.option_help() in " ".join(worker.split()), row.name
    serve = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"}).output
    assert "Default 127.0.0.1; environment: STRATEGYQ_API_HOST." in " ".join(serve.split())


def test_the_sandbox_libraries_setting_names_what_the_sandbox_can_preload() -> None:
    from strategyq.sandbox import policy
    from strategyq.settings import SANDBOX_LIBRARIES

    assert tuple(policy.LIBRARIES) == SANDBOX_LIBRARIES
    assert Settings.from_env({"STRATEGYQ_SANDBOX_LIBRARIES": "none"}).sandbox_libraries == ()
    with pytest.raises(ConfigError, match="choose among talib, scipy"):
        Settings.from_env({"STRATEGYQ_SANDBOX_LIBRARIES": "tensorflow"})


def test_the_data_cache_is_sized_to_the_machine_unless_set() -> None:
    auto = Settings.from_env({}).data_cache_mb
    assert 64 <= auto <= 16 * 1024
    assert Settings.from_env({"STRATEGYQ_DATA_CACHE_MB": "auto"}).data_cache_mb >= 64
    assert Settings.from_env({"STRATEGYQ_DATA_CACHE_MB": "300"}).data_cache_mb == 300
    with pytest.raises(ConfigError, match="STRATEGYQ_DATA_CACHE_MB='lots'"):
        Settings.from_env({"STRATEGYQ_DATA_CACHE_MB": "lots"})
