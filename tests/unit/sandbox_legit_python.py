"""Legitimate strategies in full Python: the habits quants arrive with.

Classes, dataclasses, enums, namedtuples, decorators, properties, format
templates, ``getattr`` on rows, ``if __name__ == "__main__":``, global and
nonlocal, type hints, generators, match, every builtin exception class, the
pure-computation standard library, every public pandas/numpy submodule, named
time zones, and the preloaded libraries (TA-Lib, scipy, statsmodels,
scikit-learn). Each one returns the same rows in the sandbox as when run
plainly (``tests/unit/test_sandbox_legit.py`` compares them field by field).
"""

from __future__ import annotations

import builtins

ONE = "g = df[df['ticker'] == df['ticker'].iloc[0]].reset_index(drop=True)\n"
"""The first ticker's rows, in date order."""


def _strategy(body: str, prelude: str = "", name: str = "strategy", args: str = "df") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{prelude.strip()}\n\n\ndef {name}({args}):\n{lines}\n"


def _exception_case(name: str) -> str:
    special = {
        "UnicodeDecodeError": "UnicodeDecodeError('utf-8', b'\\xff', 0, 1, 'bad byte')",
        "UnicodeEncodeError": "UnicodeEncodeError('ascii', 'é', 0, 1, 'not ascii')",
        "UnicodeTranslateError": "UnicodeTranslateError('é', 0, 1, 'no map')",
        "BaseExceptionGroup": "BaseExceptionGroup('many', [ValueError('a')])",
        "ExceptionGroup": "ExceptionGroup('many', [ValueError('a')])",
    }
    make = special.get(name, f"{name}('boom')")
    return _strategy(f"""
try:
    raise {make}
except {name} as exc:
    caught = type(exc).__name__
    is_exc = isinstance(exc, BaseException)
return [{{'ticker': 'ALL', 'caught': caught, 'is_exc': is_exc}}]
""")


EXCEPTIONS = sorted(
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, BaseException) and not name.startswith("_")
)
"""Every builtin exception and warning class."""

