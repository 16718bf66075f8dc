def sma_cross_strategy(df, params):
    # A moving-average crossover whose two windows are parameters (a sweep varies them):
    # enter when the fast average crosses above the slow one, exit when it crosses back.
    fast_n = int(params.get("fast", 20))
    slow_n = int(params.get("slow", 50))
    close = df.groupby("ticker")["close"]
    fast = close.transform(lambda s: s.rolling(fast_n).mean())
    slow = close.transform(lambda s: s.rolling(slow_n).mean())
    above = fast > slow
    ready = slow.notna()
    before = above.groupby(df["ticker"]).shift(1, fill_value=False)
    was_ready = ready.groupby(df["ticker"]).shift(1, fill_value=False)
    out = df[["ticker", "date"]].copy()
    out["entry"] = ready & was_ready & above & ~before
    out["exit"] = ready & was_ready & ~above & before
    return out[out["entry"] | out["exit"]]
