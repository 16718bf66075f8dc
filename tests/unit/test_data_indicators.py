"""Each indicator against values worked out by hand on small frames."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData

Make = Callable[[pd.DataFrame], MarketData]


def _frame(close: list[float], **cols: list[float]) -> pd.DataFrame:
    n = len(close)
    data = {
        "ticker": ["TST"] * n,
        "date": pd.bdate_range("2020-01-01", periods=n),
        "open": cols.get("open", close),
        "high": cols.get("high", [c + 1 for c in close]),
        "low": cols.get("low", [c - 1 for c in close]),
        "close": close,
        "volume": cols.get("volume", [1000.0] * n),
    }
    if "adj_factor" in cols:
        data["adj_factor"] = cols["adj_factor"]
    return pd.DataFrame(data)


def _load(make: Make, frame: pd.DataFrame, **kw: object) -> pd.DataFrame:
    return make(frame).load(["TST"], None, None, **kw).frame  # type: ignore[arg-type]


FIVE = _frame(
    [10, 11, 10, 12, 13],
    open=[10, 10.5, 11.5, 10, 12.5],
    high=[10.5, 11.5, 12, 12.5, 13.5],
    low=[9.5, 10, 9.5, 9.5, 12],
    volume=[100, 200, 300, 400, 500],
)


def test_returns_and_log_returns(data_market: Make) -> None:
    f = _load(data_market, FIVE)
    assert math.isnan(f["returns"][0]) and math.isnan(f["log_returns"][0])
    assert f["returns"][1] == pytest.approx(0.1)
    assert f["returns"][2] == pytest.approx(-1 / 11)
    assert f["log_returns"][1] == pytest.approx(math.log(1.1))
    assert f["log_returns"][3] == pytest.approx(math.log(1.2))


def test_gap_and_gap_pct(data_market: Make) -> None:
    f = _load(data_market, FIVE)
    assert math.isnan(f["gap"][0]) and math.isnan(f["gap_pct"][0])
    assert f["gap"][2] == pytest.approx(0.5)  # open 11.5 after close 11
    assert f["gap_pct"][2] == pytest.approx(0.5 / 11 * 100)
    assert f["gap_pct"][1] == pytest.approx(5.0)  # open 10.5 after close 10
    assert f["gap_pct"][3] == pytest.approx(0.0)


def test_true_range(data_market: Make) -> None:
    f = _load(data_market, FIVE)
    assert f["true_range"].tolist() == pytest.approx([1.0, 1.5, 2.5, 3.0, 1.5])


def test_sma_5_needs_five_sessions(data_market: Make) -> None:
    f = _load(data_market, FIVE)
    assert f["sma_5"][:4].isna().all()
    assert f["sma_5"][4] == pytest.approx(56 / 5)


def test_ema_and_macd(data_market: Make) -> None:
    f = _load(data_market, FIVE)
    a12, a26 = 2 / 13, 2 / 27
    e12_1 = 10 + a12 * (11 - 10)
    e12_2 = e12_1 + a12 * (10 - e12_1)
    e26_1 = 10 + a26 * (11 - 10)
    assert f["ema_12"][0] == 10
    assert f["ema_12"][1] == pytest.approx(e12_1)
    assert f["ema_12"][2] == pytest.approx(e12_2)
    assert f["ema_26"][1] == pytest.approx(e26_1)
    macd_1 = e12_1 - e26_1
    assert f["macd"][0] == 0 and f["macd"][1] == pytest.approx(macd_1)
    assert f["macd_signal"][1] == pytest.approx(0.2 * macd_1)  # alpha 2/(9+1), start 0
    assert f["macd_histogram"][1] == pytest.approx(0.8 * macd_1)


def _wilder_frame() -> pd.DataFrame:
    # Changes alternate +1 / -0.5 for 14 sessions, then +1; the half-range a_t cycles
    # 1, 1.5, 2 so the true range is 2*a_t = 2, 3, 4, 2, 3, 4, ...
    close = [100.0]
    for i in range(15):
        close.append(close[-1] + (1.0 if i % 2 == 0 else -0.5))
    close[-1] = close[-2] + 1.0
    half = [1.0 + 0.5 * (t % 3) for t in range(len(close))]
    return _frame(
        close,
        open=[close[0], *close[:-1]],
        high=[c + a for c, a in zip(close, half, strict=True)],
        low=[c - a for c, a in zip(close, half, strict=True)],
    )


def test_rsi_wilder(data_market: Make) -> None:
    f = _load(data_market, _wilder_frame())
    assert f["rsi"][:14].isna().all()
    # avg gain 7/14 = 0.5, avg loss 3.5/14 = 0.25
    assert f["rsi"][14] == pytest.approx(100 - 100 / (1 + 0.5 / 0.25))
    gain, loss = (0.5 * 13 + 1) / 14, (0.25 * 13 + 0) / 14
    assert f["rsi"][15] == pytest.approx(100 - 100 / (1 + gain / loss))


def test_atr_wilder(data_market: Make) -> None:
    f = _load(data_market, _wilder_frame())
    assert f["true_range"][:6].tolist() == pytest.approx([2, 3, 4, 2, 3, 4])
    assert f["atr"][:13].isna().all()
    first = (4 * 9 + 2 + 3) / 14  # true ranges of sessions 0..13
    assert f["atr"][13] == pytest.approx(first)
    assert f["atr"][14] == pytest.approx((first * 13 + 4) / 14)


def test_rsi_is_100_with_only_gains(data_market: Make) -> None:
    rising = _load(data_market, _frame([float(10 + t) for t in range(16)]))
    assert rising["rsi"][15] == pytest.approx(100.0)


def _linear(n: int) -> pd.DataFrame:
    close = [100.0 + t for t in range(n)]
    return _frame(close, volume=[100.0 * (t + 1) for t in range(n)])


def test_long_smas_on_a_straight_line(data_market: Make) -> None:
    f = _load(data_market, _linear(210))
    for n in (5, 10, 20, 50, 200):
        col = f[f"sma_{n}"]
        assert col[: n - 1].isna().all()
        # the mean of 100+t-n+1 .. 100+t is 100 + t - (n-1)/2
        assert col[n - 1] == pytest.approx(100 + (n - 1) - (n - 1) / 2)
        assert col[209] == pytest.approx(100 + 209 - (n - 1) / 2)


def test_volume_sma_and_ratio(data_market: Make) -> None:
    f = _load(data_market, _linear(25))
    assert f["volume_sma"][:19].isna().all()
    assert f["volume_sma"][19] == pytest.approx(1050.0)  # 100 * mean(1..20)
    assert f["volume_ratio"][19] == pytest.approx(2000 / 1050)
    assert f["volume_sma"][24] == pytest.approx(100 * statistics.mean(range(6, 26)))


def test_bollinger_bands(data_market: Make) -> None:
    f = _load(data_market, _linear(25))
    sd = math.sqrt((20**2 - 1) / 12)  # population std of 20 consecutive integers
    assert f["bb_middle"][18] != f["bb_middle"][18]  # NaN before 20 sessions
    assert f["bb_middle"][19] == pytest.approx(109.5)
    assert f["bb_upper"][19] == pytest.approx(109.5 + 2 * sd)
    assert f["bb_lower"][19] == pytest.approx(109.5 - 2 * sd)
    assert f["bb_width"][19] == pytest.approx(4 * sd / 109.5)
    assert f["bb_position"][19] == pytest.approx((119 - (109.5 - 2 * sd)) / (4 * sd))
    window = [100.0 + t for t in range(4, 24)]
    assert f["bb_upper"][23] == pytest.approx(
        statistics.mean(window) + 2 * statistics.pstdev(window)
    )


def test_price_position(data_market: Make) -> None:
    f = _load(data_market, _linear(25))
    assert f["price_position"][:19].isna().all()
    # lows are close-1, highs close+1: lowest low 99 (t=0), highest high 120 (t=19)
    assert f["price_position"][19] == pytest.approx((119 - 99) / (120 - 99))
    assert f["price_position"][24] == pytest.approx((124 - 104) / (125 - 104))


def test_flat_prices_give_nan_not_infinity(data_market: Make) -> None:
    f = _load(data_market, _frame([50.0] * 30, high=[50.0] * 30, low=[50.0] * 30))
    assert f["rsi"][20] == 50.0
    assert math.isnan(f["bb_position"][25]) and math.isnan(f["price_position"][25])
    numeric = f.drop(columns=["ticker", "date"]).to_numpy()
    assert not np.isinf(numeric).any()


def test_adjustment_scales_prices_and_volume(data_market: Make) -> None:
    frame = _frame(
        [200.0, 100.0], open=[200.0, 100.0], high=[210.0, 105.0], low=[190.0, 95.0],
        volume=[1000.0, 2000.0], adj_factor=[0.5, 1.0],
    )  # fmt: skip
    market = data_market(frame)
    adjusted = market.load(["TST"], None, None).frame
    raw = market.load(["TST"], None, None, adjusted=False).frame
    assert adjusted["close"].tolist() == [100.0, 100.0]
    assert adjusted["high"][0] == 105.0 and adjusted["low"][0] == 95.0
    assert adjusted["volume"].tolist() == [2000.0, 2000.0]
    assert adjusted["returns"][1] == 0.0
    assert raw["close"].tolist() == [200.0, 100.0]
    assert raw["returns"][1] == pytest.approx(-0.5)
    assert raw["adj_factor"].tolist() == [0.5, 1.0]


def test_tickers_do_not_share_windows(data_market: Make) -> None:
    one = _frame([10.0, 11.0, 12.0])
    two = _frame([50.0, 40.0]).assign(ticker="TWO")
    f = data_market(pd.concat([one, two])).load(["TST", "TWO"], None, None).frame
    assert f["ticker"].tolist() == ["TST", "TST", "TST", "TWO", "TWO"]
    assert math.isnan(f["returns"][3])  # first TWO row has no previous close
    assert f["returns"][4] == pytest.approx(-0.2)
    assert f["ema_12"][3] == 50.0


def _pstdev_windows(close: np.ndarray, n: int = 20) -> np.ndarray:
    """Population σ of each 20-session window, with math.fsum (exact to rounding)."""
    out = []
    for t in range(n - 1, len(close)):
        window = close[t - n + 1 : t + 1].tolist()
        mean = math.fsum(window) / n
        out.append(math.sqrt(math.fsum((v - mean) ** 2 for v in window) / n))
    return np.array(out)


@pytest.mark.parametrize(
    "shape",
    [
        "drifts up then sits at 50 ± 0.02",
        "climbs 1 → 1000 then moves ± 0.01",
    ],
)
def test_bollinger_sigma_is_numerically_stable(data_market: Make, shape: str) -> None:
    rng = np.random.default_rng(5)
    if shape.startswith("drifts"):
        close = np.concatenate([np.linspace(10, 50, 300), 50 + rng.choice([-0.02, 0.02], 700)])
    else:
        close = np.concatenate([np.linspace(1, 1000, 1000), 1000 + rng.choice([-0.01, 0.01], 1500)])
    f = _load(data_market, _frame(close.tolist()))
    sigma = (f["bb_upper"] - f["bb_middle"]).to_numpy()[19:] / 2
    expected = _pstdev_windows(close)
    # The band's σ is as exact as the middle it is added to allows (|middle|·1e-15).
    middle = f["bb_middle"].to_numpy()[19:]
    assert np.all(np.abs(sigma - expected) <= 1e-9 * expected + 4e-16 * np.abs(middle))
    flat = slice(len(close) - 400, None)
    assert np.max(np.abs(sigma[flat] - expected[flat]) / expected[flat]) < 1e-9
