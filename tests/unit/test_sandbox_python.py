"""Full Python in the sandbox: the library list, refusals with the nearest alternative,
whose fault a run-time error is, warnings and logging in the logs."""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Iterator

import pytest

from strategyq import check_strategy, errors
from strategyq.sandbox import child, landlock, policy, run_with_logs
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits, Settings

LIMITS = SandboxLimits(time_limit_s=20, memory_mb=1024, answer_max_bytes=1 << 20)
pytestmark = pytest.mark.usefixtures("warmed")


@pytest.fixture
def no_libraries() -> Iterator[None]:
    before = policy.active_libraries()
    policy.set_active_libraries(())
    try:
        yield
    finally:
        policy.set_active_libraries(before)


def test_the_library_setting_defaults_to_all_and_trims() -> None:
    assert Settings.from_env({}).sandbox_libraries == ("talib", "scipy", "statsmodels", "sklearn")
    trimmed = Settings.from_env({"STRATEGYQ_SANDBOX_LIBRARIES": " scipy, TALIB "})
    assert trimmed.sandbox_libraries == ("scipy", "talib")
    assert Settings.from_env({"STRATEGYQ_SANDBOX_LIBRARIES": "none"}).sandbox_libraries == ()
    again = Settings.from_child_json(trimmed.for_child_process())
    assert again.sandbox_libraries == ("scipy", "talib")
    with pytest.raises(errors.ConfigError, match="choose among talib, scipy, statsmodels"):
        Settings.from_env({"STRATEGYQ_SANDBOX_LIBRARIES": "scipy,tensorflow"})


@pytest.mark.usefixtures("no_libraries")
def test_a_trimmed_library_points_to_what_is_there() -> None:
    result = check_strategy("import talib\ndef s(df):\n    return talib.RSI(df['close'])\n")
    assert result.error_type == "module_unavailable"
    assert "the sandbox does not provide module 'talib'" in result.findings[0]["message"]
    assert "`rsi`" in str(result.findings[0]["fix"]) and "Bollinger" in str(
        result.findings[0]["fix"]
    )
    statsmodels = check_strategy("import statsmodels.api as sm\ndef s(df):\n    return []\n")
    assert "np.polyfit" in str(statsmodels.findings[0]["fix"])


def test_a_library_reading_its_own_file_is_the_sandboxs_fault() -> None:
    own = os.path.join(sysconfig.get_paths()["purelib"], "sklearn", "datasets", "data", "iris.csv")
    kind, message = child.classify(PermissionError(13, "Permission denied", own), "")
    assert kind == "sandbox_error" and "bug of the sandbox" in message
    assert "site-packages" not in message
    kind, _ = child.classify(PermissionError(13, "Permission denied", "/etc/passwd"), "")
    assert kind == "prohibited_operation"
    climbing = os.path.join(os.path.dirname(own), *[".."] * 12, "etc", "passwd")
    kind, _ = child.classify(PermissionError(13, "Permission denied", climbing), "")
    assert kind == "prohibited_operation"


def test_bundled_data_files_are_read_in_the_sandbox() -> None:
    code = (
        "from sklearn.datasets import load_iris\n"
        "import statsmodels.api as sm\n"
        "def s(df):\n"
        "    macro = sm.datasets.macrodata.load_pandas().data\n"
        "    return [{'n': len(load_iris().data), 'quarters': len(macro)}]\n"
    )
    for check_policy in (True, False):
        value, _ = run_with_logs(code, warm_frame(), LIMITS, check_policy=check_policy)
        assert value == [{"n": 150, "quarters": 203}]


AUDITED = """
import sys, os
opened = []
def _hook(event, args):
    if event == 'open':
        opened.append([str(args[0]), args[2] if isinstance(args[2], int) else -1])
sys.addaudithook(_hook)
from sklearn import datasets
import statsmodels.api as sm
from scipy.stats import qmc
import zoneinfo

def s(df):
    for name in ('load_iris', 'load_digits', 'load_diabetes', 'load_wine', 'load_breast_cancer',
                 'load_linnerud'):
        getattr(datasets, name)()
    for name in ('macrodata', 'sunspots', 'longley', 'nile', 'co2', 'stackloss'):
        getattr(sm.datasets, name).load_pandas()
    qmc.Sobol(2).random(4)
    zoneinfo.ZoneInfo.no_cache('Asia/Kolkata')
    tried = list(opened)
    for attempt in tried:  # which of them the child can open at all (once more, read-only)
        try:
            os.close(os.open(attempt[0], os.O_RDONLY))
            attempt.append(True)
        except OSError:
            attempt.append(False)
    return [{'opened': tried}]
"""


