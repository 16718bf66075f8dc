def gap_up_strategy(df):
    instances = []
    df_filtered = df[(df["gap_pct"] > 3.0) & (df["volume_ratio"] > 1.5)]

    for _, row in df_filtered.iterrows():
        instances.append(
            {
                "ticker": row["ticker"],
                "date": str(row["date"]),
                "signal": True,
                "gap_percent": row["gap_pct"],
                "message": f"{row['ticker']} gapped up {row['gap_pct']:.1f}%",
            }
        )

    return instances
