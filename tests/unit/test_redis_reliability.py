"""What counts as a transient Redis failure, Sentinel addresses, the server check, defaults."""

from __future__ import annotations

import os

import pytest
import redis
from redis._parsers.base import BaseParser

from strategyq.connection import sentinel_target
from strategyq.errors import ConfigError
from strategyq.preflight import ServerConfig, problems
from strategyq.retry import describe, is_transient, needs_new_connection
from strategyq.settings import RedisSettings, Settings
from strategyq.worker.heartbeat import incarnation, is_previous_incarnation


def reply(text: str) -> redis.RedisError:
    """The exception redis-py raises for this error reply."""
    return BaseParser.parse_error(text)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "text",
    [
        "OOM command not allowed when used memory > 'maxmemory'.",
        "BUSY Valkey is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
        "READONLY You can't write against a read only replica.",
        "LOADING Valkey is loading the dataset in memory",
        "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        "UNBLOCKED force unblock from blocking operation, instance state changed",
        "NOREPLICAS Not enough good replicas to write.",
        "TRYAGAIN Multiple keys request during rehashing of slot",
    ],
)
def test_error_replies_that_describe_the_servers_state_are_transient(text: str) -> None:
    exc = reply(text)
    assert is_transient(exc)
    assert describe(exc).startswith(text.split()[0])


@pytest.mark.parametrize(
    "text",
    [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR unknown command 'FOO'",
        "NOSCRIPT No matching script.",
        "NOPERM this user has no permissions to run the 'config|get' command",
        "ERR Error running script: user_script:1: bad argument",
    ],
)
def test_error_replies_about_the_command_are_not_transient(text: str) -> None:
    assert not is_transient(reply(text))


def test_lost_connections_are_transient_and_refused_credentials_are_not() -> None:
    assert is_transient(redis.ConnectionError("reset"))
    assert is_transient(redis.TimeoutError("slow"))
    assert not is_transient(redis.AuthenticationError("WRONGPASS"))


def test_readonly_masterdown_and_unblocked_call_for_a_new_connection() -> None:
    assert needs_new_connection(reply("READONLY You can't write against a read only replica."))
    assert needs_new_connection(reply("MASTERDOWN Link with MASTER is down"))
    assert needs_new_connection(reply("UNBLOCKED force unblock"))
    assert not needs_new_connection(reply("OOM command not allowed"))


def test_redis_sentinel_url_forms() -> None:
    conf = RedisSettings(url="redis+sentinel://:s3cret@a:26379,b,[::1]:26380/mymaster/2")
    target = sentinel_target(conf)
    assert target is not None
    assert target.nodes == (("a", 26379), ("b", 26379), ("::1", 26380))
    assert (target.master, target.db, target.password, target.ssl) == (
        "mymaster",
        2,
        "s3cret",
        False,
    )
    assert "s3cret" not in conf.describe()
    tls = sentinel_target(RedisSettings(url="rediss+sentinel://a/m"))
    assert tls is not None and tls.ssl and tls.db == 0
    assert sentinel_target(RedisSettings(url="redis://a:6379/0")) is None


def test_sentinel_env_and_bad_addresses() -> None:
    conf = RedisSettings.from_env(
        {"REDIS_SENTINELS": "s1:26379, s2:26380", "REDIS_SENTINEL_MASTER": "primary"}
    )
    assert conf.uses_sentinel and not conf.embedded
    assert conf.describe() == "redis+sentinel://s1:26379,s2:26380/primary/0"
    with pytest.raises(ConfigError, match="host1:26379,host2:26379"):
        RedisSettings.from_env({"REDIS_SENTINELS": "s1:port"})
    with pytest.raises(ConfigError, match="names no master"):
        sentinel_target(RedisSettings(url="redis+sentinel://s1:26379"))


def test_server_check_refuses_every_evicting_policy_and_warns_missing_persistence() -> None:
    warnings, refusal = problems(ServerConfig("allkeys-lru", 100 << 20, True, ""))
    assert refusal is not None and "noeviction" in refusal and not warnings
    warnings, refusal = problems(ServerConfig("allkeys-lru", 0, True, ""))
    assert refusal is None and "nothing is evicted today" in warnings[0]
    for policy in ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"):
        warnings, refusal = problems(ServerConfig(policy, 100 << 20, True, ""))
        assert refusal is not None and not warnings, policy
        assert f"maxmemory-policy is {policy}" in refusal and "finished results" in refusal
        # The exact setting on each managed service.
        assert "ParameterName=maxmemory-policy,ParameterValue=noeviction" in refusal
        assert "--update-redis-config maxmemory-policy=noeviction" in refusal
        assert "redisConfiguration.maxmemory-policy=noeviction" in refusal
    warnings, refusal = problems(ServerConfig("volatile-lru", 0, True, ""))
    assert refusal is None and "nothing is evicted today" in warnings[0]
    warnings, refusal = problems(ServerConfig("volatile-lru", None, True, ""))
    assert refusal is not None  # a limit that cannot be read may be there
    warnings, refusal = problems(ServerConfig("noeviction", 0, False, ""))
    assert refusal is None and "no persistence" in warnings[0]
    warnings, _ = problems(ServerConfig("noeviction", 0, False, "3600 1"))
    assert "RDB snapshots only" in warnings[0]
    assert problems(ServerConfig("noeviction", 0, True, "")) == ([], None)
    warnings, _ = problems(ServerConfig(None, None, None, None))
    assert "could not read" in warnings[0]


def test_default_recovery_bound_is_15_seconds() -> None:
    s = Settings.from_env({})
    assert s.heartbeat_timeout_s + s.reaper_interval_s <= 15
    assert s.heartbeat_interval_s * 3 <= s.heartbeat_timeout_s


def test_previous_incarnation_is_this_host_and_boot_with_the_process_gone() -> None:
    me = incarnation()
    assert is_previous_incarnation(me)  # same pid: a restarted container reuses pid 1
    parent = {**me, "pid": os.getppid()}
    from strategyq.worker.heartbeat import _process_start

    parent["pid_start"] = _process_start(os.getppid())
    assert not is_previous_incarnation(parent)  # alive, and the same process
    assert is_previous_incarnation({**parent, "pid_start": "0"})  # the pid was reused
    assert not is_previous_incarnation({**me, "host": "another-pod"})
    assert not is_previous_incarnation({**me, "boot_id": "another-boot"})