STDLIB: dict[str, str] = {
    "collections": """
from collections import Counter, OrderedDict, defaultdict, deque, namedtuple
Bar = namedtuple('Bar', 'ticker close')
def strategy(df):
    last = deque(maxlen=3)
    counts = Counter(df['ticker'])
    by = defaultdict(list)
    for r in df.itertuples():
        by[r.ticker].append(r.close)
        last.append(Bar(r.ticker, r.close))
    order = OrderedDict(sorted(counts.items()))
    return [{'ticker': t, 'n': n, 'mean': sum(by[t]) / len(by[t]), 'tail': last[-1].close}
            for t, n in order.items()]
""",
    "functools": """
import functools
from functools import partial, reduce
@functools.lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
def scale(x, k):
    return x * k
def strategy(df):
    double = partial(scale, k=2)
    total = reduce(lambda a, b: a + b, df['close'].head(10).tolist())
    return [{'ticker': 'ALL', 'fib': fib(30), 'd': double(total)}]
""",
    "itertools": """
import itertools
def strategy(df):
    tickers = sorted(df['ticker'].unique())
    pairs = list(itertools.combinations(tickers, 2))
    runs = [(k, len(list(g))) for k, g in itertools.groupby(df['close'].diff().gt(0).head(50))]
    acc = list(itertools.accumulate([1, 2, 3]))
    return [{'ticker': a, 'other': b, 'runs': len(runs), 'acc': acc[-1]} for a, b in pairs]
""",
    "re": """
import re
PAT = re.compile(r'^([A-Z]+)(\\d+)$')
def strategy(df):
    out = []
    for t in sorted(df['ticker'].unique()):
        m = PAT.match(t)
        out.append({'ticker': t, 'prefix': m.group(1) if m else '', 'num': int(m.group(2)) if m else 0,
                    'sub': re.sub(r'\\d', '#', t)})
    return out
""",
    "typing": """
from typing import Any, NamedTuple, Optional, TypedDict
class Row(TypedDict):
    ticker: str
    value: float
class Pt(NamedTuple):
    x: float
    y: Optional[float] = None
def strategy(df: 'pd.DataFrame') -> list[dict[str, Any]]:
    p = Pt(1.0)
    rows: list[Row] = [{'ticker': t, 'value': float(v)} for t, v in df.groupby('ticker')['close'].last().items()]
    return [dict(r, y=p.y) for r in rows]
""",
    "dataclasses": """
from dataclasses import dataclass, field, asdict
@dataclass(frozen=True)
class Signal:
    ticker: str
    score: float
    tags: tuple = ()
@dataclass
class Book:
    signals: list = field(default_factory=list)
def strategy(df):
    book = Book()
    for t, v in df.groupby('ticker')['returns'].mean().items():
        book.signals.append(Signal(t, float(v), ('mean',)))
    return [asdict(s) for s in sorted(book.signals, key=lambda s: s.score)]
""",
    "enum": """
from enum import Enum, IntEnum, auto
class Side(Enum):
    LONG = auto()
    SHORT = auto()
class Level(IntEnum):
    LOW = 1
    HIGH = 2
def strategy(df):
    last = df.groupby('ticker')['returns'].last()
    return [{'ticker': t, 'side': (Side.LONG if r > 0 else Side.SHORT).name, 'lvl': int(Level.HIGH)}
            for t, r in last.items()]
""",
    "decimal": """
from decimal import ROUND_HALF_UP, Decimal, getcontext
def strategy(df):
    getcontext().prec = 12
    px = Decimal(str(round(float(df['close'].iloc[-1]), 4)))
    tick = Decimal('0.05')
    return [{'ticker': 'ALL', 'px': str((px / tick).quantize(Decimal('1'), rounding=ROUND_HALF_UP) * tick)}]
""",
    "fractions": """
from fractions import Fraction
def strategy(df):
    f = Fraction(len(df), df['ticker'].nunique())
    return [{'ticker': 'ALL', 'num': f.numerator, 'den': f.denominator, 'lim': str(Fraction(0.1).limit_denominator(100))}]
""",
    "bisect": """
import bisect
def strategy(df):
    levels = sorted(df['close'].quantile([0.1, 0.5, 0.9]).tolist())
    return [{'ticker': t, 'bucket': bisect.bisect(levels, float(c))} for t, c in df.groupby('ticker')['close'].last().items()]
""",
    "heapq": """
import heapq
def strategy(df):
    last = df.groupby('ticker')['returns'].last().fillna(0)
    top = heapq.nlargest(2, last.items(), key=lambda kv: kv[1])
    h = []
    for t, v in last.items():
        heapq.heappush(h, (float(v), t))
    return [{'ticker': t, 'r': float(v), 'min': heapq.heappop(h)[1]} for t, v in top]
""",
    "operator": """
import operator
from operator import attrgetter, itemgetter
def strategy(df):
    rows = sorted(df.tail(8).itertuples(), key=attrgetter('close'))
    pairs = sorted(((r.ticker, r.close) for r in rows), key=itemgetter(1))
    return [{'ticker': t, 'c': c, 'm': operator.mul(c, 2)} for t, c in pairs]
""",
    "calendar": """
import calendar
def strategy(df):
    d = df['date'].iloc[-1]
    return [{'ticker': 'ALL', 'days': calendar.monthrange(d.year, d.month)[1], 'leap': calendar.isleap(d.year),
             'name': calendar.month_name[d.month], 'wd': calendar.weekday(d.year, d.month, d.day)}]
""",
    "json": """
import json
def strategy(df):
    cfg = json.loads('{"n": 5, "names": ["a", "b"]}')
    text = json.dumps({'n': cfg['n'], 'last': float(df['close'].iloc[-1])}, sort_keys=True)
    return [{'ticker': 'ALL', 'text': text, 'back': json.loads(text)['n']}]
""",
    "copy": """
import copy
def strategy(df):
    base = {'w': [1, 2], 'k': {'a': 1}}
    deep = copy.deepcopy(base)
    deep['w'].append(3)
    shallow = copy.copy(base)
    return [{'ticker': 'ALL', 'base': len(base['w']), 'deep': len(deep['w']), 'same': shallow['k'] is base['k']}]
""",
    "random": """
import random
def strategy(df):
    rng = random.Random(42)
    tickers = sorted(df['ticker'].unique())
    pick = rng.sample(tickers, 2)
    return [{'ticker': t, 'u': rng.random(), 'g': rng.gauss(0, 1), 'c': rng.choice([1, 2, 3])} for t in pick]
""",
    "time": """
import time
def strategy(df):
    t0 = time.time()
    m0 = time.monotonic()
    time.sleep(0.01)
    waited = time.monotonic() - m0
    p = time.perf_counter()
    return [{'ticker': 'ALL', 'after_2020': t0 > 1.5e9, 'waited': waited >= 0.009, 'p': p > 0,
             'fmt': time.strftime('%Y', time.gmtime(0))}]
""",
    "logging": """
import logging
log = logging.getLogger('my_strategy')
def strategy(df):
    logging.basicConfig(level=logging.INFO)
    log.info('rows %d', len(df))
    logging.warning('a warning')
    return [{'ticker': 'ALL', 'n': len(df)}]
""",
    "warnings": """
import warnings
def strategy(df):
    warnings.warn('thin data', UserWarning)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter('always')
        warnings.warn('inner', RuntimeWarning)
    return [{'ticker': 'ALL', 'seen': len(seen), 'kind': seen[0].category.__name__}]
""",
    "io": """
import io
TABLE = '''ticker,weight
SYN0001,0.5
SYN0002,0.25
'''
def strategy(df):
    w = pd.read_csv(io.StringIO(TABLE))
    buf = io.StringIO()
    buf.write('x')
    return [{'ticker': r.ticker, 'weight': r.weight, 'buf': buf.getvalue()} for r in w.itertuples()]
""",
    "future_annotations": """
from __future__ import annotations
def helper(x: Decimal) -> Optional[int]:
    return None
def strategy(df: DataFrame) -> list[dict]:
    return [{'ticker': 'ALL', 'h': helper(1)}]
""",
    "string": """
import string
from string import Template
def strategy(df):
    t = Template('$ticker closes at $px')
    return [{'ticker': k, 'text': t.substitute(ticker=k, px=round(float(v), 2)), 'up': string.ascii_uppercase[:3]}
            for k, v in df.groupby('ticker')['close'].last().items()]
""",
    "textwrap": """
import textwrap
def strategy(df):
    note = textwrap.dedent('''
        long text that is
        wrapped''').strip()
    return [{'ticker': 'ALL', 'lines': textwrap.wrap(note, 10), 'short': textwrap.shorten(note, 15)}]
""",
    "numbers": """
import numbers
def strategy(df):
    v = df['close'].iloc[-1]
    return [{'ticker': 'ALL', 'real': isinstance(float(v), numbers.Real), 'int': isinstance(3, numbers.Integral)}]
""",
    "cmath": """
import cmath
def strategy(df):
    z = cmath.exp(1j * cmath.pi / 4)
    return [{'ticker': 'ALL', 're': z.real, 'im': z.imag, 'phase': cmath.phase(z)}]
""",
    "array_struct": """
import array, struct
def strategy(df):
    a = array.array('d', df['close'].head(5).tolist())
    packed = struct.pack('<dd', a[0], a[1])
    return [{'ticker': 'ALL', 'n': len(a), 'back': struct.unpack('<dd', packed)[1], 'size': struct.calcsize('<dd')}]
""",
    "hashlib_base64_uuid": """
import base64, hashlib, uuid
def strategy(df):
    key = ','.join(sorted(df['ticker'].unique()))
    digest = hashlib.sha256(key.encode()).hexdigest()
    return [{'ticker': 'ALL', 'h': digest[:12], 'b64': base64.b64encode(b'abc').decode(),
             'id': str(uuid.uuid5(uuid.NAMESPACE_DNS, key)), 'md5': hashlib.md5(b'x').hexdigest()}]
""",
    "pprint": """
import pprint
def strategy(df):
    text = pprint.pformat({'b': 1, 'a': list(range(3))}, width=20)
    pprint.pprint(text)
    return [{'ticker': 'ALL', 'text': text}]
""",
    "math_statistics_datetime": """
import math, statistics, datetime as dt
def strategy(df):
    r = df['returns'].dropna().tolist()
    d = dt.date(2024, 1, 31) + dt.timedelta(days=1)
    return [{'ticker': 'ALL', 'sd': statistics.stdev(r), 'med': statistics.median(r), 'lg': math.log1p(abs(r[0])),
             'd': d.isoformat(), 'iso': dt.datetime(2024, 3, 1, 9, 30).isoformat()}]
""",
    "contextlib_abc": """
import contextlib
from abc import ABC, abstractmethod
class Base(ABC):
    @abstractmethod
    def score(self, g): ...
class Last(Base):
    def score(self, g):
        return float(g['close'].iloc[-1])
@contextlib.contextmanager
def section(log):
    log.append('in')
    yield
    log.append('out')
def strategy(df):
    log = []
    with section(log), contextlib.suppress(KeyError):
        rows = [{'ticker': t, 's': Last().score(g)} for t, g in df.groupby('ticker')]
        {}['missing']
    return [dict(r, log=log) for r in rows]
""",
    "difflib_csv_secrets": """
import csv, difflib, io
def strategy(df):
    close = difflib.get_close_matches('clsoe', list(df.columns), n=1)
    rows = list(csv.reader(io.StringIO('a,b\\n1,2')))
    return [{'ticker': 'ALL', 'close': close, 'rows': rows}]
""",
    "zoneinfo": """
from zoneinfo import ZoneInfo
import datetime as dt
def strategy(df):
    ny = dt.datetime(2024, 3, 10, 12, tzinfo=ZoneInfo('America/New_York'))
    return [{'ticker': 'ALL', 'utc': ny.astimezone(ZoneInfo('UTC')).isoformat(),
             'tokyo': ny.astimezone(ZoneInfo('Asia/Tokyo')).isoformat(), 'name': str(ny.tzinfo)}]
""",
    "graphlib_reprlib_keyword": """
import graphlib, keyword, reprlib
def strategy(df):
    order = list(graphlib.TopologicalSorter({'b': {'a'}, 'c': {'b'}}).static_order())
    return [{'ticker': 'ALL', 'order': order, 'kw': keyword.iskeyword('class'), 'r': reprlib.repr(list(range(100)))}]
""",
}
"""One strategy per standard-library module (or a few related ones)."""

