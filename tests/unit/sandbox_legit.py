"""A corpus of legitimate strategies, the kind users write on their first days.

Every one must complete through the fork server, with the policy on and off:
reshaping, windows, groupby, resample, joins, statistics, date formatting and
parsing, numpy, math/statistics, helper functions, try/except. The frame is
what the sandbox host loads for the request: bars plus indicators, one row
per (ticker, session). The corpus is also what the seccomp allow-list is
measured on (``python -m tools.measure_syscalls``).
"""

from __future__ import annotations

from dataclasses import dataclass

from tests.unit.sandbox_legit_python import cases as python_cases


@dataclass(frozen=True)
class Legit:
    name: str
    code: str


def _s(body: str, prelude: str = "", helpers: str = "") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{prelude}\n{helpers}\ndef strategy(df):\n{lines}\n"


def _rows(expr: str) -> str:
    # The last line of many cases: a Series keyed by ticker into instances.
    return f"s = {expr}\nreturn [{{'ticker': str(t), 'value': float(v)}} for t, v in s.items()]"


_PIVOT = "p = df.pivot(index='date', columns='ticker', values='close')\n"

_BODIES: dict[str, str] = {
    # -- reshaping
    "pivot_last": _PIVOT + _rows("p.iloc[-1]"),
    "pivot_returns": _PIVOT + _rows("p.pct_change(fill_method=None).mean()"),
    "pivot_table_mean": _rows(
        "df.pivot_table(index='ticker', values='volume', aggfunc='mean')['volume']"
    ),
    "pivot_table_month": (
        "d = df.assign(m=df['date'].dt.month)\n"
        "t = d.pivot_table(index='ticker', columns='m', values='close', aggfunc='last')\n"
        + _rows("t.mean(axis=1)")
    ),
    "stack_unstack": (
        _PIVOT + "long = p.stack()\nwide = long.unstack()\n" + _rows("wide.iloc[-1]")
    ),
    "unstack_groupby": (
        "g = df.groupby(['date', 'ticker'])['close'].last().unstack()\n" + _rows("g.max()")
    ),
    "melt_back": (
        _PIVOT
        + "m = p.reset_index().melt(id_vars='date', var_name='tk', value_name='px')\n"
        + _rows("m.groupby('tk')['px'].mean()")
    ),
    "crosstab_up_days": (
        "up = df['close'] > df['open']\n"
        "c = pd.crosstab(df['ticker'], up)\n" + _rows("c[True] / c.sum(axis=1)")
    ),
    "crosstab_normalize": (
        "c = pd.crosstab(df['ticker'], df['rsi'] > 50, normalize='index')\n"
        + _rows("c.iloc[:, -1]")
    ),
    "wide_to_long_corr": _PIVOT + _rows("p.pct_change(fill_method=None).corr().mean()"),
    "transpose_describe": _rows("df.groupby('ticker')['close'].describe().T.loc['mean']"),
    # -- windows
    "rolling_mean": _rows(
        "df.groupby('ticker')['close'].apply(lambda s: s.rolling(5).mean().iloc[-1])"
    ),
    "rolling_apply_raw": _rows(
        "df.groupby('ticker')['close'].apply("
        "lambda s: s.rolling(10).apply(lambda w: w.max() - w.min(), raw=True).iloc[-1])"
    ),
    "rolling_apply_series": _rows(
        "df.groupby('ticker')['close'].apply("
        "lambda s: s.rolling(5).apply(lambda w: w.iloc[-1] / w.iloc[0]).iloc[-1])"
    ),
    "rolling_std_z": (
        "g = df.groupby('ticker')['close']\n"
        "z = (df['close'] - g.transform(lambda s: s.rolling(20).mean())) / "
        "g.transform(lambda s: s.rolling(20).std())\n" + _rows("z.groupby(df['ticker']).last()")
    ),
    "expanding_max_drawdown": _rows(
        "df.groupby('ticker')['close'].apply(lambda s: (s / s.expanding().max() - 1).min())"
    ),
    "ewm_crossover": (
        "g = df.groupby('ticker')['close']\n"
        "fast = g.transform(lambda s: s.ewm(span=5).mean())\n"
        "slow = g.transform(lambda s: s.ewm(span=20, adjust=False).mean())\n"
        + _rows("(fast - slow).groupby(df['ticker']).last()")
    ),
    "rolling_corr": (
        "out = []\nfor t, g in df.groupby('ticker'):\n"
        "    c = g['close'].rolling(20).corr(g['volume'])\n"
        "    out.append({'ticker': t, 'corr': c.iloc[-1]})\nreturn out"
    ),
    "rolling_quantile": _rows(
        "df.groupby('ticker')['close'].apply(lambda s: s.rolling(20).quantile(0.9).iloc[-1])"
    ),
    "rolling_window_time": (
        "d = df.set_index('date')\n"
        + _rows("d.groupby('ticker')['close'].apply(lambda s: s.rolling('30D').mean().iloc[-1])")
    ),
    "ewm_std": _rows(
        "df.groupby('ticker')['returns'].apply(lambda s: s.ewm(halflife=10).std().iloc[-1])"
    ),
    # -- groupby
    "groupby_transform_rank": (
        "r = df.groupby('date')['returns'].rank(pct=True)\n"
        + _rows("r.groupby(df['ticker']).mean()")
    ),
    "groupby_apply_frame": (
        "def _last(g):\n    return g['close'].iloc[-1] / g['close'].iloc[0] - 1\n"
        + _rows("df.groupby('ticker').apply(_last)")
    ),
    "groupby_agg_list": (
        "a = df.groupby('ticker')['close'].agg(['mean', 'std', 'min', 'max'])\n"
        + _rows("a['std'] / a['mean']")
    ),
    "groupby_named_agg": (
        "a = df.groupby('ticker').agg(hi=('high', 'max'), lo=('low', 'min'), n=('close', 'size'))\n"
        + _rows("(a['hi'] - a['lo']) / a['n']")
    ),
    "groupby_dict_agg": (
        "a = df.groupby('ticker').agg({'close': 'last', 'volume': 'sum'})\n"
        + _rows("a['close'] * a['volume']")
    ),
    "groupby_transform_demean": (
        "d = df['returns'] - df.groupby('date')['returns'].transform('mean')\n"
        + _rows("d.groupby(df['ticker']).sum()")
    ),
    "groupby_cumsum": _rows(
        "df.groupby('ticker')['returns'].cumsum().groupby(df['ticker']).last()"
    ),
    "groupby_shift_signal": (
        "prev = df.groupby('ticker')['close'].shift(1)\n"
        "hits = df[(df['close'] > prev * 1.02)]\n"
        "return [{'ticker': r.ticker, 'date': r.date, 'signal': True} for r in hits.itertuples()]"
    ),
    "groupby_nth_head": _rows("df.groupby('ticker').head(3).groupby('ticker')['close'].mean()"),
    "groupby_filter": (
        "f = df.groupby('ticker').filter(lambda g: g['volume'].mean() > 0)\n"
        + _rows("f.groupby('ticker')['close'].last()")
    ),
    "groupby_multiple_keys": (
        "d = df.assign(y=df['date'].dt.year, up=df['returns'] > 0)\n"
        "a = d.groupby(['ticker', 'y', 'up'])['returns'].mean().unstack('up')\n"
        + _rows("a.groupby(level=0).mean().iloc[:, 0]")
    ),
    "groupby_idxmax": (
        "i = df.groupby('ticker')['volume'].idxmax()\n"
        "return [{'ticker': df.loc[j, 'ticker'], 'date': df.loc[j, 'date']} for j in i]"
    ),
    "groupby_pct_change": _rows(
        "df.groupby('ticker')['close'].pct_change(5).groupby(df['ticker']).last()"
    ),
    "groupby_diff_sign": _rows(
        "np.sign(df.groupby('ticker')['close'].diff()).groupby(df['ticker']).sum()"
    ),
    "groupby_ngroup_cumcount": (
        "n = df.groupby('ticker').cumcount()\n" + _rows("n.groupby(df['ticker']).max()")
    ),
    # -- resample
    "resample_weekly": (
        "d = df.set_index('date')\n"
        "w = d.groupby('ticker')['close'].resample('W').last()\n"
        + _rows("w.groupby(level=0).mean()")
    ),
    "resample_month_ohlc": (
        "d = df[df['ticker'] == df['ticker'].iloc[0]].set_index('date')\n"
        "m = d['close'].resample('ME').ohlc()\n"
        "return [{'ticker': df['ticker'].iloc[0], 'range': float((m['high'] - m['low']).mean())}]"
    ),
    "resample_agg_dict": (
        "d = df[df['ticker'] == df['ticker'].iloc[0]].set_index('date')\n"
        "m = d.resample('QE').agg({'close': 'last', 'volume': 'sum'})\n"
        "return [{'ticker': df['ticker'].iloc[0], 'q': len(m)}]"
    ),
    "asfreq_fill": (
        "d = df[df['ticker'] == df['ticker'].iloc[0]].set_index('date')['close']\n"
        "f = d.asfreq('D').ffill()\n"
        "return [{'ticker': df['ticker'].iloc[0], 'days': len(f)}]"
    ),
    # -- joins
    "merge_on_keys": (
        "last = df.groupby('ticker', as_index=False)['close'].last()\n"
        "mean = df.groupby('ticker', as_index=False)['close'].mean()\n"
        "m = last.merge(mean, on='ticker', suffixes=('_last', '_mean'))\n"
        "return [{'ticker': r.ticker, 'x': r.close_last / r.close_mean} for r in m.itertuples()]"
    ),
    "merge_asof_events": (
        "events = df[['date']].drop_duplicates().iloc[::7].rename(columns={'date': 'when'})\n"
        "events = events.assign(when=events['when'] + pd.Timedelta(hours=12))\n"
        "one = df[df['ticker'] == df['ticker'].iloc[0]].sort_values('date')\n"
        "m = pd.merge_asof(events.sort_values('when'), one, left_on='when', right_on='date')\n"
        "return [{'ticker': one['ticker'].iloc[0], 'n': int(m['close'].notna().sum())}]"
    ),
    "concat_frames": (
        "a = df[df['returns'] > 0].assign(side='up')\n"
        "b = df[df['returns'] <= 0].assign(side='down')\n"
        "c = pd.concat([a, b], ignore_index=True)\n"
        + _rows("c.groupby('ticker')['side'].apply(lambda s: (s == 'up').mean())")
    ),
    "join_index": (
        "a = df.groupby('ticker')['close'].last().to_frame('c')\n"
        "b = df.groupby('ticker')['volume'].mean().to_frame('v')\n"
        + _rows("a.join(b, how='inner')['c']")
    ),
    "concat_axis1": (
        "a = df.groupby('ticker')['close'].max()\nb = df.groupby('ticker')['close'].min()\n"
        "both = pd.concat([a, b], axis=1, keys=['hi', 'lo'])\n" + _rows("both['hi'] - both['lo']")
    ),
    "merge_indicator": (
        "a = df[['ticker', 'date']].iloc[:50]\nb = df[['ticker', 'date', 'close']].iloc[25:75]\n"
        "m = a.merge(b, how='outer', indicator=True)\n"
        "return [{'ticker': 'ALL', 'both': int((m['_merge'] == 'both').sum())}]"
    ),
    # -- statistics
    "describe_frame": (
        "d = df[['close', 'volume']].describe()\n"
        "return [{'ticker': 'ALL', 'mean': d.loc['mean', 'close'], 'q75': d.loc['75%', 'volume']}]"
    ),
    "describe_series_percentiles": (
        "d = df['returns'].describe(percentiles=[0.05, 0.95])\n"
        "return [{'ticker': 'ALL', 'p5': d['5%'], 'p95': d['95%']}]"
    ),
    "quantile_threshold": (
        "q = df['volume_ratio'].quantile(0.9)\nhits = df[df['volume_ratio'] > q]\n"
        "return [{'ticker': r.ticker, 'date': r.date} for r in hits.itertuples()]"
    ),
    "value_counts": (
        "v = (df['returns'] > 0).value_counts(normalize=True)\n"
        "return [{'ticker': 'ALL', 'up': float(v.get(True, 0.0))}]"
    ),
    "cut_buckets": (
        "b = pd.cut(df['rsi'], bins=[0, 30, 70, 100], labels=['low', 'mid', 'high'])\n"
        "c = b.value_counts()\nreturn [{'ticker': 'ALL', 'low': int(c['low']), 'high': int(c['high'])}]"
    ),
    "qcut_deciles": (
        "d = df.dropna(subset=['returns']).copy()\n"
        "d['dec'] = pd.qcut(d['returns'], 10, labels=False, duplicates='drop')\n"
        + _rows("d.groupby('ticker')['dec'].mean()")
    ),
    "corr_matrix": (
        "c = df[['close', 'volume', 'rsi', 'atr']].corr()\n"
        "return [{'ticker': 'ALL', 'cv': c.loc['close', 'volume']}]"
    ),
    "cov_skew_kurt": (
        "r = df['returns'].dropna()\n"
        "return [{'ticker': 'ALL', 'skew': r.skew(), 'kurt': r.kurt(), 'var': r.var()}]"
    ),
    "nlargest": (
        "last = df.sort_values('date').groupby('ticker').tail(1)\n"
        "top = last.nlargest(3, 'rsi')\n"
        "return [{'ticker': r.ticker, 'score': r.rsi} for r in top.itertuples()]"
    ),
    "rank_cross_section": (
        "d = df.copy()\nd['r'] = d.groupby('date')['close'].rank(ascending=False, method='min')\n"
        "hits = d[d['r'] == 1]\nreturn [{'ticker': r.ticker, 'date': r.date} for r in hits.itertuples()]"
    ),
    "mode_median": _rows("df.groupby('ticker')['volume'].median()"),
    "zscore_clip": (
        "z = (df['returns'] - df['returns'].mean()) / df['returns'].std()\n"
        + _rows("z.clip(-3, 3).groupby(df['ticker']).mean()")
    ),
    "interpolate_fill": (
        "c = df['close'].where(df.index % 7 != 0)\n"
        + _rows("c.interpolate().groupby(df['ticker']).mean()")
    ),
    "get_dummies": (
        "d = pd.get_dummies(df['ticker'])\n"
        "return [{'ticker': str(c), 'n': int(d[c].sum())} for c in d.columns]"
    ),
    # -- dates
    "timestamp_strftime": (
        "last = df['date'].max()\n"
        "return [{'ticker': 'ALL', 'message': last.strftime('%A %d %B %Y')}]"
    ),
    "dt_strftime": (
        "d = df['date'].dt.strftime('%Y-%m')\n"
        "return [{'ticker': 'ALL', 'months': int(d.nunique())}]"
    ),
    "datetime_strptime": (
        "import datetime\n"
        "cut = datetime.datetime.strptime('2024-06-01', '%Y-%m-%d')\n"
        "hits = df[df['date'] >= cut]\nreturn [{'ticker': 'ALL', 'n': len(hits)}]"
    ),
    "date_today": (
        "import datetime\ntoday = datetime.date.today()\n"
        "return [{'ticker': 'ALL', 'old': (today - df['date'].max().date()).days > 0}]"
    ),
    "datetime_now_utc": (
        "import datetime\nnow = datetime.datetime.now(datetime.timezone.utc)\n"
        "return [{'ticker': 'ALL', 'year': now.year}]"
    ),
    "timedelta_window": (
        "cut = df['date'].max() - pd.Timedelta(days=30)\n"
        + _rows("df[df['date'] > cut].groupby('ticker')['returns'].sum()")
    ),
    "offsets_month_end": (
        "me = df['date'] + pd.offsets.MonthEnd(0)\n"
        "return [{'ticker': 'ALL', 'month_ends': int(me.nunique())}]"
    ),
    "offsets_bday": (
        "nxt = df['date'].max() + pd.offsets.BDay(3)\n"
        "return [{'ticker': 'ALL', 'next': nxt.isoformat()}]"
    ),
    "date_offset": (
        "start = df['date'].max() - pd.DateOffset(months=3)\n"
        + _rows("df[df['date'] >= start].groupby('ticker')['close'].mean()")
    ),
    "to_datetime_format": (
        "s = pd.to_datetime(df['date'].dt.strftime('%d/%m/%Y'), format='%d/%m/%Y')\n"
        "return [{'ticker': 'ALL', 'same': bool((s == df['date']).all())}]"
    ),
    "to_datetime_strings": (
        "s = pd.to_datetime(['2024-01-05', '2024-02-10T10:00:00', '2024-03-01'], format='ISO8601')\n"
        "return [{'ticker': 'ALL', 'days': int((s[-1] - s[0]).days)}]"
    ),
    "day_name_weekday": (
        "d = df.assign(wd=df['date'].dt.day_name())\n"
        "m = d.groupby('wd')['returns'].mean()\n"
        "return [{'ticker': 'ALL', 'best': str(m.idxmax())}]"
    ),
    "isocalendar_week": (
        "w = df['date'].dt.isocalendar().week\nreturn [{'ticker': 'ALL', 'weeks': int(w.nunique())}]"
    ),
    "date_range_calendar": (
        "r = pd.bdate_range(df['date'].min(), df['date'].max())\n"
        "missing = r.difference(pd.DatetimeIndex(df['date'].unique()))\n"
        "return [{'ticker': 'ALL', 'missing': len(missing)}]"
    ),
    "period_month": (
        "p = df['date'].dt.to_period('M')\n" + _rows("df.groupby(p)['close'].mean().iloc[-3:]")
    ),
    "tz_localize_utc": (
        "d = df['date'].dt.tz_localize('UTC')\n"
        "return [{'ticker': 'ALL', 'last': d.max().isoformat()}]"
    ),
    "date_isoformat_fromisoformat": (
        "import datetime\nd = datetime.date.fromisoformat('2024-03-15')\n"
        "return [{'ticker': 'ALL', 'date': d, 'iso': d.isoformat(), 'wd': d.strftime('%a')}]"
    ),
    # -- numpy
    "np_polyfit_trend": (
        "out = []\nfor t, g in df.groupby('ticker'):\n"
        "    y = g['close'].to_numpy()[-30:]\n"
        "    slope, _i = np.polyfit(np.arange(len(y)), y, 1)\n"
        "    out.append({'ticker': t, 'score': float(slope)})\nreturn out"
    ),
    "np_percentile": (
        "p = np.percentile(df['returns'].dropna(), [5, 50, 95])\n"
        "return [{'ticker': 'ALL', 'p': p.tolist()}]"
    ),
    "np_random_generator": (
        "rng = np.random.default_rng(42)\npicks = rng.choice(df['ticker'].unique(), 2, replace=False)\n"
        "noise = rng.normal(0, 1, 10)\n"
        "return [{'ticker': str(t), 'n': float(noise.mean())} for t in picks]"
    ),
    "np_select": (
        "cond = [df['rsi'] < 30, df['rsi'] > 70]\n"
        "d = df.assign(sig=np.select(cond, ['buy', 'sell'], default='hold'))\n"
        "hits = d[d['sig'] == 'buy']\n"
        "return [{'ticker': r.ticker, 'date': r.date, 'direction': 'long'} for r in hits.itertuples()]"
    ),
    "np_where": (
        "d = df.assign(pos=np.where(df['close'] > df['sma_20'], 1, -1))\n"
        + _rows("d.groupby('ticker')['pos'].mean()")
    ),
    "np_linalg_lstsq": (
        "x = df[['volume_ratio', 'rsi']].fillna(0).to_numpy()\n"
        "y = df['returns'].fillna(0).to_numpy()\n"
        "a = np.column_stack([x, np.ones(len(x))])\n"
        "coef, _r, _k, _s = np.linalg.lstsq(a, y, rcond=None)\n"
        "return [{'ticker': 'ALL', 'coef': coef.tolist()}]"
    ),
    "np_cov_corrcoef": (
        "m = np.corrcoef(df['close'], df['volume'])\nc = np.cov(df['close'], df['open'])\n"
        "return [{'ticker': 'ALL', 'r': float(m[0, 1]), 'c': float(c[0, 1])}]"
    ),
    "np_histogram_digitize": (
        "h, edges = np.histogram(df['rsi'].dropna(), bins=5)\n"
        "d = np.digitize(df['rsi'].fillna(50), edges)\n"
        "return [{'ticker': 'ALL', 'h': h.tolist(), 'd': int(d.max())}]"
    ),
    "np_convolve_cumprod": (
        "r = df['returns'].fillna(0).to_numpy()\nsm = np.convolve(r, np.ones(5) / 5, mode='valid')\n"
        "eq = np.cumprod(1 + r)\nreturn [{'ticker': 'ALL', 'sm': float(sm[-1]), 'eq': float(eq[-1])}]"
    ),
    "np_argsort_top": (
        "last = df.groupby('ticker')['returns'].last()\norder = np.argsort(-last.to_numpy())\n"
        "return [{'ticker': str(last.index[i]), 'score': float(last.iloc[i])} for i in order[:3]]"
    ),
    "np_fft": (
        "x = df['close'].to_numpy()[:64]\nf = np.abs(np.fft.rfft(x - x.mean()))\n"
        "return [{'ticker': 'ALL', 'peak': int(f.argmax())}]"
    ),
    "np_linalg_inv_eig": (
        "c = np.cov(df[['close', 'open', 'high']].to_numpy().T)\nw = np.linalg.eigvalsh(c)\n"
        "inv = np.linalg.inv(c + np.eye(3))\n"
        "return [{'ticker': 'ALL', 'w': w.tolist(), 'i': float(inv[0, 0])}]"
    ),
    "np_datetime64": (
        "d = df['date'].to_numpy()\nspan = (d.max() - d.min()) / np.timedelta64(1, 'D')\n"
        "return [{'ticker': 'ALL', 'span': float(span)}]"
    ),
    "np_nan_functions": (
        "x = df['sma_200'].to_numpy()\n"
        "return [{'ticker': 'ALL', 'm': float(np.nanmean(x)), 'mx': float(np.nanmax(x))}]"
    ),
    # -- math and statistics
    "math_log_sqrt": (
        "import math\nout = []\nfor t, g in df.groupby('ticker'):\n"
        "    c = g['close'].tolist()\n"
        "    vol = math.sqrt(252) * float(np.std(np.diff(np.log(c))))\n"
        "    out.append({'ticker': t, 'score': math.log(c[-1] / c[0]), 'vol': vol})\nreturn out"
    ),
    "math_misc": (
        "import math\n"
        "return [{'ticker': 'ALL', 'c': math.comb(10, 3), 'f': math.floor(2.7), "
        "'close': math.isclose(1.0, 1.0 + 1e-12), 'h': math.hypot(3, 4)}]"
    ),
    "statistics_basic": (
        "import statistics\nx = df['returns'].dropna().tolist()\n"
        "return [{'ticker': 'ALL', 'mean': statistics.mean(x), 'sd': statistics.stdev(x), "
        "'med': statistics.median(x)}]"
    ),
    "statistics_regression": (
        "import statistics\nx = df['volume_ratio'].fillna(1).tolist()\n"
        "y = df['returns'].fillna(0).tolist()\nfit = statistics.linear_regression(x, y)\n"
        "return [{'ticker': 'ALL', 'slope': fit.slope, 'r': statistics.correlation(x, y)}]"
    ),
    "statistics_quantiles_fmean": (
        "import statistics\nx = df['close'].tolist()\n"
        "return [{'ticker': 'ALL', 'q': statistics.quantiles(x, n=4), 'f': statistics.fmean(x), "
        "'g': statistics.geometric_mean(x)}]"
    ),
    "statistics_normaldist": (
        "import statistics\nn = statistics.NormalDist.from_samples(df['returns'].dropna().tolist())\n"
        "return [{'ticker': 'ALL', 'p': n.cdf(0.0), 'z': n.inv_cdf(0.95)}]"
    ),
    # -- helpers, control flow, output shapes
    "helper_functions": (
        "return [{'ticker': t, 'score': _momentum(g), 'message': _label(_momentum(g))}\n"
        "        for t, g in df.groupby('ticker')]"
    ),
    "try_except_recover": (
        "out = []\nfor t, g in df.groupby('ticker'):\n    try:\n"
        "        x = g['close'].iloc[-1] / g['volume'].iloc[-1]\n"
        "    except (ZeroDivisionError, IndexError):\n        x = 0.0\n"
        "    try:\n        bad = int('not a number')\n    except ValueError as e:\n"
        "        bad = str(e)[:10]\n"
        "    out.append({'ticker': t, 'x': x, 'bad': bad})\nreturn out"
    ),
    "return_dataframe": (
        "last = df.sort_values('date').groupby('ticker').tail(1)\n"
        "return last[['ticker', 'date', 'close']].assign(signal=True)"
    ),
    "itertuples_gap": (
        "hits = df[(df['gap_pct'] > 1.0) & (df['volume_ratio'] > 1.0)]\n"
        "return [{'ticker': r.ticker, 'date': str(r.date), 'signal': True, 'gap_percent': r.gap_pct}\n"
        "        for r in hits.itertuples()]"
    ),
    "iterrows_dict": (
        "rows = []\nfor _i, r in df.head(20).iterrows():\n"
        "    rows.append({'ticker': r['ticker'], 'date': r['date'], 'c': r['close']})\nreturn rows"
    ),
    "to_dict_records": (
        "d = df.groupby('ticker', as_index=False).agg(score=('rsi', 'last'))\n"
        "return d.to_dict(orient='records')"
    ),
    "query_eval": (
        "q = df.query('close > open and volume_ratio > 1')\n"
        "e = df.eval('close - open')\n"
        "return [{'ticker': 'ALL', 'n': len(q), 'm': float(e.mean())}]"
    ),
    "f_string_message": (
        "out = []\nfor t, g in df.groupby('ticker'):\n    c = g['close'].iloc[-1]\n"
        "    out.append({'ticker': t, 'message': f'{t}: {c:,.2f} ({g[\"rsi\"].iloc[-1]:.0f} RSI)'})\n"
        "return out"
    ),
    "string_methods": (
        "s = df['ticker'].str.lower().str.replace('syn', 's', regex=False)\n"
        "m = df['ticker'].str.contains('0+1', regex=True)\n"
        "return [{'ticker': 'ALL', 'x': str(s.iloc[0]), 'm': int(m.sum())}]"
    ),
    "sort_drop_duplicates": (
        "d = df.sort_values(['ticker', 'date'], ascending=[True, False]).drop_duplicates('ticker')\n"
        "return [{'ticker': r.ticker, 'date': r.date} for r in d.itertuples()]"
    ),
    "isin_between": (
        "tk = sorted(df['ticker'].unique())[:2]\n"
        "d = df[df['ticker'].isin(tk) & df['rsi'].between(40, 60)]\n"
        + _rows("d.groupby('ticker')['close'].count()")
    ),
    "set_dict_comprehensions": (
        "names = {t for t in df['ticker']}\nlast = {t: float(g['close'].iloc[-1]) for t, g in df.groupby('ticker')}\n"
        "return [{'ticker': t, 'v': last[t]} for t in sorted(names)]"
    ),
    "sorted_lambda_zip": (
        "last = df.groupby('ticker')['returns'].last()\n"
        "pairs = sorted(zip(last.index, last.values), key=lambda p: p[1], reverse=True)\n"
        "return [{'ticker': t, 'rank': i + 1} for i, (t, _v) in enumerate(pairs)]"
    ),
    "while_loop_state": (
        "c = df[df['ticker'] == df['ticker'].iloc[0]]['close'].tolist()\n"
        "i, streak, best = 1, 0, 0\nwhile i < len(c):\n"
        "    streak = streak + 1 if c[i] > c[i - 1] else 0\n    best = max(best, streak)\n    i += 1\n"
        "return [{'ticker': df['ticker'].iloc[0], 'best': best}]"
    ),
    "match_statement": (
        "out = []\nfor t, g in df.groupby('ticker'):\n    r = g['rsi'].iloc[-1]\n"
        "    match int(r // 25):\n        case 0:\n            side = 'long'\n"
        "        case 3:\n            side = 'short'\n        case _:\n            side = 'flat'\n"
        "    out.append({'ticker': t, 'direction': side if side != 'flat' else 'long', 'signal': side != 'flat'})\n"
        "return out"
    ),
    "numpy_types_in_output": (
        "g = df.groupby('ticker')\n"
        "return [{'ticker': t, 'n': np.int64(len(x)), 'c': np.float32(x['close'].iloc[-1]), 'b': np.bool_(True)}\n"
        "        for t, x in g]"
    ),
    "nan_and_inf_output": (
        "return [{'ticker': 'ALL', 'nan': float('nan'), 'inf': np.inf, 'na': pd.NA, 'nat': pd.NaT}]"
    ),
    "print_debugging": (
        "print('rows', len(df))\nprint(df.head(2))\nreturn [{'ticker': 'ALL', 'n': len(df)}]"
    ),
    "cummax_trailing": (
        "peak = df.groupby('ticker')['close'].cummax()\nstop = df[df['close'] < peak * 0.95]\n"
        "return [{'ticker': r.ticker, 'date': r.date, 'action': 'exit'} for r in stop.itertuples()][:20]"
    ),
    "shift_future_free_signals": (
        "d = df.copy()\nd['cross'] = (d['sma_5'] > d['sma_20']) & "
        "(d.groupby('ticker')['sma_5'].shift() <= d.groupby('ticker')['sma_20'].shift())\n"
        "hits = d[d['cross']]\n"
        "return [{'ticker': r.ticker, 'date': r.date, 'score': r.rsi} for r in hits.itertuples()]"
    ),
    "fillna_dropna_astype": (
        "d = df[['ticker', 'sma_200']].dropna()\n"
        "x = df['sma_200'].fillna(0).astype('float32')\n"
        "return [{'ticker': 'ALL', 'n': len(d), 'x': float(x.sum())}]"
    ),
    "apply_rowwise": (
        "d = df.head(30)\nv = d.apply(lambda r: r['close'] - r['open'], axis=1)\n"
        "return [{'ticker': 'ALL', 'v': float(v.sum())}]"
    ),
    "series_map_dict": (
        "codes = {t: i for i, t in enumerate(sorted(df['ticker'].unique()))}\n"
        "c = df['ticker'].map(codes)\nreturn [{'ticker': 'ALL', 'max': int(c.max())}]"
    ),
    "categorical_dtype": (
        "c = df['ticker'].astype('category')\n"
        "return [{'ticker': str(t), 'code': int(i)} for i, t in enumerate(c.cat.categories)]"
    ),
    "multiindex_xs": (
        "m = df.set_index(['ticker', 'date'])['close']\nfirst = m.index.get_level_values(0)[0]\n"
        "x = m.xs(first, level='ticker')\nreturn [{'ticker': first, 'n': len(x)}]"
    ),
    "decimal_free_rounding": (
        "r = df['close'].round(2)\nreturn [{'ticker': 'ALL', 'v': float(r.iloc[0]), 'rr': round(2.675, 2)}]"
    ),
    "to_numpy_records": (
        "a = df[['close', 'volume']].to_numpy()\n"
        "return [{'ticker': 'ALL', 'shape': list(a.shape), 'sum': float(a[:, 0].sum())}]"
    ),
    "sample_and_seed": (
        "s = df.sample(n=5, random_state=1)\nreturn [{'ticker': r.ticker, 'date': r.date} for r in s.itertuples()]"
    ),
    "pct_rank_expanding": (
        "r = df.groupby('ticker')['close'].transform(lambda s: s.expanding().rank(pct=True))\n"
        + _rows("r.groupby(df['ticker']).last()")
    ),
    "ewm_corr_pair": (
        _PIVOT + "a, b = p.columns[:2]\nc = p[a].ewm(span=20).corr(p[b])\n"
        "return [{'ticker': str(a), 'corr': float(c.iloc[-1])}]"
    ),
    "json_friendly_nested": (
        "return [{'ticker': 'ALL', 'meta': {'cols': list(df.columns[:3]), 'n': [1, 2, {'k': (1, 2)}]}}]"
    ),
}

_HELPERS = """
def _momentum(g):
    c = g['close']
    return float(c.iloc[-1] / c.iloc[max(0, len(c) - 20)] - 1)


def _label(x):
    return 'up' if x > 0 else 'down'
"""

LEGIT: list[Legit] = [
    Legit(name, _s(body, helpers=_HELPERS if name == "helper_functions" else ""))
    for name, body in _BODIES.items()
]
LEGIT += [Legit(name, code) for name, code in python_cases().items()]
