"""``strategyq demo``: the seed's two task types, end to end, on the sample data."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strategyq.cli import data as data_cmd
from strategyq.cli.common import client, console, settings

if TYPE_CHECKING:
    import redis

    # Imported by the command when it runs: strategyq.data brings pandas, numpy and
    # pyarrow, which `strategyq --help` does not need.
    from strategyq.data import MarketData
    from strategyq.embedded_valkey import EmbeddedServer

SAMPLE_SYMBOLS = ["AAPL", "MSFT", "GOOG"]
SAMPLE_UNIVERSE = ["AAPL", "MSFT", "GOOG", "IBM", "FB"]


INDICATORS = ("close", "gap_pct", "volume_ratio", "sma_20", "sma_50", "rsi", "atr", "macd")


def _indicator_rows(market: MarketData) -> None:
    """One row per sample ticker: its last session's indicators, as a strategy sees them."""
    from rich.table import Table

    table = Table(title="last session per ticker, as the strategy's df has it")
    table.add_column("ticker")
    table.add_column("date")
    for name in INDICATORS:
        table.add_column(name, justify="right")
    for ticker in SAMPLE_UNIVERSE:
        last = market.entries()[ticker].last
        row = market.load([ticker], last, last).frame.iloc[-1]
        table.add_row(
            ticker,
            str(row["date"].date()),
            *(f"{row[name]:,.2f}" for name in INDICATORS),
        )
    console.print(table)


def _listening_socket(preferred: int = 8000) -> socket.socket:
    """A loopback socket bound and listening on ``preferred``, or on any free port.

    The demo binds it and hands it to the server: choosing a free port and letting the
    server bind it later would race another program (or demo) that takes it meanwhile,
    and then the demo would talk to that other server.
    """
    for port in (preferred, 0):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen(128)
        except OSError:
            sock.close()
            continue
        return sock
    raise OSError("no free port on 127.0.0.1")


def _start_dashboard(sock: socket.socket) -> subprocess.Popen[bytes]:
    """``strategyq serve`` on the demo's socket, once it answers /readyz."""
    import urllib.request

    port = int(sock.getsockname()[1])
    fd = sock.fileno()
    command = [sys.executable, "-m", "strategyq", "serve", "--port", str(port), "--fd", str(fd)]
    api = subprocess.Popen(
        [*command, "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        pass_fds=(fd,),
    )
    # The server holds its own copy now.
    sock.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and api.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as reply:
                if reply.status == 200:
                    return api
        except OSError:
            time.sleep(0.2)
    api.kill()
    raise typer.Exit(1)


def _page_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_cmd(
        serve: Annotated[
            bool, typer.Option("--serve", help="Keep the dashboard (and worker) running.")
        ] = False,
    ) -> None:
        """Start the embedded server and a worker, run a backtest and a screen, show both."""
        from strategyq.embedded_valkey import EmbeddedServer

        conf = settings()
        server = EmbeddedServer(conf.server_dir)
        started_server = conf.redis.embedded and not server.is_running()
        if conf.redis.embedded:
            console.print(f"[bold]1.[/] embedded Valkey at {server.ensure_running()}")
        else:
            console.print(f"[bold]1.[/] using {conf.redis.describe()}")
        r = client(conf)
        _show_sample_data(conf.data_dir)
        # The worker inherits our environment: the same Redis and STRATEGYQ_HOME.
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strategyq",
                "worker",
                "--metrics-port",
                "0",
                "--log-level",
                "WARNING",
            ],
        )
        console.print(f"[bold]3.[/] worker started (pid {worker.pid})")
        sock = _listening_socket()
        port = int(sock.getsockname()[1])
        api: subprocess.Popen[bytes] | None = None
        previous = _stop_on_signals()
        try:
            api = _start_dashboard(sock)
            task_ids = _run_seed_tasks(r)
            _show_dashboard(api, f"http://127.0.0.1:{port}", task_ids, serve)
        except _Stopped:
            console.print("stopping (signal)")
        finally:
            # A second signal must not cut the clean-up short.
            for signum in previous:
                signal.signal(signum, signal.SIG_IGN)
            _stop(api, worker, server if started_server else None)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if worker.returncode not in (0, -signal.SIGTERM):
            raise typer.Exit(1)
        if not serve:
            _how_to_continue()


