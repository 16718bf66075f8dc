"""A single call's DataFrame travels as columns: the same rows, checks and errors as rows.

Each frame is encoded both ways — ``encode_result`` (columns when they
qualify) and ``encode_rows`` (one JSON object per row, the only form before) —
and what the parent decodes must be equal value for value and type for type;
frames whose columns do not qualify must take the rows form.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from strategyq import errors
from strategyq.sandbox import result


def _typed(value: Any) -> Any:
    """``value`` with every scalar's type beside it: 1 and 1.0 and True differ."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def _base(n: int = 40, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "ticker": rng.choice(["SYN0001", "SYN0002", "NOPE"], n),
            "date": pd.Timestamp("2024-01-02") + pd.to_timedelta(rng.integers(0, 300, n), "D"),
        }
    )


def _frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(7)
    base = _base()
    n = len(base)
    floats = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    floats[:4] = [np.nan, np.inf, -np.inf, -0.0]
    return {
        "ticker and date": base,
        "pass-through columns": base.assign(
            close=floats,
            f32=rng.standard_normal(n).astype(np.float32),
            f16=rng.standard_normal(n).astype(np.float16),
            shares=rng.integers(-(2**62), 2**62, n),
            small=rng.integers(0, 200, n).astype(np.uint8),
            big=np.full(n, 2**64 - 1, dtype=np.uint64),
            flag=rng.random(n) > 0.5,
            note=[f"row {i} é {{[" for i in range(n)],
        ),
        "entry and exit": base.assign(entry=rng.random(n) > 0.4, exit=rng.random(n) > 0.6),
        "categorical ticker": base.assign(ticker=base["ticker"].astype("category")),
        "string ticker": base.assign(ticker=base["ticker"].astype("string")),
        "date in microseconds": base.assign(date=base["date"].astype("datetime64[us]")),
        "date in seconds, with a time": base.assign(
            date=(base["date"] + pd.Timedelta(hours=15, seconds=7)).astype("datetime64[s]")
        ),
        "string dates": base.assign(date=base["date"].dt.strftime("%Y-%m-%d")),
        "odd keys": base.assign(**{'k{"[': 1.5, "é": "x", "": 2}),
        "duplicate rows": pd.concat([base, base.iloc[:5]], ignore_index=True),
        "one column": base[["ticker"]],
    }


