def sma_cross(df):
    # Enter when the 20-day average crosses above the 50-day one, exit when it crosses back.
    above = df["sma_20"] > df["sma_50"]
    ready = df["sma_50"].notna()
    before = above.groupby(df["ticker"]).shift(1, fill_value=False)
    was_ready = ready.groupby(df["ticker"]).shift(1, fill_value=False)
    out = df[["ticker", "date"]].copy()
    out["entry"] = ready & was_ready & above & ~before
    out["exit"] = ready & was_ready & ~above & before
    return out[out["entry"] | out["exit"]]
