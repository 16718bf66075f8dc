"""The Lua scripts that make each queue transition atomic.

Each ``.lua`` file's header documents the keys it touches. They are loaded
once per client with ``register_script`` (EVALSHA, falling back to EVAL after
a server restart flushed the script cache).
"""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script


def source(name: str) -> str:
    """The text of ``scripts/<name>.lua``."""
    return resources.files(__name__).joinpath(f"{name}.lua").read_text()


class Scripts:
    """The registered scripts for one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.claim: Script = client.register_script(source("claim"))
        self.stage: Script = client.register_script(source("stage"))
        self.finish: Script = client.register_script(source("finish"))
        self.requeue: Script = client.register_script(source("requeue"))
        self.reap: Script = client.register_script(source("reap"))
        self.cancel: Script = client.register_script(source("cancel"))
        self.sweep_fanout: Script = client.register_script(source("sweep_fanout"))
        self.chunk_claim: Script = client.register_script(source("chunk_claim"))
        self.chunk_done: Script = client.register_script(source("chunk_done"))
        self.sweep_finish: Script = client.register_script(source("sweep_finish"))