SUBMODULES: dict[str, str] = {
    "pandas_tseries_offsets": """
from pandas.tseries.offsets import BDay, BMonthEnd, MonthEnd, Week
def strategy(df):
    d = df['date'].iloc[-1]
    return [{'ticker': 'ALL', 'next_bday': d + BDay(1), 'bme': d + BMonthEnd(0), 'me': d + MonthEnd(1), 'wk': d + Week(weekday=4)}]
""",
    "pandas_tseries_holiday": """
from pandas.tseries.holiday import USFederalHolidayCalendar
from pandas.tseries.offsets import CustomBusinessDay
def strategy(df):
    cal = USFederalHolidayCalendar()
    hol = cal.holidays(start='2024-01-01', end='2024-12-31')
    bday = CustomBusinessDay(calendar=cal)
    return [{'ticker': 'ALL', 'n': len(hol), 'after_july3': pd.Timestamp('2024-07-03') + bday}]
""",
    "numpy_random": """
import numpy.random
from numpy.random import default_rng
def strategy(df):
    rng = default_rng(7)
    legacy = numpy.random.RandomState(3)
    return [{'ticker': 'ALL', 'u': float(rng.uniform()), 'n': float(legacy.normal()), 'perm': rng.permutation(4).tolist()}]
""",
    "numpy_stride_tricks": """
from numpy.lib.stride_tricks import sliding_window_view
def strategy(df):
    c = df[df['ticker'] == df['ticker'].iloc[0]]['close'].to_numpy()
    w = sliding_window_view(c, 5)
    return [{'ticker': 'ALL', 'max_range': float((w.max(axis=1) - w.min(axis=1)).max()), 'n': len(w)}]
""",
    "pandas_api_types": """
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype
def strategy(df):
    return [{'ticker': c, 'num': is_numeric_dtype(df[c]), 'dt': pd.api.types.is_datetime64_any_dtype(df[c]) or is_datetime64_any_dtype(df[c])}
            for c in ['close', 'date', 'ticker']]
""",
    "numpy_linalg_fft_polynomial": """
import numpy.linalg as la
from numpy.fft import rfft
from numpy.polynomial import Polynomial
def strategy(df):
    c = df[df['ticker'] == df['ticker'].iloc[0]]['close'].to_numpy()
    x = np.arange(len(c))
    p = Polynomial.fit(x, c, 1).convert()
    return [{'ticker': 'ALL', 'slope': float(p.coef[1]), 'amp': float(abs(rfft(c)[1])), 'n': float(la.norm([3, 4]))}]
""",
    "pandas_offsets_frequencies": """
from pandas.tseries.frequencies import to_offset
import pandas.tseries.offsets as off
def strategy(df):
    return [{'ticker': 'ALL', 'f': str(to_offset('5min')), 'q': str(df['date'].iloc[0] + off.QuarterEnd(1))}]
""",
}

