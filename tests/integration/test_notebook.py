"""examples/quickstart.ipynb runs top to bottom in a real kernel against the embedded server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest

from strategyq.embedded_valkey import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "quickstart.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture
def notebook_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh STRATEGYQ_HOME and no REDIS_*: the kernel starts the embedded server there."""
    home = tmp_path / "home"
    for name in list(os.environ):
        if name.startswith(("REDIS_", "STRATEGYQ_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("STRATEGYQ_HOME", str(home))
    monkeypatch.setenv("STRATEGYQ_METRICS_PORT", "0")
    # The notebook's strategy imports no optional library: its local session, its
    # worker and the CLI runs fork every child from the lean fork server, and the full
    # one (about 3 CPU-seconds to start, in each of their four sandbox hosts) is left out.
    monkeypatch.setenv("STRATEGYQ_SANDBOX_LIBRARIES", "none")
    yield home
    EmbeddedServer(home / "valkey").stop()


def _tagged(nb: Any, tag: str) -> Any:
    (cell,) = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    return cell


def _figure(nb: Any, tag: str) -> Any:
    (output,) = [o for o in _tagged(nb, tag).outputs if PLOTLY in o.get("data", {})]
    return output.data[PLOTLY]


def _text(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def test_quickstart_notebook_runs_and_matches_the_cli(notebook_home: Path, tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit the notebook without outputs"
    )
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]  # fmt: skip
    assert not errors, errors
    # The figures are there: the backtest's chart and the sweep's heatmap.
    for tag in ("plot", "heatmap"):
        assert _figure(nb, tag)["data"], [
            o.get("data", {}).keys() for o in _tagged(nb, tag).outputs
        ]
    heat = _figure(nb, "heatmap")["data"][0]
    assert heat["type"] == "heatmap"
    plot = _figure(nb, "plot")["data"]
    assert {"equity", "drawdown %", "entry", "exit"} <= {t.get("name") for t in plot}
    compare = _text(_tagged(nb, "compare"))
    assert "local equals queue: True" in compare, compare
    numbers = json.loads(compare.splitlines()[-1])
    assert numbers["queue"] == numbers["backtest"]

    # The CLI, on the notebook's own strategy cell, gives the same numbers.
    strategy = tmp_path / "sma_cross.py"
    strategy.write_text(_tagged(nb, "strategy").source)
    env = {**os.environ, "STRATEGYQ_HOME": str(notebook_home)}
    run = [sys.executable, "-m", "strategyq", "run"]
    common = ["--symbols", "AAPL", "--start", "2005-01-01", "--end", "2012-12-31", "--json"]
    done = subprocess.run(
        [*run, "backtest", str(strategy), *common, "--params", '{"fast": 10, "slow": 50}',
         "--benchmark", "MSFT"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["performance_metrics"] == numbers["backtest"]
    done = subprocess.run(
        [*run, "sweep", str(strategy), *common, "--grid", "fast=5,10,20",
         "--grid", "slow=50,100,200", "--constraint", "fast < slow"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["best"]["params"] == numbers["best"]
