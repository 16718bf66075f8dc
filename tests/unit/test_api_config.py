"""The API's own settings and tokens (no server needed)."""

from __future__ import annotations

import hashlib

import pytest

from strategyq.api.auth import _match
from strategyq.api.config import ApiConfig, Scope, hash_token, is_loopback, new_token, parse_tokens
from strategyq.api.pages.render import Table, script_json
from strategyq.errors import ConfigError


def test_a_new_token_round_trips_through_its_entry() -> None:
    secret, entry = new_token("ci", Scope.WRITE)
    (token,) = parse_tokens(entry)
    assert token.name == "ci" and token.scope is Scope.WRITE
    assert token.digest == hashlib.sha256(secret.encode()).digest()
    assert secret not in entry
    assert _match((token,), secret) is token
    assert _match((token,), secret + "x") is None


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("ci:write:deadbeef", "name:scope:sha256"),
        ("ci:admin:" + hash_token("x"), "scope must be 'read' or 'write'"),
        ("ci:write:sha256:abc", "64 hex characters"),
        ("ci:write:md5:" + "0" * 64, "name:scope:sha256"),
    ],
)
def test_malformed_token_entries_say_how_to_fix_them(text: str, phrase: str) -> None:
    with pytest.raises(ConfigError, match=phrase):
        parse_tokens(text)


def test_entries_split_on_commas_and_whitespace() -> None:
    text = f"a:read:{hash_token('1')},\n  b:write:{hash_token('2')} c:read:{hash_token('3')}"
    assert [t.name for t in parse_tokens(text)] == ["a", "b", "c"]


def test_read_scope_cannot_write() -> None:
    (reader,) = parse_tokens(f"r:read:{hash_token('1')}")
    assert reader.allows(Scope.READ) and not reader.allows(Scope.WRITE)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert is_loopback(host)
    ApiConfig(host=host).check()


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "api.example.org", "::"])
def test_other_binds_need_tokens(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(ConfigError, match="needs tokens"):
        ApiConfig(host=host).check()
    ApiConfig(host=host, tokens=parse_tokens(f"a:read:{hash_token('1')}")).check()


def test_script_json_cannot_close_its_script_element() -> None:
    assert "</script>" not in script_json({"message": "</script><script>alert(1)</script>"})


def test_tables_sort_numbers_before_text_and_page() -> None:
    rows = [{"pnl": v} for v in (3.0, None, -1.0, 2.0)]
    table = Table("t", rows, {"t_sort": "pnl", "t_dir": "asc"}, size=2)
    assert [r["pnl"] for r in table.rows] == [-1.0, 2.0] and table.pages == 2
    second = Table("t", rows, {"t_sort": "pnl", "t_page": "2"}, size=2)
    assert [r["pnl"] for r in second.rows] == [3.0, None]


def test_equity_figure_has_drawdown_below_and_the_benchmark_beside() -> None:
    from strategyq.api.charts import drawdown, equity_figure

    data = {
        "equity_curve": {
            "dates": ["2024-01-01", "2024-01-02", "2024-01-03"],
            "values": [100.0, 110.0, 99.0],
            "benchmark": [100.0, 101.0, 102.0],
        }
    }
    figure = equity_figure(data)
    assert figure is not None
    names = [t["name"] for t in figure["data"]]
    assert names == ["equity", "benchmark", "drawdown %"]
    assert figure["data"][2]["yaxis"] == "y2"
    assert drawdown([100.0, 110.0, 99.0]) == [0.0, 0.0, -10.0]
    assert equity_figure({"equity_curve": {"dates": [], "values": []}}) is None
