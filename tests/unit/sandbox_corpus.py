"""Adversarial strategy corpus for the sandbox tests, by threat class of docs/security.md.

Tokens replaced before a run: CANARY (a file outside the sandbox holding a
random secret, also in its ``user.strategyq`` extended attribute), CANARYDIR
(its folder), MARKER (a path that must never be created), PORT (a TCP
listener on 127.0.0.1 that must never see a connection), VICTIM (the pid of
another process of the same user whose priority, scheduling, affinity, I/O
priority, limits and life must not change).

Cases of classes 10 and 11 report ``{'denied': True}`` only when every call
they tried was refused; the tests fail on any ``'denied': False``.

``on`` is what a run with the policy check may end as (ordinary Python such as
classes, decorators, ``getattr`` and format templates is no longer refused by
the policy, so those cases may end "ok": the operating system is the boundary), ``off`` what a run
with ``check_policy=False`` (raw isolation layer) may end as: error types, or
"ok" for a harmless result. Either way the tests also check the side effects.
"""

from __future__ import annotations

from dataclasses import dataclass

POLICY = frozenset({"policy"})
HARMLESS = frozenset({"ok", "prohibited_operation", "strategy_error", "module_unavailable"})
DENIED = frozenset({"prohibited_operation"})
DENIED_OR_FAILED = frozenset({"prohibited_operation", "strategy_error", "module_unavailable"})


@dataclass(frozen=True)
class Case:
    name: str
    threat: int
    code: str
    on: frozenset[str] = POLICY
    off: frozenset[str] = HARMLESS
    fork_server_only: bool = False
    """Only through the fork server: a child of ``sandbox.run`` is a copy of the calling
    process (the test runner, with the traps' secrets), which is what class 14 is about."""


THREAD_BOMB_ASM = """
    push rbx; push r12; push r13; push r14; push r15
    mov r12, rdi; mov r13, rsi; mov r14, rdx      # attempts, stack top, futex word
    xor r15, r15; xor rbx, rbx
1:  test r12, r12; jz 3f; dec r12
    mov eax, 56; mov edi, 0x50F00                 # clone(VM|FS|FILES|SIGHAND|THREAD|SYSVSEM)
    mov rsi, r13; xor edx, edx; xor r10, r10; xor r8, r8; syscall
    test rax, rax; jz 4f; js 2f
    inc r15; sub r13, 256; jmp 1b
2:  mov rbx, rax; neg rbx
3:  mov rax, rbx; shl rax, 32; or rax, r15
    pop r15; pop r14; pop r13; pop r12; pop rbx; ret
4:  mov eax, 202; mov rdi, r14; xor esi, esi; xor edx, edx; xor r10, r10; syscall; jmp 4b
"""
"""A raw-clone thread bomb (x86-64, Intel syntax); THREAD_BOMB_HEX is its assembled bytes."""

THREAD_BOMB_HEX = (
    "5341544155415641574989fc4989f54989d64d31ff4831db4d85e4743349ffccb838000000bf000f0500"
    "4c89ee31d24d31d24d31c00f054885c07428780c49ffc74981ed00010000ebce4889c348f7db4889d848"
    "c1e0204c09f8415f415e415d415c5bc3b8ca0000004c89f731f631d24d31d20f05ebed"
)


ARCH_HEX = "53b814000000cd805b4863c0c3b8270000400f05c3"
"""i386 getpid through ``int 0x80`` (offset 0) and x32 getpid, 0x40000027 (offset 13)."""

_MACHINE = """
import ctypes

def _machine(hexcode, offset=0):
    libc = ctypes.CDLL(None)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    text = libc.mmap(None, 4096, 7, 0x22, -1, 0)   # PROT_READ|WRITE|EXEC, anonymous
    code = bytes.fromhex(hexcode)
    ctypes.memmove(text, code, len(code))
    return text + offset
"""


_LIBRARY_DIRS = """
import errno, os, sklearn, zoneinfo
LIB = os.path.dirname(sklearn.__file__)
READABLE = [LIB, os.path.join(LIB, 'datasets', 'data')]
READABLE += [p for p in zoneinfo.TZPATH if os.path.isdir(p)]
"""
"""Where a child may read files (scikit-learn's package, the time-zone database)."""