HABITS: dict[str, str] = {
    "format_template": """
TEMPLATE = '{ticker}: {px:.2f}'
OLD = '%s at %.1f'
def strategy(df):
    last = df.groupby('ticker')['close'].last()
    return [{'ticker': t, 'a': TEMPLATE.format(ticker=t, px=v), 'b': OLD % (t, v),
             'c': '{t} {v:.3f}'.format_map({'t': t, 'v': v}), 'd': format(v, '.1f')} for t, v in last.items()]
""",
    "getattr_on_rows": """
COLS = ['open', 'close', 'rsi']
def strategy(df):
    out = []
    for row in df.tail(6).itertuples():
        item = {'ticker': row.ticker}
        for c in COLS:
            item[c] = getattr(row, c)
        item['has_vwap'] = hasattr(row, 'vwap')
        out.append(item)
    return out
""",
    "setattr_own_object": """
class Box:
    pass
def strategy(df):
    b = Box()
    for c in ['open', 'close']:
        setattr(b, c, float(df[c].mean()))
    return [{'ticker': 'ALL', 'open': b.open, 'close': getattr(b, 'close'), 'attrs': sorted(vars(b))}]
""",
    "main_guard": """
def strategy(df):
    return [{'ticker': t, 'n': int(n), 'module': __name__} for t, n in df['ticker'].value_counts().sort_index().items()]

if __name__ == "__main__":
    frame = pd.read_csv('prices.csv', parse_dates=['date'])
    print(strategy(frame))
""",
    "exception_type_name": """
def strategy(df):
    errors = []
    for bad in ['x', None, []]:
        try:
            float(bad)
        except Exception as exc:
            errors.append(type(exc).__name__)
    return [{'ticker': 'ALL', 'errors': errors, 'cls': type(df).__name__}]
""",
    "global_counter": """
CALLS = 0
def _bump():
    global CALLS
    CALLS += 1
    return CALLS
def strategy(df):
    for _ in range(3):
        _bump()
    return [{'ticker': 'ALL', 'calls': CALLS}]
""",
    "nonlocal_closure": """
def strategy(df):
    total = 0.0
    def add(x):
        nonlocal total
        total += x
    for v in df['close'].head(5):
        add(float(v))
    return [{'ticker': 'ALL', 'total': total}]
""",
    "type_hints_everywhere": """
from typing import Any
Params = dict[str, object]
def _score(g: pd.DataFrame, n: int = 5) -> float | None:
    s: pd.Series = g['close']
    return float(s.iloc[-1] / s.iloc[-n] - 1) if len(s) > n else None
def strategy(df: pd.DataFrame) -> list[dict[str, Any]]:
    cfg: Params = {'n': 5}
    return [{'ticker': t, 's': _score(g, int(cfg['n']))} for t, g in df.groupby('ticker')]
""",
    "generators": """
def _pairs(s):
    prev = None
    for v in s:
        if prev is not None:
            yield prev, v
        prev = v
def strategy(df):
    ups = sum(1 for a, b in _pairs(df['close'].head(100)) if b > a)
    gen = (x * 2 for x in range(5))
    return [{'ticker': 'ALL', 'ups': ups, 'g': list(gen), 'nxt': next(iter(range(3)))}]
""",
    "match_statement": """
def _kind(x):
    match x:
        case {'side': 'long', 'size': int(n)} if n > 0:
            return 'buy'
        case (a, b):
            return f'pair {a} {b}'
        case str() as s:
            return s.upper()
        case _:
            return 'other'
def strategy(df):
    return [{'ticker': 'ALL', 'k': [_kind({'side': 'long', 'size': 2}), _kind((1, 2)), _kind('x'), _kind(3.0)]}]
""",
    "print_to_string_info": """
import io
def strategy(df):
    print(df.head().to_string())
    buf = io.StringIO()
    df.info(buf=buf)
    df.info()
    text = df.head(2).to_csv()
    return [{'ticker': 'ALL', 'lines': len(buf.getvalue().splitlines()) > 3, 'csv': text.splitlines()[0]}]
""",
    "set_option": """
def strategy(df):
    pd.set_option('display.width', 200)
    with pd.option_context('display.max_rows', 5):
        text = repr(df.head(3))
    return [{'ticker': 'ALL', 'w': pd.get_option('display.width'), 'n': len(text) > 0}]
""",
    "query_with_local": """
def strategy(df):
    threshold = float(df['close'].median())
    chosen = 'SYN0001'
    hits = df.query('close > @threshold and ticker == @chosen')
    return [{'ticker': chosen, 'n': len(hits)}]
""",
    "pd_api_types_is_numeric": """
def strategy(df):
    numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    return [{'ticker': 'ALL', 'numeric': len(numeric), 'str': pd.api.types.is_string_dtype(df['ticker'])}]
""",
    "property_and_super": """
class Base:
    def __init__(self, n):
        self.n = n
    def describe(self):
        return f'Base({self.n})'
class Child(Base):
    def __init__(self, n, k):
        super().__init__(n)
        self._k = k
    @property
    def k(self):
        return self._k
    @k.setter
    def k(self, v):
        self._k = v
    def describe(self):
        return super().describe() + f'+{self.k}'
    @staticmethod
    def unit():
        return 1
    @classmethod
    def make(cls):
        return cls(1, 2)
def strategy(df):
    c = Child.make()
    c.k = 5
    return [{'ticker': 'ALL', 'd': c.describe(), 'u': Child.unit(), 'bases': [k.__name__ for k in Child.mro()[:2]]}]
""",
    "dunder_methods": """
class Money:
    def __init__(self, v):
        self.v = v
    def __add__(self, other):
        return Money(self.v + other.v)
    def __lt__(self, other):
        return self.v < other.v
    def __eq__(self, other):
        return self.v == other.v
    def __hash__(self):
        return hash(self.v)
    def __repr__(self):
        return f'Money({self.v:.2f})'
    def __len__(self):
        return 1
    def __iter__(self):
        yield self.v
    def __getitem__(self, i):
        return self.v
    def __call__(self):
        return self.v
def strategy(df):
    a, b = Money(1.5), Money(float(df['close'].iloc[0]))
    return [{'ticker': 'ALL', 's': repr(a + b), 'lt': a < b, 'eq': a == Money(1.5), 'list': list(a), 'call': a()}]
""",
    "wraps_decorator": """
import functools
def logged(fn):
    @functools.wraps(fn)
    def inner(*a, **k):
        return fn(*a, **k)
    return inner
def repeat(n):
    def deco(fn):
        def inner(x):
            for _ in range(n):
                x = fn(x)
            return x
        return inner
    return deco
@logged
def _half(x):
    return x / 2
@repeat(3)
def _inc(x):
    return x + 1
def strategy(df):
    return [{'ticker': 'ALL', 'h': _half(float(df['close'].iloc[0])), 'name': _half.__name__, 'i': _inc(0)}]
""",
    "namedtuple_and_slots": """
from collections import namedtuple
Trade = namedtuple('Trade', ['ticker', 'entry', 'exit'])
class Pos:
    __slots__ = ('ticker', 'qty')
    def __init__(self, t, q):
        self.ticker, self.qty = t, q
def strategy(df):
    trades = [Trade(t, float(g['close'].iloc[0]), float(g['close'].iloc[-1])) for t, g in df.groupby('ticker')]
    return [dict(t._asdict(), pnl=t.exit - t.entry, qty=Pos(t.ticker, 1).qty) for t in trades]
""",
    "lambda_sort_dict_comprehension": """
def strategy(df):
    last = {t: float(v) for t, v in df.groupby('ticker')['close'].last().items()}
    ranked = sorted(last, key=lambda t: -last[t])
    return [{'ticker': t, 'rank': i} for i, t in enumerate(ranked, 1)]
""",
    "walrus_and_star": """
def strategy(df):
    first, *rest = sorted(df['ticker'].unique())
    if (n := len(rest)) > 0:
        return [{'ticker': first, 'rest': n, **{'extra': True}}]
    return []
""",
    "vars_dir_on_own": """
class Cfg:
    def __init__(self):
        self.fast = 5
        self.slow = 20
def strategy(df):
    c = Cfg()
    return [{'ticker': 'ALL', 'vars': vars(c), 'dir': [n for n in dir(c) if not n.startswith('_')]}]
""",
    "memoryview_bytearray": """
def strategy(df):
    b = bytearray(b'abc')
    b[0] = 65
    m = memoryview(b)
    return [{'ticker': 'ALL', 'b': bytes(b).decode(), 'm': m[1]}]
""",
    "type_three_args": """
def strategy(df):
    Point = type('Point', (), {'x': 1, 'double': lambda self: self.x * 2})
    return [{'ticker': 'ALL', 'x': Point().double(), 'name': Point.__name__}]
""",
    "object_sentinel": """
MISSING = object()
def strategy(df):
    d = {}
    v = d.get('k', MISSING)
    return [{'ticker': 'ALL', 'missing': v is MISSING}]
""",
}
"""Everyday idioms that read as ordinary Python."""

