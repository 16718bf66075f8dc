def momentum_screen(df):
    latest = df.sort_values("date").groupby("ticker").tail(1)
    strong = latest[(latest["close"] > latest["sma_50"]) & (latest["rsi"] < 80)]
    return [
        {
            "ticker": row.ticker,
            "date": str(row.date),
            "score": round(float(row.close / row.sma_50 - 1), 4),
            "signal": True,
            "rsi": round(float(row.rsi), 1),
            "message": f"{row.ticker} is {100 * (row.close / row.sma_50 - 1):.1f}% above its 50-day average",
        }
        for row in strong.itertuples()
    ]
