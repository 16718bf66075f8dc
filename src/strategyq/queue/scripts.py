"""The Lua scripts that make each queue transition atomic.

Each ``lua/<name>.lua`` file's header documents the keys it touches. Scripts
that write a terminal result are loaded with ``lua/_recent.lua`` prepended, so
the recent-task index is written in the same atomic step; those that write a
result record with ``lua/_events.lua``, so the record is also published on the
task's event channel. They are loaded once
per client with ``register_script`` (EVALSHA, falling back to EVAL after a
server restart flushed the script cache).
"""

from __future__ import annotations

import weakref
from functools import cache
from importlib import resources

import redis
from redis.commands.core import Script

# Scripts that write a terminal result and so also write the recent-task index.
_WITH_RECENT = frozenset({"claim", "finish", "cancel", "reap", "sweep_finish"})
# Scripts that keep a task's message for the archive (lua/_archive.lua; the recent
# index's writes also feed the archive, so every _WITH_RECENT script has it too).
_WITH_ARCHIVE = _WITH_RECENT | {"sweep_fanout"}
# Scripts that put a message in a lane or take one out of a processing list, or read a
# tenant's quotas, and so have the tenant and lane helpers (lua/_lanes.lua).
_WITH_LANES = frozenset(
    {
        "push",
        "take",
        "finish",
        "requeue",
        "reap",
        "sweep_fanout",
        "chunk_done",
        "sweep_finish",
        "ack",
        "tenants_repair",
        "combinations",
    }
)
# Scripts that write a result record and so also publish it on the task's channel.
_WITH_EVENTS = frozenset(
    {
        "push",
        "claim",
        "stage",
        "finish",
        "cancel",
        "reap",
        "requeue",
        "sweep_fanout",
        "chunk_claim",
        "chunk_done",
        "sweep_finish",
        "schedule_fire",
    }
)


@cache
def source(name: str) -> str:
    """The text of ``lua/<name>.lua`` as it is sent to the server."""
    lua = resources.files(__package__).joinpath("lua")
    text = lua.joinpath(f"{name}.lua").read_text()
    if name in _WITH_RECENT:
        text = lua.joinpath("_recent.lua").read_text() + text
    if name in _WITH_ARCHIVE:
        text = lua.joinpath("_archive.lua").read_text() + text
    if name in _WITH_EVENTS:
        text = lua.joinpath("_events.lua").read_text() + text
    if name in _WITH_LANES:
        text = lua.joinpath("_lanes.lua").read_text() + text
    return text


class Scripts:
    """The registered scripts for one client."""

    def __init__(self, client: redis.Redis) -> None:
        self.push: Script = client.register_script(source("push"))
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
        self.schedule_fire: Script = client.register_script(source("schedule_fire"))
        self.take: Script = client.register_script(source("take"))
        self.ack: Script = client.register_script(source("ack"))
        self.tenants_repair: Script = client.register_script(source("tenants_repair"))
        self.combinations: Script = client.register_script(source("combinations"))


_registered: weakref.WeakKeyDictionary[redis.Redis, Scripts] = weakref.WeakKeyDictionary()


def scripts_for(client: redis.Redis) -> Scripts:
    """The scripts registered for ``client``, once per client (producers make a
    :class:`~strategyq.queue.TaskQueue` per call; registering costs ~80 µs)."""
    found = _registered.get(client)
    if found is None:
        found = _registered[client] = Scripts(client)
    return found