def test_the_libraries_data_is_opened_read_only_and_only_where_granted() -> None:
    # An audit hook in the child (policy off) records every file the loaders open. (Folders
    # are listed too, by importlib.metadata for narwhals' plugins: refused, as every listing
    # is, which library_dir_neighbours in the escape corpus shows.)
    value, _ = run_with_logs(AUDITED, warm_frame(), LIMITS, check_policy=False)
    opened = value[0]["opened"]
    granted = landlock.readable()
    assert sum(ok for _, _, ok in opened) >= 20, opened
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    for path, flags, ok in opened:
        assert flags >= 0 and not flags & write, (path, oct(flags))
        real = os.path.realpath(path)
        # Whatever was opened lies in a granted folder, and all there could be. What else
        # was tried failed: importlib.metadata's look for narwhals' plugins in every
        # distribution's entry_points.txt, joblib's look at the cgroup CPU quota.
        assert ok == any(real.startswith(d + os.sep) for d in granted), (path, ok, granted)
    # Only the libraries' package folders and the time-zone database: never site-packages
    # as a whole, pandas or numpy, the home or working directory.
    site = sysconfig.get_paths()["purelib"]
    assert {os.path.basename(d) for d in granted if d.startswith(os.path.realpath(site))} == {
        "talib", "scipy", "statsmodels", "sklearn", "tzdata"
    }  # fmt: skip
    assert all(d.startswith((os.path.realpath(site) + os.sep, "/usr/")) for d in granted), granted


@pytest.mark.usefixtures("no_libraries")
def test_a_lean_process_grants_no_library_folder() -> None:
    from strategyq.sandbox import preload

    folders = preload.readable_directories(policy.active_libraries())
    assert not [d for d in folders if "site-packages" in d and "tzdata" not in d], folders


def test_user_file_access_stays_the_users_prohibited_operation() -> None:
    code = "def s(df):\n    f = 'etc/passwd'\n    return [{'x': open('/' + f).read()}]\n"
    with pytest.raises(errors.ProhibitedOperation):
        run_with_logs(code, warm_frame(), LIMITS, check_policy=False)


def test_warnings_and_logging_come_back_in_the_logs() -> None:
    code = (
        "import logging, warnings\n"
        "def s(df):\n"
        "    warnings.warn('thin data')\n"
        "    logging.getLogger('mine').warning('careful: %d rows', len(df))\n"
        "    logging.basicConfig(level=logging.INFO, format='%(levelname)s %(message)s')\n"
        "    logging.info('details')\n"
        "    return []\n"
    )
    value, logs = run_with_logs(code, warm_frame(), LIMITS)
    assert value == []
    assert "UserWarning: thin data" in logs.text
    assert "careful: " in logs.text and "INFO details" in logs.text


def test_time_works_within_the_limits() -> None:
    code = (
        "import time\n"
        "def s(df):\n"
        "    t, m = time.time(), time.monotonic()\n"
        "    time.sleep(0.05)\n"
        "    return [{'slept': time.monotonic() - m >= 0.05, 'now': t > 1.6e9}]\n"
    )
    value, _ = run_with_logs(code, warm_frame(), LIMITS)
    assert value == [{"slept": True, "now": True}]
    with pytest.raises(errors.StrategyTimeout):
        run_with_logs(
            "import time\ndef s(df):\n    time.sleep(30)\n    return []\n",
            warm_frame(),
            SandboxLimits(time_limit_s=1, memory_mb=512, answer_max_bytes=1 << 16),
        )


def test_getattr_of_an_internal_name_at_run_time_is_a_policy_error_with_its_line() -> None:
    code = "def s(df):\n    n = '__glob' + 'als__'\n    return [{'x': str(getattr(s, n))}]\n"
    with pytest.raises(errors.PolicyError) as info:
        run_with_logs(code, warm_frame(), LIMITS)
    assert "'__globals__' reaches the interpreter's internals" in str(info.value)
    assert "line 3" in str(info.value)


def test_every_builtin_exception_is_in_the_sandbox_builtins() -> None:
    import builtins

    from strategyq.sandbox.namespace import restricted_builtins

    table = restricted_builtins()
    for name, value in vars(builtins).items():
        if isinstance(value, type) and issubclass(value, BaseException):
            assert table[name] is value, name
    for name in policy.REFUSED_BUILTINS:
        assert name not in table or name == "__import__", name
