import pandas as pd


def sma_cross_grid(df, grid):
    # The moving-average crossover of sma_params.py, for a whole sweep grid in one call:
    # grid["fast"][i] and grid["slow"][i] are combination i's windows. Each window's
    # average is computed once and shared by every combination using it; each returned
    # row names its combination, so the sweep scores every combination exactly as if
    # sma_cross_strategy had been called with its params.
    close = df.groupby("ticker")["close"]
    windows = sorted(set(grid["fast"]) | set(grid["slow"]))
    means = {n: close.transform(lambda s, n=n: s.rolling(int(n)).mean()) for n in windows}
    parts = []
    for i, (fast_n, slow_n) in enumerate(zip(grid["fast"], grid["slow"], strict=True)):
        fast, slow = means[fast_n], means[slow_n]
        above = fast > slow
        ready = slow.notna()
        before = above.groupby(df["ticker"]).shift(1, fill_value=False)
        was_ready = ready.groupby(df["ticker"]).shift(1, fill_value=False)
        entry = ready & was_ready & above & ~before
        exit_ = ready & was_ready & ~above & before
        keep = entry | exit_
        out = df.loc[keep, ["ticker", "date"]]
        out["entry"] = entry[keep]
        out["exit"] = exit_[keep]
        out["combination"] = i
        parts.append(out)
    return pd.concat(parts, ignore_index=True)
