"""The layering the queue core promises: what each process imports, what it is handed."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

from strategyq.settings import RedisSettings, SandboxLimits, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_worker_process_imports_no_sandbox_engine_or_pandas() -> None:
    code = (
        "import sys, strategyq.worker\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('strategyq.sandbox', "
        "'strategyq.engine', 'strategyq.executor.run', 'strategyq.data', 'pandas', 'numpy')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_fault_injection_is_not_in_the_package() -> None:
    sources = (ROOT / "src" / "strategyq").rglob("*.py")
    assert not [p for p in sources if "STRATEGYQ_FAULT" in p.read_text()]


def test_settings_reach_the_executor_with_every_non_default_value() -> None:
    """Every field changed from its default survives the hand-over, and no credential does."""
    changed: dict[str, object] = {}
    for f in dataclasses.fields(Settings):
        if f.name in ("home", "redis", "sandbox", "archive_url"):
            continue
        default = f.default
        if isinstance(default, bool):
            changed[f.name] = not default
        elif isinstance(default, int | float):
            changed[f.name] = default + 7
        elif isinstance(default, str):
            changed[f.name] = default + "-x"
        elif isinstance(default, tuple) and default:
            changed[f.name] = default[:1]
        else:
            raise AssertionError(f"add a non-default value for {f.name}")
    sandbox = SandboxLimits(
        **{f.name: getattr(SandboxLimits(), f.name) + 3 for f in dataclasses.fields(SandboxLimits)}
    )
    redis = RedisSettings(host="redis-host-xyz", password="s3cret", username="u")
    archive = "postgresql://u:arch1ve-s3cret@db-host-xyz/archive"
    conf = Settings(home=Path("/tmp/elsewhere"), redis=redis, sandbox=sandbox,
                    archive_url=archive, **changed)  # type: ignore[arg-type]  # fmt: skip
    wire = conf.for_child_process()
    assert b"s3cret" not in wire and b"redis-host-xyz" not in wire
    assert b"db-host-xyz" not in wire  # the archive's URL carries its password
    back = Settings.from_child_json(wire)
    assert back == dataclasses.replace(conf, redis=RedisSettings(), archive_url="")


def test_the_worker_command_imports_no_sandbox_or_engine() -> None:
    code = (
        "import sys, strategyq.cli\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('strategyq.sandbox', "
        "'strategyq.engine', 'strategyq.executor.run', 'strategyq.executor.main')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_task_args_table_lists_every_arg_the_wire_reads() -> None:
    from strategyq.protocol.args import args_for
    from strategyq.protocol.envelope import TaskType
    from strategyq.trademodel import TradeModel

    backtest = {a.name for a in args_for(TaskType.BACKTEST)}
    screening = {a.name for a in args_for(TaskType.SCREENING)}
    assert {f.name for f in dataclasses.fields(TradeModel)} <= backtest
    run_options = {"timeout_seconds", "memory_mb", "max_instances"}
    assert run_options <= backtest and run_options <= screening
    assert {"strategy_code", "symbols", "start_date", "end_date", "adjusted", "benchmark",
            "lookback_sessions"} <= backtest  # fmt: skip
    assert {"strategy_code", "universe", "limit", "as_of", "lookback_sessions"} <= screening