def _fallbacks() -> dict[str, pd.DataFrame]:
    base = _base()
    n = len(base)
    with_nat = base.assign(date=base["date"].where(np.arange(n) % 3 != 0))
    return {
        "tz-aware dates": base.assign(date=base["date"].dt.tz_localize("UTC")),
        "dates with fractions of a second": base.assign(
            date=base["date"] + pd.Timedelta(milliseconds=5)
        ),
        "NaT": with_nat,
        "date objects": base.assign(date=[d.date() for d in base["date"]]),
        "None among strings": base.assign(note=["a", None] * (n // 2)),
        "NaN in a string column": base.assign(
            ticker=base["ticker"].astype("string").where(np.arange(n) % 4 != 0)
        ),
        "nullable integers": base.assign(shares=pd.array([1, None] * (n // 2), dtype="Int64")),
        "nullable booleans": base.assign(entry=pd.array([True, None] * (n // 2), dtype="boolean")),
        "mixed objects": base.assign(extra=[1, "a"] * (n // 2)),
        "nested values": base.assign(extra=[[1, 2]] * n),
        "integer column name": base.assign(**{"x": 1}).rename(columns={"x": 0}),
        "duplicate column names": pd.concat([base, base[["ticker"]]], axis=1),
        "no columns": pd.DataFrame(index=range(3)),
    }


@pytest.mark.parametrize("name", list(_frames()))
def test_a_qualifying_frame_travels_as_columns_and_decodes_to_the_same_rows(name: str) -> None:
    frame = _frames()[name]
    columns = result.encode_result(frame)
    rows = result.encode_rows(frame)
    assert columns[:1] == result.COLUMNS_TAG
    assert rows[:1] == result.RESULT_TAG
    got = result.decode(columns)
    want = result.decode(rows)
    assert _typed(got) == _typed(want)
    assert orjson.dumps(got) == orjson.dumps(want)
    kept = result.decode(columns, keep_columns=True)
    assert isinstance(kept, result.ColumnRun)
    assert _typed(kept.rows()) == _typed(want)


@pytest.mark.parametrize("name", list(_frames()))
def test_the_rows_size_and_containers_follow_exactly_from_the_columns(name: str) -> None:
    frame = _frames()[name]
    body = result.encode_result(frame)[1:]
    rows = result.encode_rows(frame)[1:]
    size, containers = result._as_rows(
        [str(c) for c in frame.columns], len(frame), len(body), result._count_containers(body)
    )
    assert (size, containers) == (len(rows), result._count_containers(rows))


@pytest.mark.parametrize("name", list(_fallbacks()))
def test_other_frames_take_the_rows_path_unchanged(name: str) -> None:
    frame = _fallbacks()[name]
    with pytest.warns(UserWarning) if name == "duplicate column names" else _nothing():
        try:
            want = result.encode_rows(frame)
        except errors.BadResult as exc:
            with pytest.raises(errors.BadResult) as info:
                result.encode_result(frame)
            assert str(info.value) == str(exc)
            return
    with pytest.warns(UserWarning) if name == "duplicate column names" else _nothing():
        got = result.encode_result(frame)
    assert got == want


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_lists_of_dicts_stay_rows() -> None:
    value = [{"ticker": "A", "date": dt.date(2024, 1, 2)}]
    assert result.encode_result(value) == result.encode_rows(value)
    assert result.encode_result(value)[:1] == result.RESULT_TAG


def test_a_frame_whose_rows_break_the_container_bound_fails_as_rows_did() -> None:
    """One short column: the rows would be a dict per 8 bytes; the same error either way."""
    frame = pd.DataFrame({"a": np.zeros(200_000, dtype=np.int64)})
    with pytest.raises(errors.BadResult) as want:
        result.encode_rows(frame)
    with pytest.raises(errors.BadResult) as got:
        result.encode_result(frame)
    assert str(got.value) == str(want.value)
    assert "dicts and lists" in str(got.value)


def test_a_frame_of_few_rows_and_many_columns_goes_as_rows() -> None:
    # Its columns document would be larger than its rows: the rows are sent.
    for frame in (pd.DataFrame({f"c{i}": [1] for i in range(50)}), _base().iloc[:0]):
        assert result.encode_result(frame) == result.encode_rows(frame)


def _rows_message(frame: pd.DataFrame, logs: str = "") -> bytes:
    return result.encode_rows(frame) + result.encode_logs(logs, False)


def test_the_answer_cap_counts_the_rows_a_columns_answer_stands_for() -> None:
    frame = _frames()["pass-through columns"]
    message = result.encode_result(frame) + result.encode_logs("hello\n", False)
    cap = len(_rows_message(frame, "hello\n"))
    assert len(message) < cap
    instances, logs = result.decode_answer(message, max_bytes=cap)
    assert instances == result.decode(result.encode_rows(frame))
    assert logs.text == "hello\n"
    with pytest.raises(errors.BadResult) as info:
        result.decode_answer(message, max_bytes=cap - 1)
    assert str(info.value) == str(result.too_large(cap - 1))
    # As a rows answer over the cap, cut off unread: no logs come with the error.
    assert not hasattr(info.value, "logs")


def test_a_forged_columns_answer_is_judged_by_its_rows_before_they_are_built() -> None:
    # What a child that skipped its own checks would send: 3 M rows of one small number.
    body = orjson.dumps({"columns": {"a": [0] * 3_000_000}})
    with pytest.raises(errors.BadResult, match="dicts and lists") as info:
        result.decode_answer(result.COLUMNS_TAG + body)
    assert "3000001 dicts and lists in 24000001 bytes" in str(info.value)


@pytest.mark.parametrize(
    "payload",
    [
        {"columns": {"a": [1, 2], "b": [1]}},
        {"columns": {"a": [[1]]}},
        {"columns": {"a": [{"x": 1}]}},
        {"columns": [1, 2]},
        {"columns": {"a": [1]}, "more": 1},
        {"columns": {"a": 1}},
    ],
)
def test_malformed_columns_answers_are_refused(payload: Any) -> None:
    with pytest.raises(errors.BadResult, match="malformed message"):
        result.decode_answer(result.COLUMNS_TAG + orjson.dumps(payload))
    with pytest.raises(errors.BadResult, match="malformed message"):
        result.decode_answer(result.COLUMNS_TAG + orjson.dumps([payload]))
