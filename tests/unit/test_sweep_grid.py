"""Sweep grids, the safe constraint parser, walk-forward folds and the ranking's tie rule."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategyq.errors import TaskValidationError
from strategyq.protocol.envelope import MalformedTask
from strategyq.protocol.task import parse_task
from strategyq.sweep.assemble import curve_metrics
from strategyq.sweep.constraint import parse_constraint
from strategyq.sweep.folds import MAX_FOLDS, WalkForward, parse_walk_forward, split
from strategyq.sweep.grid import expand
from strategyq.sweep.rank import best, heatmap, ranked


def test_grid_expands_in_product_order_first_parameter_slowest() -> None:
    grid = expand({"fast": [5, 10], "slow": [50, 100, 200]})
    assert grid.names == ("fast", "slow")
    assert grid.combinations == (
        {"fast": 5, "slow": 50}, {"fast": 5, "slow": 100}, {"fast": 5, "slow": 200},
        {"fast": 10, "slow": 50}, {"fast": 10, "slow": 100}, {"fast": 10, "slow": 200},
    )  # fmt: skip
    assert grid.expanded == 6 and len(grid) == 6


def test_explicit_combinations_and_constraints_filter() -> None:
    grid = expand([{"fast": 5, "slow": 50}, {"fast": 60, "slow": 50}], "fast < slow")
    assert grid.combinations == ({"fast": 5, "slow": 50},)
    grid = expand({"a": [1, 2, 3], "b": [1, 2, 3]}, "a < b and not (b - a) % 2 == 0 or a == 3")
    assert [(c["a"], c["b"]) for c in grid.combinations] == [(1, 2), (2, 3), (3, 1), (3, 2), (3, 3)]
    assert grid.expanded == 9
    assert expand({"x": [1, 2, 4]}, "2 * x <= 4 and -x < 0").combinations == ({"x": 1}, {"x": 2})
    assert expand({"m": ["a", "b"]}, "m == 'b'").combinations == ({"m": "b"},)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('x')", "call syntax is not allowed"),
        ("fast.real > 1", "attribute syntax is not allowed"),
        ("fast[0] > 1", "subscript syntax is not allowed"),
        ("lambda: 1", "lambda syntax is not allowed"),
        ("fast ** 99999 > 1", "the operator Pow is not allowed"),
        ("fast in (1, 2)", "the comparison In is not allowed"),
        ("speed < slow", "names 'speed', which is not a parameter"),
        ("fast <", "is not a valid expression"),
        ("", "must be a non-empty string"),
        ("x" * 600, "the limit is 500"),
    ],
)
def test_constraint_refuses_anything_but_comparisons(text: str, message: str) -> None:
    with pytest.raises(TaskValidationError, match=message):
        parse_constraint(text, ["fast", "slow"])


def test_constraint_errors_at_evaluation_are_clear() -> None:
    rule = parse_constraint("fast / slow > 1", ["fast", "slow"])
    with pytest.raises(TaskValidationError, match="cannot be evaluated"):
        rule.allows({"fast": 1, "slow": 0})
    text_times = parse_constraint("m * 1000000000 == 'x'", ["m"])
    with pytest.raises(TaskValidationError, match="numbers only"):
        text_times.allows({"m": "a"})


def test_grid_errors_say_what_to_fix() -> None:
    with pytest.raises(
        TaskValidationError, match=r"limit is 100 .*STRATEGYQ_SWEEP_MAX_COMBINATIONS"
    ):
        expand({"a": list(range(20)), "b": list(range(20))}, max_combinations=100)
    with pytest.raises(TaskValidationError, match="excludes every combination"):
        expand({"a": [1, 2]}, "a > 5")
    with pytest.raises(TaskValidationError, match="non-empty list"):
        expand({"a": []})
    with pytest.raises(TaskValidationError, match="identifiers"):
        expand({"not a name": [1]})
    with pytest.raises(TaskValidationError, match="lists a value twice"):
        expand({"a": [1, 1]})
    with pytest.raises(TaskValidationError, match="numbers, strings or booleans"):
        expand({"a": [[1]]})
    with pytest.raises(TaskValidationError, match="exactly the parameters"):
        expand([{"a": 1}, {"b": 2}])


def _sweep_message(**extra: object) -> dict[str, object]:
    args = {
        "strategy_code": "def s(df, params):\n    return []\n",
        "symbols": ["AAPL"],
        "start_date": "2010-01-01",
        "end_date": "2011-01-01",
        "param_grid": {"fast": [5, 10], "slow": [50]},
        **extra,
    }
    return {"task_id": "s1", "task_type": "sweep", "args": args}


def test_sweep_tasks_are_validated_at_the_edge() -> None:
    import orjson

    task = parse_task(orjson.dumps(_sweep_message(maximize="total_return", top_n=3)))
    assert task.task_type.value == "sweep"
    for extra, message in [
        ({"maximize": "luck"}, "args.maximize must name a metric"),
        ({"top_n": 0}, "args.top_n"),
        ({"walk_forward": {"train_sessions": 0, "test_sessions": 5}}, "train_sessions"),
        ({"heatmap_params": ["fast", "fast"]}, "heatmap_params"),
        ({"param_grid": {"a": list(range(200)), "b": list(range(200))}}, "40000 combinations"),
    ]:
        with pytest.raises(MalformedTask, match=message):
            parse_task(orjson.dumps(_sweep_message(**extra)))
    # The cap is the worker's setting.
    with pytest.raises(MalformedTask, match="limit is 1 "):
        parse_task(orjson.dumps(_sweep_message()), max_combinations=1)


SESSIONS = [dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(400)]


@given(
    n=st.integers(min_value=1, max_value=400),
    train=st.integers(min_value=1, max_value=120),
    test=st.integers(min_value=1, max_value=60),
    anchored=st.booleans(),
)
def test_walk_forward_folds_are_contiguous_and_never_train_on_test_data(
    n: int, train: int, test: int, anchored: bool
) -> None:
    sessions = SESSIONS[:n]
    spec = WalkForward(train, test, anchored)
    if n < train + test:
        with pytest.raises(TaskValidationError, match="needs at least"):
            split(sessions, spec)
        return
    if (n - train) // test > MAX_FOLDS:
        with pytest.raises(TaskValidationError, match="more than"):
            split(sessions, spec)
        return
    folds = split(sessions, spec)
    assert len(folds) == (n - train) // test
    for k, fold in enumerate(folds):
        train_at, test_at = fold.train, fold.test
        # The training window ends right before its test window starts: no overlap, no gap.
        assert train_at[1] == test_at[0]
        assert fold.train_end < fold.test_start
        assert test_at[1] - test_at[0] == test
        assert train_at[1] - train_at[0] == (test_at[0] if anchored else train)
        assert train_at[0] == 0 if anchored else train_at[0] == test_at[0] - train
        # Dates are the sessions at those indices.
        assert (fold.train_start, fold.train_end) == (
            sessions[train_at[0]],
            sessions[train_at[1] - 1],
        )
        assert (fold.test_start, fold.test_end) == (sessions[test_at[0]], sessions[test_at[1] - 1])
        # No training session of this fold is in this fold's test window, or any later one.
        later_tests = {i for f in folds[k:] for i in range(*f.test)}
        assert not later_tests & set(range(*train_at))
        if k:
            # Test windows tile the range: each starts where the previous one ended.
            assert folds[k - 1].test[1] == test_at[0]
    assert folds[-1].test[1] + test > n  # no whole fold left out


def test_walk_forward_argument_is_validated() -> None:
    assert parse_walk_forward({"train_sessions": 504, "test_sessions": 126}) == WalkForward(
        504, 126
    )
    with pytest.raises(TaskValidationError, match="must be an object"):
        parse_walk_forward([504, 126])
    with pytest.raises(TaskValidationError, match="anchored"):
        parse_walk_forward({"train_sessions": 5, "test_sessions": 5, "anchored": "yes"})


def _rows(values: list[float | None]) -> list[dict[str, object]]:
    return [{"index": i, "params": {"p": i}, "metrics": {"m": v}} for i, v in enumerate(values)]


def test_argmax_tie_rule_first_in_grid_order_and_undefined_last() -> None:
    rows = _rows([1.0, 3.0, None, 3.0, 2.0])
    assert best(rows, "m")["index"] == 1
    assert [r["index"] for r in ranked(rows, "m")] == [1, 3, 4, 0, 2]
    # Shuffled input, same answer: the rule depends on the index, not on arrival order.
    assert best(list(reversed(rows)), "m")["index"] == 1
    assert best(_rows([None, None]), "m")["index"] == 0


def test_heatmap_takes_the_best_over_other_parameters_and_leaves_holes_null() -> None:
    rows = [
        {"index": 0, "params": {"a": 1, "b": 10, "c": 0}, "metrics": {"m": 0.5}},
        {"index": 1, "params": {"a": 1, "b": 10, "c": 1}, "metrics": {"m": 0.7}},
        {"index": 2, "params": {"a": 2, "b": 10, "c": 0}, "metrics": {"m": None}},
        {"index": 3, "params": {"a": 2, "b": 20, "c": 0}, "metrics": {"m": -1.0}},
    ]
    out = heatmap(rows, "m", "a", "b", [1, 2], [10, 20])
    assert out["values"] == [[0.7, None], [None, -1.0]]
    assert (out["x"], out["y"], out["x_values"], out["y_values"]) == ("a", "b", [1, 2], [10, 20])


def test_stitched_curve_metrics() -> None:
    out = curve_metrics(["2020-01-01", "2021-01-01"], [110.0, 121.0], 100.0, 4, 3)
    assert out["total_return"] == pytest.approx(0.21)
    assert out["cagr"] == pytest.approx(1.21 ** (365.25 / 366) - 1)
    assert out["max_drawdown"] == 0.0
    assert out["win_rate"] == 0.75 and out["num_trades"] == 4