CLASSES: dict[str, str] = {
    "backtesting_style_class": """
class SmaCross:
    fast = 10
    slow = 30
    def __init__(self, fast=None, slow=None):
        if fast:
            self.fast = fast
        if slow:
            self.slow = slow
    def signals(self, g):
        c = g['close']
        f, s = c.rolling(self.fast).mean(), c.rolling(self.slow).mean()
        cross = (f > s) & (f.shift() <= s.shift())
        return g.loc[cross, ['ticker', 'date']]
    def run(self, df):
        out = []
        for _, g in df.groupby('ticker'):
            out += [{'ticker': r.ticker, 'date': r.date, 'signal': True} for r in self.signals(g).itertuples()]
        return out
def strategy(df):
    return SmaCross().run(df)
""",
    "qc_style_algorithm": """
class Algorithm:
    def __init__(self):
        self.holdings = {}
        self.log = []
    def initialize(self):
        self.lookback = 20
    def on_data(self, t, g):
        mom = g['close'].iloc[-1] / g['close'].iloc[-self.lookback] - 1
        if mom > 0:
            self.holdings[t] = float(mom)
    def run(self, df):
        self.initialize()
        for t, g in df.groupby('ticker'):
            self.on_data(t, g)
        return [{'ticker': t, 'weight': w} for t, w in sorted(self.holdings.items())]
def strategy(df):
    return Algorithm().run(df)
""",
    "dataclass_params_class": """
from dataclasses import dataclass
@dataclass
class Params:
    window: int = 20
    z_entry: float = 1.0
class MeanReversion:
    def __init__(self, p: Params):
        self.p = p
    def z(self, s):
        m = s.rolling(self.p.window).mean()
        sd = s.rolling(self.p.window).std()
        return (s - m) / sd
    def __call__(self, df):
        out = []
        for t, g in df.groupby('ticker'):
            z = self.z(g['close']).iloc[-1]
            if abs(z) > self.p.z_entry:
                out.append({'ticker': t, 'z': float(z)})
        return out
def strategy(df, params):
    return MeanReversion(Params(**params))(df) or [{'ticker': 'NONE', 'z': 0.0}]
""",
    "abstract_base_strategies": """
from abc import ABC, abstractmethod
class Rule(ABC):
    @abstractmethod
    def fire(self, row) -> bool: ...
class RsiBelow(Rule):
    def __init__(self, level):
        self.level = level
    def fire(self, row):
        return row.rsi < self.level
class AboveSma(Rule):
    def fire(self, row):
        return row.close > row.sma_50
def strategy(df):
    rules = [RsiBelow(45), AboveSma()]
    hits = [r for r in df.itertuples() if all(rule.fire(r) for rule in rules)]
    return [{'ticker': r.ticker, 'date': r.date, 'rules': len(rules)} for r in hits[:20]] or [{'ticker': 'NONE'}]
""",
    "enum_state_machine": """
from enum import Enum
class State(Enum):
    FLAT = 'flat'
    LONG = 'long'
class Machine:
    def __init__(self):
        self.state = State.FLAT
        self.trades = 0
    def step(self, rsi):
        if self.state is State.FLAT and rsi < 40:
            self.state = State.LONG
            self.trades += 1
        elif self.state is State.LONG and rsi > 60:
            self.state = State.FLAT
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        m = Machine()
        for v in g['rsi'].dropna():
            m.step(v)
        out.append({'ticker': t, 'trades': m.trades, 'state': m.state.value})
    return out
""",
    "inheritance_chain": """
class Indicator:
    name = 'base'
    def compute(self, s):
        raise NotImplementedError
    def last(self, s):
        return float(self.compute(s).iloc[-1])
class Sma(Indicator):
    name = 'sma'
    def __init__(self, n):
        self.n = n
    def compute(self, s):
        return s.rolling(self.n).mean()
class Ema(Sma):
    name = 'ema'
    def compute(self, s):
        return s.ewm(span=self.n).mean()
def strategy(df):
    inds = [Sma(10), Ema(10)]
    return [{'ticker': t, **{i.name: i.last(g['close']) for i in inds}} for t, g in df.groupby('ticker')]
""",
    "portfolio_class_weights": """
class Portfolio:
    def __init__(self, target_vol=0.1):
        self.target_vol = target_vol
    def weights(self, df):
        vol = df.groupby('ticker')['returns'].std() * (252 ** 0.5)
        raw = self.target_vol / vol
        return (raw / raw.sum()).round(6)
def strategy(df):
    w = Portfolio().weights(df)
    return [{'ticker': t, 'weight': float(v)} for t, v in w.items()]
""",
    "generator_method_and_iter": """
class Bars:
    def __init__(self, g):
        self.g = g
    def __iter__(self):
        for r in self.g.itertuples():
            yield r
    def __len__(self):
        return len(self.g)
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        bars = Bars(g)
        ups = sum(1 for r in bars if r.close > r.open)
        out.append({'ticker': t, 'ups': ups, 'n': len(bars)})
    return out
""",
    "cached_property_class": """
from functools import cached_property
class Stats:
    def __init__(self, s):
        self.s = s
    @cached_property
    def mean(self):
        return float(self.s.mean())
    @cached_property
    def sd(self):
        return float(self.s.std())
def strategy(df):
    return [{'ticker': t, 'cv': Stats(g['close']).sd / Stats(g['close']).mean} for t, g in df.groupby('ticker')]
""",
    "class_registry_decorator": """
REGISTRY = {}
def register(cls):
    REGISTRY[cls.__name__] = cls
    return cls
@register
class Breakout:
    def run(self, g):
        return bool(g['close'].iloc[-1] >= g['high'].rolling(20).max().iloc[-1])
@register
class Dip:
    def run(self, g):
        return bool(g['close'].iloc[-1] <= g['low'].rolling(20).min().iloc[-1])
def strategy(df):
    return [{'ticker': t, **{name: cls().run(g) for name, cls in sorted(REGISTRY.items())}} for t, g in df.groupby('ticker')]
""",
}
"""Class-based strategies, the way backtesting.py and QuantConnect users write them."""

