"""Strategies written for a string ``ticker`` column, as source, for the strategy frame's tests.

Each one returns instances that depend on what a string idiom gives: run on the
loaded frame and on the frame a sandbox child builds, they must return the same thing.
"""

from __future__ import annotations

IDIOMS = {
    "equality": """
def s(df):
    rows = df[(df.ticker == "AAPL") | (df["ticker"] != "MSFT") & (df.close > 100)]
    return rows.tail(5)[["ticker", "date"]]
""",
    "str_methods": """
def s(df):
    rows = df[df["ticker"].str.startswith("I") | df["ticker"].str.contains("AP")]
    rows = rows.assign(lower=rows["ticker"].str.lower(), size=rows["ticker"].str.len(),
                       swapped=rows["ticker"].str.replace("A", "a"))
    return rows.tail(7)[["ticker", "date", "lower", "size", "swapped"]]
""",
    "groupby_on_a_slice": """
def s(df):
    part = df[df.ticker != "MSFT"]
    means = part.groupby("ticker")["close"].mean()
    sizes = part.groupby("ticker").size()
    last = part.groupby("ticker").tail(1)
    firsts = part.groupby("ticker", sort=False)["date"].first()
    return [{"ticker": t, "date": d, "mean": float(means[t]), "groups": len(means),
             "sizes": sizes.to_dict(), "ngroups": part.groupby("ticker").ngroups,
             "order": list(firsts.index), "applied": len(part.groupby("ticker").apply(len))}
            for t, d in zip(last.ticker, last.date)]
""",
    "groupby_transform_and_agg": """
def s(df):
    df = df[df.ticker.isin(["AAPL", "IBM"])]
    df = df.assign(sma=df.groupby("ticker")["close"].transform(lambda c: c.rolling(5).mean()),
                   rank=df.groupby("ticker").cumcount())
    agg = df.groupby(["ticker"]).agg(high=("close", "max"), n=("close", "size"))
    picked = df[(df.close > df.sma) & (df["rank"] % 17 == 0)]
    return [{"ticker": r.ticker, "date": r.date, "high": float(agg.loc[r.ticker, "high"]),
             "n": int(agg.loc[r.ticker, "n"]), "rows": len(agg)} for r in picked.itertuples()]
""",
    "merge_with_string_keys": """
def s(df):
    sectors = pd.DataFrame({"ticker": ["AAPL", "IBM", "MSFT", "ZZZ"],
                            "sector": ["tech", "it", "sw", "none"]})
    merged = df.merge(sectors, on="ticker", how="inner")
    left = sectors.merge(df.groupby("ticker").tail(1), on="ticker", how="left")
    return (merged.groupby("ticker").tail(2)[["ticker", "date", "sector"]]
            .assign(left_rows=len(left), missing=int(left["date"].isna().sum())))
""",
    "isin_sort_unique": """
def s(df):
    part = df[df.ticker.isin(["AAPL", "IBM", "NOPE"])]
    names = sorted(part["ticker"].unique())
    everyone = list(df.ticker.unique())
    last = part.groupby("ticker").tail(1).sort_values("ticker", ascending=False)
    both = part.sort_values(["ticker", "date"], ascending=[False, True]).head(3)
    return [{"ticker": t, "date": d, "names": names, "everyone": everyone,
             "n_unique": int(part.ticker.nunique()), "rank": names.index(t)}
            for t, d in zip(list(last.ticker) + list(both.ticker),
                            list(last.date) + list(both.date))]
""",
    "pivot": """
def s(df):
    part = df[df.ticker != "IBM"]
    wide = part.pivot(index="date", columns="ticker", values="close")
    table = part.pivot_table(index="date", columns="ticker", values="close")
    best = wide.pct_change().iloc[-1].idxmax()
    return [{"ticker": str(best), "date": wide.index[-1],
             "columns": [str(c) for c in wide.columns],
             "table_columns": [str(c) for c in table.columns],
             "cells": int(wide.notna().sum().sum())}]
""",
    "fstrings_and_dict_keys": """
def s(df):
    last = df.groupby("ticker").tail(1)
    closes = {t: float(c) for t, c in zip(last.ticker, last.close)}
    counts = df.ticker.value_counts()
    return [{"ticker": t, "date": d, "label": f"{t}:{c:.1f}", "closes": closes,
             "count": int(counts[t]), "upper": t.upper(), "plus": t + ".N",
             "first": df.ticker.iloc[0], "at": df.at[df.index[-1], "ticker"]}
            for t, d, c in zip(last.ticker, last.date, last.close)]
""",
    "numpy_sets_and_loops": """
def s(df):
    tickers = df["ticker"].to_numpy()
    seen = set(tickers.tolist())
    mask = (tickers == "IBM") & (df["gap_pct"].to_numpy() > 0)
    out = [{"ticker": t, "date": d} for t, d in zip(tickers[mask], df["date"][mask])]
    for row in df.tail(3).itertuples(index=False):
        out.append({"ticker": row.ticker, "date": row.date, "key": f"{row.ticker}:x",
                    "is_str": isinstance(row.ticker, str)})
    return out + [{"ticker": t, "date": df["date"].iloc[-1]} for t in sorted(seen)]
""",
    "map_replace_where_concat": """
def s(df):
    weights = {"AAPL": 0.5, "IBM": 0.25}
    last = df.groupby("ticker").tail(1).copy()
    last["weight"] = last["ticker"].map(weights).astype(float).fillna(0.1)
    last["short"] = last["ticker"].str.replace("AAPL", "A")
    last["kind"] = np.where(last.ticker == "IBM", "old", "new")
    extra = pd.DataFrame({"ticker": ["ZZZ"], "date": [df["date"].iloc[-1]]})
    both = pd.concat([last[["ticker", "date", "weight", "short", "kind"]], extra],
                     ignore_index=True)
    return both.fillna({"weight": 0.0, "short": "-", "kind": "-"})
""",
    "returned_frame_keeps_the_column": """
def s(df):
    out = df[df.close > df.close.shift(1)][["ticker", "date", "close"]].tail(6).copy()
    out["copy"] = out["ticker"]
    out["as_str"] = out["ticker"].astype(str)
    return out
""",
    "set_index_and_loc": """
def s(df):
    by = df.set_index("ticker")
    aapl = by.loc["AAPL"]
    last = df.groupby("ticker")["date"].max()
    return [{"ticker": "AAPL", "date": aapl["date"].iloc[-1], "rows": len(aapl),
             "last": {k: v for k, v in last.items()}}]
""",
}