def _s(body: str, prelude: str = "") -> str:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    return f"{prelude}\ndef strategy(df):\n{lines}\n"


CASES: list[Case] = [
    # 1. builtins recovery
    Case(
        "subclasses",
        1,
        _s("""
for c in ().__class__.__base__.__subclasses__():
    if c.__name__ == 'Popen':
        c(['touch', 'MARKER'])
    if c.__name__ == 'FileIO':
        return [{'x': c('CANARY').read().decode()}]
return []
"""),
    ),
    Case(
        "func_globals",
        1,
        _s("""
g = strategy.__globals__
return [{'x': str(g['__builtins__'])}]
"""),
    ),
    Case(
        "builtins_name",
        1,
        _s("""
b = __builtins__
return [{'x': b['open']('CANARY').read()}]
"""),
    ),
    Case(
        "builtin_self",
        1,
        _s("""
m = len.__self__
return [{'x': m.open('CANARY').read()}]
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "library_globals",
        1,
        _s("""
osmod = pd.read_csv.__globals__['os']
osmod.system('touch MARKER')
return [{'x': osmod.environ.get('REDIS_PASSWORD', '')}]
"""),
    ),
    Case(
        "np_globals",
        1,
        _s("""
g = np.array.__globals__
return [{'x': 1}]
"""),
    ),
    Case(
        "import_os_system",
        1,
        _s("""
import os
os.system('touch MARKER')
return [{'x': os.popen('cat CANARY').read()}]
"""),
    ),
    Case(
        "dunder_import",
        1,
        _s("""
os = __import__('os')
return [{'x': os.popen('cat CANARY').read()}]
"""),
    ),
    Case(
        "import_builtins_module",
        1,
        _s("""
import builtins
return [{'x': builtins.open('CANARY').read()}]
"""),
        off=DENIED,
    ),
    Case(
        "import_ctypes",
        1,
        _s("""
import ctypes
libc = ctypes.CDLL(None)
libc.system(b'touch MARKER')
return [{'x': 1}]
"""),
    ),
    Case(
        "type_three_args",
        1,
        _s("""
T = type('T', (), {'x': 1})
return [{'x': T.x}]
"""),
        off=frozenset({"ok"}),
        on=frozenset({"ok"}),
    ),
    Case(
        "object_base",
        1,
        _s("""
return [{'x': len(object.__subclasses__())}]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "class_def_escape",
        1,
        _s("""
class X:
    def __init__(self):
        self.v = 1
return [{'x': X().v}]
"""),
        off=frozenset({"ok"}),
        on=frozenset({"ok"}),
    ),
    # 2. frame walking
    Case(
        "generator_frame",
        2,
        _s("""
def gen():
    yield 1
g = gen()
f = g.gi_frame.f_back
return [{'x': str(f.f_globals.keys())}]
"""),
    ),
    Case(
        "traceback_frames",
        2,
        _s("""
try:
    1 / 0
except Exception as e:
    tb = e.__traceback__
    fr = tb.tb_frame.f_back
    return [{'x': str(fr.f_globals.get('os'))}]
"""),
    ),
    Case(
        "frame_builtins",
        2,
        _s("""
def gen():
    yield 1
g = gen()
b = g.gi_frame.f_builtins
return [{'x': b['open']('CANARY').read()}]
"""),
        off=DENIED,
    ),
    Case(
        "coroutine_frame",
        2,
        _s("""
async def co():
    return 1
c = co()
fr = c.cr_frame
c.close()
return [{'x': str(fr)}]
"""),
    ),
    Case(
        "sys_getframe",
        2,
        _s("""
import sys
f = sys._getframe(0)
while f.f_back:
    f = f.f_back
return [{'x': str(f.f_globals.get('__file__'))}]
"""),
    ),
    # 3. format strings
    Case(
        "str_format_attr",
        3,
        _s("""
return [{'x': '{0.__class__.__mro__}'.format(df)}]
"""),
    ),
    Case(
        "format_map_globals",
        3,
        _s("""
return [{'x': '{f.__globals__}'.format_map({'f': strategy})}]
"""),
    ),
    Case(
        "string_formatter",
        3,
        _s("""
import string
return [{'x': string.Formatter().format('{0.__init__.__globals__}', df)}]
"""),
    ),
    Case(
        "format_method_reference",
        3,
        _s("""
f = 'x{0.real}'.format
return [{'x': f(1)}]
"""),
        off=frozenset({"ok"}),
        on=frozenset({"ok"}),
    ),
    # 4. attributes named at run time
    Case(
        "getattr_computed",
        4,
        _s("""
name = '__cla' + 'ss__'
return [{'x': str(getattr(df, name))}]
"""),
    ),
    Case(
        "getattr_plain",
        4,
        _s("""
return [{'x': str(getattr(df, 'sha' + 'pe'))}]
"""),
        off=frozenset({"ok"}),
        on=frozenset({"ok"}),
    ),
    Case(
        "attrgetter",
        4,
        _s("""
import operator
g = operator.attrgetter('__globals__')
return [{'x': str(g(strategy))}]
"""),
    ),
    Case(
        "apply_string_dispatch",
        4,
        _s("""
return [{'x': str(df['close'].apply('__class__'))}]
"""),
    ),
    Case(
        "agg_private_name",
        4,
        _s("""
return [{'x': str(df.agg('_constructor'))}]
"""),
        on=HARMLESS,
    ),
    Case(
        "agg_computed_private_name",
        4,
        _s("""
return [{'x': str(df['close'].agg('_' + 'constructor'))}]
"""),
        on=HARMLESS,
    ),
    Case(
        "vars_of_module",
        4,
        _s("""
return [{'x': str(vars(pd)['io'])}]
"""),
        on=HARMLESS,
    ),
    Case(
        "hasattr_probe",
        4,
        _s("""
return [{'x': hasattr(pd, 'io')}]
"""),
        off=frozenset({"ok"}),
        on=frozenset({"ok"}),
    ),
    # 5. syntax tricks
    Case(
        "decorator_call",
        5,
        _s("""
def deco(f):
    return f
@deco
def helper(x):
    return x
return [{'x': helper(1)}]
"""),
        off=frozenset({"ok"}),
        on=HARMLESS,
    ),
    Case(
        "loop_attribute_target",
        5,
        _s("""
class Box:
    pass
b = Box()
for b.attr in [1, 2]:
    pass
return [{'x': b.attr}]
"""),
        off=frozenset({"ok"}),
        on=HARMLESS,
    ),
    Case(
        "loop_dunder_target",
        5,
        _s("""
def f():
    pass
for f.__code__ in [strategy.__code__]:
    pass
return []
"""),
        off=frozenset({"ok", "strategy_error"}),
    ),
    Case(
        "match_class_pattern",
        5,
        _s("""
match df:
    case pd.DataFrame(__class__=c):
        return [{'x': str(c)}]
return []
"""),
    ),
    Case(
        "unicode_lookalike_dunder",
        5,
        _s("""
return [{'x': str(().__ｃlass__)}]
"""),
    ),
    Case(
        "unicode_lookalike_eval",
        5,
        _s("""
return [{'x': ｅval('1+1')}]
"""),
    ),
    Case(
        "coding_cookie",
        5,
        "# -*- coding: utf-7 -*-\n"
        + _s("""
return [{'x': 1}]
"""),
        on=frozenset({"ok"}),
        off=frozenset({"ok"}),
    ),
    Case(
        "lambda_default_leak",
        5,
        _s("""
f = lambda g=strategy.__globals__: g
return [{'x': str(f())}]
"""),
    ),
    Case(
        "walrus_dunder",
        5,
        _s("""
if (b := __builtins__):
    return [{'x': str(b)}]
return []
"""),
    ),
    Case(
        "exec_compile",
        5,
        _s("""
exec(compile("import os; os.system('touch MARKER')", 's', 'exec'))
return []
"""),
    ),
    # 6. special methods on returned objects
    Case(
        "returned_reduce",
        6,
        _s("""
class Evil:
    def __reduce__(self):
        return (print, ('pwned',))
return [{'x': Evil()}]
"""),
        off=frozenset({"bad_result"}),
        on=frozenset({"bad_result"}),
    ),
    Case(
        "returned_eq_str",
        6,
        _s("""
class Evil(dict):
    def __eq__(self, other):
        open('MARKER', 'w')
        return True
    def __str__(self):
        open('MARKER', 'w')
        return 'x'
return [Evil(ticker='A')]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "exception_str",
        6,
        _s("""
class Boom(Exception):
    def __str__(self):
        open('MARKER', 'w').write('x')
        return 'boom'
raise Boom()
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "base_exception_subclass",
        6,
        _s("""
class Escape(BaseException):
    pass
raise Escape('out')
"""),
        off=frozenset({"strategy_error"}),
        on=frozenset({"strategy_error"}),
    ),
    Case(
        "system_exit",
        6,
        _s("""
raise SystemExit(0)
"""),
        on=frozenset({"strategy_error"}),
        off=frozenset({"strategy_error"}),
    ),
    Case(
        "keyboard_interrupt",
        6,
        _s("""
raise KeyboardInterrupt
"""),
        on=frozenset({"strategy_error"}),
        off=frozenset({"strategy_error"}),
    ),
    Case(
        "del_finaliser",
        6,
        _s("""
class Later:
    def __del__(self):
        import os
        os.system('touch MARKER')
x = Later()
return [{'x': 1}]
"""),
        off=frozenset({"ok"}),
    ),
    # 7. pandas/numpy I/O and escape hatches
    Case(
        "read_csv_canary",
        7,
        _s("""
return pd.read_csv('CANARY', header=None).to_dict('records')
"""),
        off=DENIED,
    ),
    Case(
        "read_csv_url",
        7,
        _s("""
return pd.read_csv('http://127.0.0.1:PORT/x.csv').to_dict('records')
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "to_csv_marker",
        7,
        _s("""
df.head(1).to_csv('MARKER')
return []
"""),
        off=DENIED,
    ),
    Case(
        "read_pickle",
        7,
        _s("""
return [{'x': str(pd.read_pickle('CANARY'))}]
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "np_load_pickle",
        7,
        _s("""
return [{'x': str(np.load('CANARY', allow_pickle=True))}]
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "np_fromfile",
        7,
        _s("""
return [{'x': np.fromfile('CANARY', dtype='uint8').tobytes().decode()}]
"""),
        off=DENIED,
    ),
    Case(
        "np_memmap",
        7,
        _s("""
m = np.memmap('CANARY', dtype='uint8', mode='r')
return [{'x': bytes(m).decode()}]
"""),
        off=DENIED,
    ),
    Case(
        "np_save",
        7,
        _s("""
np.save('MARKER', np.arange(3))
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "tofile",
        7,
        _s("""
np.arange(3).tofile('MARKER')
return []
"""),
        off=DENIED,
    ),
    Case(
        "query_at_local",
        7,
        _s("""
secret = 1
return df.query('close > @secret').head(1)
"""),
        off=frozenset({"ok"}),
        on=HARMLESS,
    ),
    Case(
        "eval_escape",
        7,
        _s("""
return [{'x': str(df.eval('close.__class__'))}]
"""),
        off=HARMLESS,
    ),
    Case(
        "styler_template",
        7,
        _s("""
s = df.head(1).style
return [{'x': s.to_html()}]
"""),
        off=DENIED_OR_FAILED,
        on=HARMLESS,
    ),
    Case(
        "plotting_backend",
        7,
        _s("""
pd.set_option('plotting.backend', 'os')
df.plot()
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "options_attribute",
        7,
        _s("""
pd.options.plotting.backend = 'subprocess'
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "ctypeslib",
        7,
        _s("""
lib = np.ctypeslib.load_library('libc', '/lib/x86_64-linux-gnu')
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "as_strided_read",
        7,
        _s("""
a = np.zeros(1, dtype='uint8')
b = np.lib.stride_tricks.as_strided(a, shape=(64,), strides=(1,))
return [{'x': int(b.sum())}]
"""),
        off=frozenset({"ok", "memory"}),
        on=frozenset({"ok", "memory"}),
    ),
    Case(
        "pd_compat_os",
        7,
        _s("""
pd.compat.os.system('touch MARKER')
return []
"""),
    ),
    Case(
        "pd_io_common",
        7,
        _s("""
h = pd.io.common.get_handle('CANARY', 'r')
return [{'x': h.handle.read()}]
"""),
        off=DENIED_OR_FAILED,
        on=DENIED_OR_FAILED,
    ),
    Case(
        "from_pandas_import_reader",
        7,
        "from pandas import read_csv\n"
        + _s("""
return read_csv('CANARY').to_dict('records')
"""),
        off=DENIED,
    ),
    # 9. exfiltration
    Case(
        "environ",
        9,
        _s("""
import os
return [{'x': dict(os.environ)}]
"""),
    ),
    Case(
        "proc_self_environ",
        9,
        _s("""
return [{'x': open('/proc/self/environ', 'rb').read().decode('latin-1')}]
"""),
        off=DENIED,
    ),
    Case(
        "proc_parent_environ",
        9,
        _s("""
import os
return [{'x': open(f'/proc/{os.getppid()}/environ', 'rb').read().decode('latin-1')}]
"""),
        off=DENIED_OR_FAILED,  # getppid is refused: the path names no process
    ),
    Case(
        "proc_parent_mem",
        9,
        _s("""
import os
with open(f'/proc/{os.getppid()}/mem', 'rb') as f:
    return [{'x': f.read(16).hex()}]
"""),
        off=DENIED_OR_FAILED,  # getppid is refused: the path names no process
    ),
    Case(
        "inherited_sockets",
        9,
        _s("""
import os
found = []
for fd in range(0, 256):
    try:
        os.fstat(fd)
        found.append(fd)
    except OSError:
        pass
for fd in found[4:]:
    os.write(fd, b'*1\\r\\n$8\\r\\nFLUSHALL\\r\\n')
return [{'x': found}]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "connect_listener",
        9,
        _s("""
import socket
s = socket.create_connection(('127.0.0.1', PORT), timeout=1)
s.sendall(b'CANARY')
return []
"""),
        off=DENIED,
    ),
    Case(
        "connect_raw_libc",
        9,
        _s("""
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.socket(2, 1, 0)
return [{'fd': fd, 'errno': ctypes.get_errno()}]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "subprocess_marker",
        9,
        _s("""
import subprocess
subprocess.run(['touch', 'MARKER'])
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "os_fork_marker",
        9,
        _s("""
import os
pid = os.fork()
if pid == 0:
    open('MARKER', 'w').write('child')
    os._exit(0)
return []
"""),
        off=DENIED,
    ),
    Case(
        "thread_is_also_jailed",
        9,
        _s("""
import threading
out = []
def grab():
    try:
        out.append(open('CANARY').read())
    except OSError as e:
        out.append(type(e).__name__)
t = threading.Thread(target=grab)
t.start()
t.join()
return [{'x': out}]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "kill_parent",
        9,
        _s("""
import os, signal
os.kill(os.getppid(), signal.SIGTERM)
return []
"""),
        off=DENIED,
    ),
    Case(
        "raise_rlimit",
        9,
        _s("""
import resource
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
open('MARKER', 'w').write('x')
return []
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "ptrace_parent",
        9,
        _s("""
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.ptrace(16, os.getppid(), 0, 0)
return [{'rc': rc, 'errno': ctypes.get_errno()}]
"""),
        off=frozenset({"ok"}),
    ),
    Case(
        "chmod_canary",
        9,
        _s("""
import os
os.chmod('CANARY', 0o777)
return []
"""),
        off=DENIED,
    ),
    # 9. through the libraries' data directories, the only places a child may read (and
    # only read): each case reports {'denied': True} when every attempt was refused.
    *[
        Case(name, 9, _s(body, _LIBRARY_DIRS), off=frozenset({"ok"}))
        for name, body in {
            "library_dir_dotdot": """
refused = 0
for base in READABLE:
    try:
        with open(base + '/..' * 16 + 'CANARY') as f:
            return [{'x': f.read()}]
    except OSError as e:
        refused += e.errno == errno.EACCES
return [{'denied': refused == len(READABLE) >= 2}]
""",
            "library_dir_neighbours": """
import numpy, strategyq, sys
site = os.path.dirname(LIB)
targets = [os.path.join(os.path.dirname(numpy.__file__), '__init__.py'),
           os.path.join(os.path.dirname(strategyq.__file__), 'settings.py'),
           os.path.join(sys.prefix, 'pyvenv.cfg'), LIB + '.secret', LIB + '-1.0.dist-info/RECORD',
           '/etc/passwd', '/proc/self/environ', '/proc/1/environ', 'CANARY']
refused = 0
for path in targets:
    try:
        with open(path, 'rb') as f:
            return [{'x': f.read(64).decode('latin-1'), 'path': path}]
    except OSError as e:
        refused += e.errno in (errno.EACCES, errno.ENOENT)
listed = 0
for folder in (site, LIB, os.path.join(LIB, 'datasets', 'data'), *READABLE):
    try:
        os.listdir(folder)
    except OSError as e:
        listed += e.errno == errno.EACCES
return [{'denied': refused == len(targets) and listed == 3 + len(READABLE)}]
""",
            "library_dir_writes": """
data = os.path.join(LIB, 'datasets', 'data')
iris = os.path.join(data, 'iris.csv')
before = open(iris, 'rb').read()
attempts = [
    lambda: open(os.path.join(data, 'new.csv'), 'w'),
    lambda: open(iris, 'r+b'),
    lambda: open(iris, 'ab'),
    lambda: open(os.path.join(data, 'new.csv'), 'x'),
    lambda: os.open(os.path.join(data, 'new.csv'), os.O_CREAT | os.O_WRONLY, 0o644),
    lambda: os.open(iris, os.O_RDONLY | os.O_TRUNC),
    lambda: os.truncate(iris, 0),
    lambda: os.remove(iris),
    lambda: os.rename(iris, iris + '.bak'),
    lambda: os.mkdir(os.path.join(data, 'sub')),
    lambda: os.symlink('CANARY', os.path.join(data, 'link')),
    lambda: os.link('CANARY', os.path.join(data, 'hard')),
    lambda: os.chmod(iris, 0o777),
    lambda: os.utime(iris, (0, 0)),
    lambda: os.mkfifo(os.path.join(data, 'fifo')),
]
refused = 0
for attempt in attempts:
    try:
        attempt().close()
    except AttributeError:  # os.open's descriptor: opened
        pass
    except OSError as e:
        refused += e.errno in (errno.EPERM, errno.EACCES)
after = open(iris, 'rb').read()
return [{'denied': refused == len(attempts) and after == before and len(before) > 1000}]
""",
        }.items()
    ],
    # 10. cross-task interference: another process of the same user
    *[
        Case(
            name,
            10,
            _s(body, "import os, ctypes, errno, resource, fcntl, signal"),
            off=frozenset({"ok"}),
        )
        for name, body in {
            "setpriority_other": """
try:
    os.setpriority(os.PRIO_PROCESS, VICTIM, 19)
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "setpriority_whole_user": """
try:
    os.setpriority(os.PRIO_USER, 0, 19)
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "sched_setscheduler_other": """
try:
    os.sched_setscheduler(VICTIM, os.SCHED_IDLE, os.sched_param(0))
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "sched_setaffinity_other": """
try:
    os.sched_setaffinity(VICTIM, {0})
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "ioprio_set_other": """
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.syscall(251, 1, VICTIM, 3 << 13)
return [{'denied': rc == -1 and ctypes.get_errno() == errno.EPERM}]
""",
            "prlimit_other": """
try:
    resource.prlimit(VICTIM, resource.RLIMIT_NOFILE, (4, 4))
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "kill_other": """
try:
    os.kill(VICTIM, signal.SIGKILL)
    return [{'denied': False}]
except OSError as e:
    return [{'denied': e.errno == errno.EPERM}]
""",
            "tgkill_other": """
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.syscall(234, VICTIM, VICTIM, 9)
return [{'denied': rc == -1 and ctypes.get_errno() == errno.EPERM}]
""",
            "fsetown_sigkill_through_pipe": """
refused = 0
for cmd, arg in ((fcntl.F_SETOWN, VICTIM), (10, signal.SIGKILL), (fcntl.F_SETFL, os.O_ASYNC)):
    try:
        fcntl.fcntl(3, cmd, arg)
    except OSError as e:
        refused += e.errno == errno.EPERM
# Had the calls worked, the result written next would signal VICTIM (SIGKILL).
return [{'denied': refused == 3}]
""",
            "fsetown_ex_and_lease": """
refused = 0
for cmd in (15, 1024, 1026):
    try:
        fcntl.fcntl(3, cmd, 0)
    except OSError as e:
        refused += e.errno == errno.EPERM
return [{'denied': refused == 3}]
""",
        }.items()
    ],
    # 11. metadata and calls a deny-list forgets
    *[
        Case(name, 11, _s(body, "import os, ctypes, errno"), off=frozenset({"ok"}))
        for name, body in {
            "fchmodat2_setuid": """
libc = ctypes.CDLL(None, use_errno=True)
rc = libc.syscall(452, -100, b'CANARY', 0o4777, 0)
return [{'denied': rc == -1 and ctypes.get_errno() == errno.EPERM}]
""",
            "setxattrat_removexattrat": """
libc = ctypes.CDLL(None, use_errno=True)
value = ctypes.create_string_buffer(b'pwned')
args = (ctypes.c_void_p * 4)(ctypes.cast(value, ctypes.c_void_p).value, 5, 0, 0)
a = libc.syscall(463, -100, b'CANARY', 0, b'user.strategyq', args, 32)
ea = ctypes.get_errno()
b = libc.syscall(466, -100, b'CANARY', 0, b'user.strategyq')
eb = ctypes.get_errno()
return [{'denied': a == -1 and b == -1 and ea == eb == errno.EPERM}]
""",
            "xattr_calls": """
refused = 0
for call in (lambda: os.setxattr('CANARY', 'user.strategyq', b'pwned'),
             lambda: os.removexattr('CANARY', 'user.strategyq'),
             lambda: os.getxattr('CANARY', 'user.strategyq'),
             lambda: os.listxattr('CANARY')):
    try:
        call()
    except OSError as e:
        refused += e.errno == errno.EPERM
return [{'denied': refused == 4}]
""",
            "inotify_watch_folder": """
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(294, 0)
e1 = ctypes.get_errno()
wd = libc.syscall(254, max(fd, 0), b'CANARYDIR', 0xfff)
return [{'denied': fd == -1 and e1 == errno.EPERM and wd == -1}]
""",
            "fanotify_init": """
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(300, 0, 0)
return [{'denied': fd == -1 and ctypes.get_errno() == errno.EPERM}]
""",
            "future_syscalls": """
libc = ctypes.CDLL(None, use_errno=True)
results = []
for number in (470, 471, 480, 500, 1000):
    rc = libc.syscall(number, 0, 0, 0)
    results.append(rc == -1 and ctypes.get_errno() == errno.EPERM)
return [{'denied': all(results)}]
""",
            "chmod_family_and_utimes": """
refused = 0
for call in (lambda: os.chmod('CANARY', 0o4777), lambda: os.utime('CANARY', (0, 0)),
             lambda: os.chown('CANARY', 0, 0)):
    try:
        call()
    except OSError as e:
        refused += e.errno == errno.EPERM
return [{'denied': refused == 3}]
""",
        }.items()
    ],
    # 12. amplification on the trusted side (the engine's part: test_sandbox_trusted_side.py)
    Case(
        "millions_of_tiny_objects",
        12,
        _s("""
return [{'ticker': 'AAPL'}] + [{}] * 300_000
"""),
        on=frozenset({"bad_result"}),
        off=frozenset({"bad_result"}),
    ),
    Case(
        "long_key_times_long_list",
        12,
        _s("""
k = 'k' * 500_000
return [{'ticker': 'AAPL', k: [0] * 100_000}]
"""),
        on=frozenset({"ok"}),
        off=frozenset({"ok"}),
    ),
    # 4. routes from library namespaces to real modules (policy: attribute chains, eval strings)
    Case(
        "statistics_sys_modules",
        4,
        _s("""
import statistics
os = statistics.sys.modules['os']
os.system('touch MARKER')
return [{'x': os.environ.get('REDIS_PASSWORD', '')}]
"""),
    ),
    Case(
        "np_ma_builtins_open",
        4,
        _s("""
b = np.ma.extras.ma.builtins
return [{'x': b.open('CANARY').read()}]
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "pd_eval_reaches_os",
        4,
        _s("""
o = pd.eval('pd.io.common.os')
o.system('touch MARKER')
return [{'x': o.listdir('/')}]
"""),
        off=DENIED_OR_FAILED,
    ),
    Case(
        "query_string_attribute",
        4,
        _s("""
return df.query('ticker.__class__ == ticker').to_dict('records')
"""),
    ),
    Case(
        "operator_attrgetter_globals",
        4,
        _s("""
get = np.polynomial.polyutils.operator.attrgetter('_' * 2 + 'globals' + '_' * 2)
g = get(pd.read_csv)
g['os'].system('touch MARKER')
return [{'x': str(g['os'].environ)}]
"""),
        on=HARMLESS,
    ),
    Case(
        "inspect_getmembers_frame",
        4,
        _s("""
insp = np.ma.extras.ma.inspect
frame = insp.currentframe()
return [{'x': str(insp.getmembers(frame.f_back))[:100]}]
"""),
    ),
    # 9. another process of the same user, named by pid (getppid itself is refused)
    Case(
        "proc_other_environ",
        9,
        _s("""
return [{'x': open('/proc/VICTIM/environ', 'rb').read().decode('latin-1')}]
"""),
        off=DENIED,
    ),
    Case(
        "proc_other_mem",
        9,
        _s("""
with open('/proc/VICTIM/mem', 'rb') as f:
    return [{'x': f.read(16).hex()}]
"""),
        off=DENIED,
    ),
    # 13. raw system calls through machine code
    Case(
        "raw_clone_thread_bomb",
        13,
        _s(
            f"""
bomb = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)(
    _machine("{THREAD_BOMB_HEX}"))
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
stacks = libc.mmap(None, 1 << 20, 3, 0x22, -1, 0)
word = ctypes.c_int(0)
out = bomb(3000, stacks + (1 << 20) - 64, ctypes.addressof(word))
threads, err = out & 0xFFFFFFFF, out >> 32
if threads >= 64 or err != 11:
    raise AssertionError(f'not capped: {{threads}} threads, errno {{err}}')
return [{{'x': 'capped at ' + str(threads + 1)}}]
""",
            _MACHINE,
        ),
        off=frozenset({"ok"}),
    ),
    Case(
        "i386_int80",
        13,
        _s(
            f"""
pid = ctypes.CFUNCTYPE(ctypes.c_int64)(_machine("{ARCH_HEX}", 0))()
if pid > 0:
    raise AssertionError('an i386 system call went through')
return [{{'x': pid}}]
""",
            _MACHINE,
        ),
        off=frozenset({"ok", "prohibited_operation"}),
    ),
    Case(
        "x32_syscall",
        13,
        _s(
            f"""
pid = ctypes.CFUNCTYPE(ctypes.c_int64)(_machine("{ARCH_HEX}", 13))()
if pid > 0:
    raise AssertionError('an x32 system call went through')
return [{{'x': pid}}]
""",
            _MACHINE,
        ),
        off=frozenset({"ok", "prohibited_operation"}),
    ),
    # 14. everything in the child's own memory (through the fork server only: see Case)
    Case(
        "gc_unfreeze_walk",
        14,
        _s("""
import gc
gc.unfreeze()
found = []
for o in gc.get_objects():
    module = getattr(type(o), '__module__', '')
    if isinstance(module, str) and module.startswith('strategyq.data'):
        found.append(type(o).__name__)
    # dict's own methods: a library's lazy mapping answers its overridden ones by
    # importing what it stands for.
    if issubclass(type(o), dict):
        for v in list(dict.values(o)) + list(dict.keys(o)):
            if isinstance(v, str) and ('secret' in v or 'REDIS' in v or 'data_dir' in v):
                found.append(v[:200])
return [{'x': found[:50]}]
"""),
        off=frozenset({"ok"}),
        fork_server_only=True,
    ),
    Case(
        "host_environment_in_memory",
        14,
        _s("""
import ctypes
# The command line and environment the process started with, at the top of its stack
# (from argv[0] to the exec file name): clearing os.environ leaves these bytes in place.
libc = ctypes.CDLL(None)
libc.getauxval.restype = ctypes.c_ulong
libc.getauxval.argtypes = [ctypes.c_ulong]
start = ctypes.c_void_p.in_dll(libc, 'program_invocation_name').value
end = libc.getauxval(31)  # AT_EXECFN
block = ctypes.string_at(start, end - start) + ctypes.string_at(end)
if b'PATH=' not in block:
    raise AssertionError('the scan did not reach the environment block')
return [{'x': block.replace(b'\\0', b' ').decode('latin-1')}]
"""),
        off=frozenset({"ok"}),
        fork_server_only=True,
    ),
]