ZONES = (
    "America/New_York", "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo",
    "Europe/London", "Europe/Berlin", "Europe/Zurich", "Asia/Tokyo", "Asia/Hong_Kong",
    "Asia/Kolkata", "Asia/Shanghai", "Australia/Sydney", "Pacific/Auckland", "Africa/Johannesburg",
    "Etc/GMT+5", "UTC",
)  # fmt: skip

TIMEZONES: dict[str, str] = {
    **{
        f"tz_localize_{zone.replace('/', '_').lower()}": f"""
def strategy(df):
    g = df[df['ticker'] == df['ticker'].iloc[0]]
    local = g['date'].dt.tz_localize({zone!r}, nonexistent='shift_forward', ambiguous='NaT')
    utc = local.dt.tz_convert('UTC')
    return [{{'ticker': 'ALL', 'first': local.iloc[0], 'utc': utc.iloc[-1], 'tz': str(local.dt.tz)}}]
"""
        for zone in ZONES
    },
    "tz_convert_index": """
def strategy(df):
    d = df[df['ticker'] == df['ticker'].iloc[0]].set_index('date')['close']
    d.index = d.index.tz_localize('UTC').tz_convert('Europe/Paris')
    return [{'ticker': 'ALL', 'idx': d.index[0], 'hour': int(d.index.hour[0])}]
""",
    "timestamp_tz": """
def strategy(df):
    t = pd.Timestamp('2024-03-31 03:30', tz='Europe/London')
    u = pd.Timestamp('2024-06-01 09:30', tz='America/New_York').tz_convert('Asia/Singapore')
    return [{'ticker': 'ALL', 't': t, 'u': u, 'offset': str(pd.Timestamp('2024-01-01', tz='-05:00'))}]
""",
    "zoneinfo_many": """
from zoneinfo import ZoneInfo
import datetime as dt
NAMES = ['America/New_York', 'Europe/Moscow', 'Asia/Kathmandu', 'Australia/Adelaide', 'America/St_Johns',
         'Asia/Tehran', 'Pacific/Chatham', 'America/Argentina/Buenos_Aires', 'Europe/Istanbul', 'Asia/Dubai']
def strategy(df):
    when = dt.datetime(2024, 7, 1, 12, tzinfo=dt.timezone.utc)
    return [{'ticker': n, 'local': when.astimezone(ZoneInfo(n)).isoformat()} for n in NAMES]
""",
    "date_range_tz": """
def strategy(df):
    r = pd.date_range('2024-03-08', periods=4, freq='D', tz='America/New_York')
    return [{'ticker': 'ALL', 'days': [str(x) for x in r], 'utc': str(r.tz_convert('UTC')[-1])}]
""",
    "zoneinfo_database_read": """
import zoneinfo
import datetime as dt
def strategy(df):
    # no_cache and available_timezones() read the time-zone database now, not a preloaded zone.
    zone = zoneinfo.ZoneInfo.no_cache('Pacific/Chatham')
    when = dt.datetime(2024, 1, 15, 12, tzinfo=zone)
    names = zoneinfo.available_timezones()
    return [{'ticker': 'ALL', 'offset': str(when.utcoffset()), 'has_kolkata': 'Asia/Kolkata' in names, 'many': len(names) > 300}]
""",
}
"""Named time zones in every API that takes one."""