class _Stopped(Exception):
    """Raised in the demo's main thread by SIGTERM or SIGHUP, to clean up as Ctrl-C does."""


def _stop_on_signals() -> dict[int, Any]:
    """SIGTERM and SIGHUP (a closed terminal) stop the demo like Ctrl-C; the old handlers."""

    def stop(_signum: int, _frame: Any) -> None:
        raise _Stopped

    return {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}


def _cli_name() -> str:
    """How to call this ``strategyq`` from the shell that ran the demo."""
    script = Path(sys.executable).with_name("strategyq")
    found = shutil.which("strategyq")
    if found and Path(found).resolve() == script.resolve():
        return "strategyq"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def _how_to_continue() -> None:
    """The demo's last lines: the command that reopens the dashboard, and how to call the CLI."""
    cli = _cli_name()
    console.print(
        f"\n[bold]next:[/] {cli} serve     # reopens the dashboard on these results "
        "(kept 24 h), until Ctrl-C",
        highlight=False,
        soft_wrap=True,
    )
    if cli != "strategyq":
        venv = Path(sys.executable).parent
        console.print(
            f"      {cli} --help    # every command; or `source {venv}/activate` first "
            "and type `strategyq …`",
            highlight=False,
            soft_wrap=True,
        )


def _show_sample_data(data_dir: Path) -> None:
    """Load the sample data unless it is stored, then list it and its last indicators."""
    from strategyq.data import MarketData, load_sample

    market = MarketData(data_dir)
    if not set(SAMPLE_UNIVERSE) <= set(market.tickers()):
        load_sample(data_dir)
    console.print(f"[bold]2.[/] sample data (Quandl WIKI, public domain) in {data_dir}")
    data_cmd.list_()
    _indicator_rows(market)


def _run_seed_tasks(r: redis.Redis) -> tuple[str, str]:
    """Queue the seed's backtest and screen, wait for both and render them; their ids."""
    from strategyq.cli.tasks import render
    from strategyq.cli.waiting import wait_with_status
    from strategyq.client import add_backtest_task, add_screening_task
    from strategyq.examples import source

    backtest_id = f"demo-backtest-{uuid.uuid4().hex[:8]}"
    screening_id = f"demo-screening-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    add_backtest_task(
        r,
        backtest_id,
        source("gap_up"),
        SAMPLE_SYMBOLS,
        "2000-03-01T00:00:00Z",
        "2013-03-01T00:00:00Z",
    )
    add_screening_task(r, screening_id, source("momentum_screen"), SAMPLE_UNIVERSE, 5)
    console.print("[bold]4.[/] queued the seed's gap-up backtest and a momentum screen\n")
    for task_id in (backtest_id, screening_id):
        result = wait_with_status(r, task_id, 120)
        if result is None:
            raise typer.Exit(1)
        render(task_id, result)
        console.print()
        if result.get("status") != "completed":
            raise typer.Exit(1)
    console.print(f"both tasks done in {time.perf_counter() - t0:.2f}s (including worker start-up)")
    return backtest_id, screening_id


def _show_dashboard(
    api: subprocess.Popen[bytes], base: str, task_ids: tuple[str, str], serve: bool
) -> None:
    """Check the dashboard serves both task pages, print their URLs, and with ``serve`` wait."""
    urls = [f"{base}/tasks/{task_id}" for task_id in task_ids]
    if not all(_page_ok(url) for url in urls):
        console.print("[red]the dashboard did not serve the task pages[/]")
        raise typer.Exit(1)
    console.print("\n[bold]5.[/] the dashboard shows both tasks:")
    for url in urls:
        console.print(f"   {url}", highlight=False, soft_wrap=True)
    if serve:
        console.print(f"   serving {base}/ until Ctrl-C", highlight=False)
        with contextlib.suppress(KeyboardInterrupt):
            api.wait()


def _stop(
    api: subprocess.Popen[bytes] | None,
    worker: subprocess.Popen[bytes],
    server: EmbeddedServer | None,
) -> None:
    """Stop the dashboard, the worker and (when the demo started it) the embedded server."""
    if api is not None and api.poll() is None:
        api.terminate()
        api.wait(30)
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    if server is not None:
        server.stop()
        console.print("stopped the worker and the embedded server")
    else:
        console.print("stopped the worker")
