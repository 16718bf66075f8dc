"""``strategyq serve``: the HTTP API and the dashboard (and ``--new-token`` to make a token)."""

from __future__ import annotations

import logging
import socket
from typing import Annotated, Any

import typer

from strategyq.api.config import ApiConfig
from strategyq.cli.common import console, settings
from strategyq.logs import configure_logging
from strategyq.settings import option_help, table
from strategyq.startup import warming_up


def _drop_color_message(record: logging.LogRecord) -> bool:
    # uvicorn attaches an ANSI-coloured copy of each message; our formatters would
    # print it as an extra field.
    record.__dict__.pop("color_message", None)
    return True


API_SETTINGS = table(ApiConfig)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        host: Annotated[
            str | None,
            typer.Option(
                help=option_help(
                    "host", "address to bind (any but loopback needs tokens)", API_SETTINGS
                )
            ),
        ] = None,
        port: Annotated[
            int | None, typer.Option(help=option_help("port", "port", API_SETTINGS))
        ] = None,
        new_token: Annotated[
            str | None,
            typer.Option(
                "--new-token",
                metavar="NAME",
                help="Print a new token and its STRATEGYQ_API_TOKENS entry, then exit.",
            ),
        ] = None,
        scope: Annotated[str, typer.Option(help="Scope of --new-token: read or write.")] = "write",
        log_format: Annotated[str, typer.Option(help="Log line format: text or json.")] = "text",
        log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
        access_log: Annotated[bool, typer.Option(help="Log every request.")] = False,
        archive: Annotated[
            bool,
            typer.Option(
                "--archive", help="Also run the archiver (as 'strategyq archive') in this process."
            ),
        ] = False,
        proxy_headers: Annotated[
            bool,
            typer.Option(
                help="Behind a TLS proxy: take the scheme and client address from its "
                "X-Forwarded-Proto/-For headers (so cookies get Secure)."
            ),
        ] = False,
        forwarded_allow_ips: Annotated[
            str,
            typer.Option(
                help="With --proxy-headers: the proxies' addresses (comma-separated) whose "
                "forwarded headers are believed."
            ),
        ] = "127.0.0.1",
        fd: Annotated[
            int | None,
            typer.Option(
                hidden=True,
                help="Serve on this inherited, already bound and listening socket (so a parent "
                "that chose the port holds it until the server takes it over).",
            ),
        ] = None,
    ) -> None:
        """Serve the HTTP API (/v1, OpenAPI at /openapi.json) and the web dashboard."""
        from strategyq.api.config import ApiConfig, Scope
        from strategyq.api.config import new_token as make_token
        from strategyq.errors import ConfigError

        if new_token is not None:
            try:
                token_scope = Scope(scope)
            except ValueError:
                raise ConfigError(f"--scope must be read or write, got {scope!r}") from None
            secret, entry = make_token(new_token, token_scope)
            print(f"token (give it to the client; it is not stored): {secret}")
            print(f"STRATEGYQ_API_TOKENS entry (the server keeps only its hash): {entry}")
            return
        configure_logging("json" if log_format == "json" else "text", log_level)
        logging.getLogger("uvicorn.error").addFilter(_drop_color_message)
        with warming_up():
            import uvicorn

            from strategyq.api import create_app

            conf = settings()
            config = ApiConfig.from_env(host=host, port=port)
            app = create_app(conf, config)
        archiver = _start_archiver(conf) if archive else None
        shown = f"[{config.host}]" if ":" in config.host else config.host
        console.print(
            f"dashboard and API on http://{shown}:{config.port}/ "
            f"(OpenAPI: /openapi.json; {'tokens required' if config.auth_required else 'no token'})"
        )
        uv_config = uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=access_log,
            proxy_headers=proxy_headers,
            forwarded_allow_ips=forwarded_allow_ips,
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        # The socket's own family (uvicorn's fd option assumes a Unix socket).
        sockets = None if fd is None else [socket.socket(fileno=fd)]
        try:
            uvicorn.Server(uv_config).run(sockets=sockets)
        finally:
            if archiver is not None:
                archiver.stop()


def _start_archiver(conf: Any) -> Any:
    """The archiver in a thread of this process (its own Redis connection and database)."""
    import threading

    from strategyq.archive.archiver import Archiver
    from strategyq.cli.archive import archiver_config
    from strategyq.cli.common import client

    archiver = Archiver(client(conf), archiver_config(conf))
    threading.Thread(target=archiver.run, name="strategyq-archiver", daemon=True).start()
    return archiver