LIBRARIES: dict[str, str] = {
    **{
        f"talib_{name.lower()}": f"""
import talib
import talib.abstract
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        o, h, l, c, v = (g[k].to_numpy(dtype=float) for k in ('open', 'high', 'low', 'close', 'volume'))
        x = {expr}
        x = x if isinstance(x, tuple) else (x,)
        out.append({{'ticker': t, 'values': [float(np.nan_to_num(a[-1], nan=-1.0)) for a in x]}})
    return out
"""
        for name, expr in {
            "SMA": "talib.SMA(c, timeperiod=10)",
            "EMA": "talib.EMA(c, timeperiod=12)",
            "RSI": "talib.RSI(c, timeperiod=14)",
            "MACD": "talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)",
            "BBANDS": "talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2)",
            "ATR": "talib.ATR(h, l, c, timeperiod=14)",
            "ADX": "talib.ADX(h, l, c, timeperiod=14)",
            "CCI": "talib.CCI(h, l, c, timeperiod=20)",
            "STOCH": "talib.STOCH(h, l, c)",
            "WILLR": "talib.WILLR(h, l, c)",
            "MOM": "talib.MOM(c, timeperiod=10)",
            "ROC": "talib.ROC(c)",
            "OBV": "talib.OBV(c, v)",
            "MFI": "talib.MFI(h, l, c, v)",
            "AROON": "talib.AROON(h, l)",
            "SAR": "talib.SAR(h, l)",
            "KAMA": "talib.KAMA(c)",
            "CDLENGULFING": "talib.CDLENGULFING(o, h, l, c).astype(float)",
            "ABSTRACT": "talib.abstract.Function('RSI')({'close': c}, timeperiod=7)",
        }.items()
    },
    "talib_vs_rsi_column": """
import talib
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        mine = talib.RSI(g['close'].to_numpy(dtype=float), timeperiod=14)
        out.append({'ticker': t, 'talib': float(mine[-1]), 'column': float(g['rsi'].iloc[-1])})
    return out
""",
    "talib_bollinger_strategy": """
import talib
def strategy(df, params):
    n = int(params.get('n', 20))
    out = []
    for t, g in df.groupby('ticker'):
        upper, middle, lower = talib.BBANDS(g['close'].to_numpy(dtype=float), timeperiod=n)
        below = g['close'].to_numpy() < lower
        out += [{'ticker': t, 'date': d, 'signal': True} for d in g['date'][below]]
    return out or [{'ticker': 'NONE'}]
""",
    "scipy_zscore": """
from scipy import stats
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        z = stats.zscore(g['close'].to_numpy())
        out.append({'ticker': t, 'z': float(z[-1]), 'skew': float(stats.skew(g['returns'].dropna()))})
    return out
""",
    "scipy_linregress_ttest": """
import scipy.stats
def strategy(df):
    out = []
    for t, g in df.groupby('ticker'):
        r = scipy.stats.linregress(np.arange(len(g)), g['close'].to_numpy())
        tt = scipy.stats.ttest_1samp(g['returns'].dropna(), 0.0)
        out.append({'ticker': t, 'slope': float(r.slope), 'p': float(tt.pvalue)})
    return out
""",
    "scipy_optimize_signal": """
from scipy.optimize import minimize_scalar
from scipy.signal import argrelextrema, savgol_filter
def strategy(df):
    c = df[df['ticker'] == df['ticker'].iloc[0]]['close'].to_numpy()
    smooth = savgol_filter(c, 11, 2)
    peaks = argrelextrema(smooth, np.greater, order=5)[0]
    best = minimize_scalar(lambda k: ((c - k) ** 2).sum())
    return [{'ticker': 'ALL', 'peaks': len(peaks), 'k': round(float(best.x), 6)}]
""",
    "kendall_corr": """
def strategy(df):
    p = df.pivot(index='date', columns='ticker', values='close')
    k = p.corr(method='kendall')
    s = p.corr(method='spearman')
    return [{'ticker': t, 'kendall': float(k[t].mean()), 'spearman': float(s[t].mean())} for t in p.columns]
""",
    "statsmodels_ols_pairs": """
import statsmodels.api as sm
def strategy(df):
    p = df.pivot(index='date', columns='ticker', values='close').dropna()
    a, b = p.columns[:2]
    model = sm.OLS(p[a], sm.add_constant(p[b])).fit()
    spread = p[a] - model.params[b] * p[b]
    z = (spread - spread.mean()) / spread.std()
    return [{'ticker': str(a), 'hedge': float(model.params[b]), 'r2': float(model.rsquared), 'z': float(z.iloc[-1])}]
""",
    "statsmodels_adf_coint": """
from statsmodels.tsa.stattools import adfuller, coint
def strategy(df):
    p = df.pivot(index='date', columns='ticker', values='close').dropna()
    a, b = p.columns[:2]
    adf = adfuller(p[a] - p[b])
    c = coint(p[a], p[b])
    return [{'ticker': str(a), 'adf_stat': float(adf[0]), 'adf_p': float(adf[1]), 'coint_p': float(c[1])}]
""",
    "statsmodels_rolling_ols": """
from statsmodels.regression.rolling import RollingOLS
import statsmodels.api as sm
def strategy(df):
    p = df.pivot(index='date', columns='ticker', values='returns').dropna()
    a, b = p.columns[:2]
    res = RollingOLS(p[a], sm.add_constant(p[b]), window=60).fit()
    return [{'ticker': str(a), 'beta': float(res.params[b].iloc[-1])}]
""",
    "statsmodels_arima": """
from statsmodels.tsa.arima.model import ARIMA
import warnings
def strategy(df):
    r = df[df['ticker'] == df['ticker'].iloc[0]]['returns'].dropna().to_numpy()[-150:]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        fit = ARIMA(r, order=(1, 0, 0)).fit()
    return [{'ticker': 'ALL', 'ar1': round(float(fit.params[1]), 6), 'fc': round(float(fit.forecast(1)[0]), 8)}]
""",
    "statsmodels_formula": """
import statsmodels.formula.api as smf
def strategy(df):
    g = df[df['ticker'] == df['ticker'].iloc[0]].dropna(subset=['rsi', 'returns'])
    fit = smf.ols('returns ~ rsi + volume_ratio', data=g).fit()
    return [{'ticker': 'ALL', 'rsi_coef': float(fit.params['rsi']), 'n': int(fit.nobs)}]
""",
    "sklearn_classifier_on_history": """
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split
def strategy(df):
    d = df.dropna(subset=['rsi', 'macd', 'bb_position', 'returns']).copy()
    d['up'] = (d.groupby('ticker')['returns'].shift(-1) > 0).astype(int)
    X, y = d[['rsi', 'macd', 'bb_position']].to_numpy(), d['up'].to_numpy()
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, shuffle=False)
    clf = RandomForestClassifier(n_estimators=20, max_depth=3, random_state=0, n_jobs=1).fit(Xtr, ytr)
    last = d.groupby('ticker').tail(1)
    prob = clf.predict_proba(last[['rsi', 'macd', 'bb_position']].to_numpy())[:, 1]
    return [{'ticker': t, 'p_up': float(p), 'acc': float(clf.score(Xte, yte))} for t, p in zip(last['ticker'], prob)]
""",
    "sklearn_logistic_pipeline": """
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
def strategy(df):
    d = df.dropna(subset=['rsi', 'returns']).copy()
    y = (d['returns'] > 0).astype(int).to_numpy()
    X = d[['rsi', 'volume_ratio']].fillna(0).to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    return [{'ticker': 'ALL', 'score': float(model.score(X, y)), 'coef': [float(c) for c in model[-1].coef_[0]]}]
""",
    "sklearn_kmeans_regimes": """
from sklearn.cluster import KMeans
def strategy(df):
    d = df.dropna(subset=['returns', 'atr']).copy()
    km = KMeans(n_clusters=3, n_init=3, random_state=0).fit(d[['returns', 'atr']].to_numpy())
    d['regime'] = km.labels_
    last = d.groupby('ticker').tail(1)
    return [{'ticker': r.ticker, 'regime': int(r.regime)} for r in last.itertuples()]
""",
    "sklearn_ridge_cv": """
from sklearn.linear_model import Ridge
from sklearn.model_selection import TimeSeriesSplit, cross_val_score
def strategy(df):
    d = df.dropna(subset=['rsi', 'macd', 'returns'])
    X, y = d[['rsi', 'macd']].to_numpy(), d['returns'].to_numpy()
    scores = cross_val_score(Ridge(alpha=1.0), X, y, cv=TimeSeriesSplit(3))
    return [{'ticker': 'ALL', 'scores': [round(float(s), 10) for s in scores]}]
""",
    "sklearn_pca_metrics": """
from sklearn.decomposition import PCA
from sklearn.metrics import mean_squared_error
def strategy(df):
    p = df.pivot(index='date', columns='ticker', values='returns').dropna()
    pca = PCA(n_components=2).fit(p.to_numpy())
    back = pca.inverse_transform(pca.transform(p.to_numpy()))
    return [{'ticker': 'ALL', 'ev': [float(x) for x in pca.explained_variance_ratio_], 'mse': float(mean_squared_error(p.to_numpy(), back))}]
""",
    "sklearn_iris_digits_datasets": """
from sklearn.datasets import load_digits, load_iris
from sklearn.linear_model import LogisticRegression
def strategy(df):
    iris = load_iris()
    fit = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    digits = load_digits(n_class=2)
    first = df['ticker'].iloc[0]
    return [{'ticker': first, 'iris_rows': len(iris.data), 'iris_score': round(float(fit.score(iris.data, iris.target)), 6),
             'names': list(iris.target_names), 'digits': int(digits.data.shape[0]), 'descr': iris.DESCR.splitlines()[0]}]
""",
    "sklearn_bundled_frames": """
from sklearn.datasets import load_breast_cancer, load_diabetes, load_linnerud, load_wine
def strategy(df):
    wine = load_wine(as_frame=True).frame
    diabetes = load_diabetes(scaled=False)
    return [{'ticker': t, 'wine': wine.shape[0], 'wine_mean': round(float(wine['alcohol'].mean()), 6),
             'diabetes': round(float(diabetes.target.mean()), 6), 'cancer': len(load_breast_cancer().target),
             'linnerud': len(load_linnerud().data)} for t in sorted(df['ticker'].unique())[:2]]
""",
    "statsmodels_macrodata_ols": """
import statsmodels.api as sm
def strategy(df):
    macro = sm.datasets.macrodata.load_pandas().data
    infl = macro['infl']
    fit = sm.OLS(macro['realcons'], sm.add_constant(macro['realgdp'])).fit()
    sun = sm.datasets.sunspots.load_pandas().data
    return [{'ticker': df['ticker'].iloc[-1], 'quarters': len(macro), 'beta': round(float(fit.params['realgdp']), 8),
             'infl_mean': round(float(infl.mean()), 8), 'sunspots': len(sun), 'nile': len(sm.datasets.nile.load_pandas().data)}]
""",
    "statsmodels_dataset_load": """
from statsmodels.datasets import co2, longley, stackloss
def strategy(df):
    data = longley.load_pandas()
    c = co2.load_pandas().data
    return [{'ticker': 'ALL', 'longley': list(data.exog.columns), 'co2_rows': len(c),
             'stackloss': float(stackloss.load_pandas().endog.sum())}]
""",
    "scipy_sobol_bundled_table": """
from scipy.stats import qmc
def strategy(df):
    grid = qmc.Sobol(d=3, scramble=False).random_base2(4)
    return [{'ticker': t, 'point': [float(x) for x in grid[i]]} for i, t in enumerate(sorted(df['ticker'].unique()))]
""",
}
"""The preloaded libraries: TA-Lib, scipy, statsmodels, scikit-learn (and the data files they bundle)."""


def cases() -> dict[str, str]:
    """Every strategy of this module, by name (complete sources)."""
    found: dict[str, str] = {}
    for name in EXCEPTIONS:
        found[f"exception_{name}"] = _exception_case(name)
    for group, prefix in (
        (STDLIB, "stdlib"), (SUBMODULES, "submodule"), (HABITS, "habit"), (CLASSES, "class"),
        (TIMEZONES, "tz"), (LIBRARIES, "lib"),
    ):  # fmt: skip
        for name, code in group.items():
            found[f"{prefix}_{name}"] = code.strip("\n") + "\n"
    return found
