"""Confinement of a verification worker process (docs/reward.md, "Isolation").

:func:`harden` is called once in each worker after its imports. Model text is never evaluated
as Python on the paths we found (docs/reward.md, "Code execution"); this is the second line:
if some path we missed did evaluate it, the code could compute but not act.

- Resource limits: address space (``memory_mb``), no file growth (writes to regular files fail),
  no core dumps, and a CPU-time limit re-armed before every answer by the worker so that a
  worker whose parent died still stops (SIGXCPU) instead of spinning forever.
- An audit hook (PEP 578; cannot be removed once added) refuses process creation, signals to
  other processes, sockets, file writes and deletions, ctypes, further audit hooks and rlimit
  changes other than the CPU one. Each refusal is counted in :data:`violations`.
- sympy's ``parse_expr`` (which ``sympify`` of a string reaches) refuses dunder names, quotes,
  ``lambda`` and ``import``: no legitimate sympy-internal string uses them.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import sys

violations = 0

_DENIED_EVENTS = frozenset(
    {
        "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
        "os.kill", "os.killpg", "subprocess.Popen", "pty.spawn", "os.startfile",
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr",
        "os.remove", "os.rename", "os.replace", "os.rmdir", "os.mkdir", "os.chmod", "os.chown",
        "os.truncate", "os.symlink", "os.link", "os.utime", "os.putenv", "os.unsetenv",
        "shutil.rmtree", "shutil.copyfile", "shutil.copymode", "shutil.move",
        "shutil.make_archive", "shutil.unpack_archive",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.call_function", "ctypes.cdata",
        "webbrowser.open", "urllib.Request", "http.client.connect", "ftplib.connect",
        "smtplib.connect", "pickle.find_class", "sys.addaudithook",
    }
)  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_UNSAFE_SOURCE_RE = re.compile(r"__|lambda|import|[`'\";]")


class SandboxViolation(RuntimeError):
    """Raised inside a worker when verification tries something the sandbox refuses.

    A RuntimeError so that ``sys.addaudithook`` refusals are honoured (CPython requires it).
    """


def _audit(event: str, args: tuple) -> None:
    global violations
    if event in _DENIED_EVENTS:
        pass
    elif event == "open":
        mode, flags = args[1], args[2]
        if not (isinstance(mode, str) and any(c in mode for c in "wax+")) and not (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        ):
            return
    elif event == "resource.setrlimit":
        if args[0] == resource.RLIMIT_CPU:
            return
    else:
        return
    violations += 1
    raise SandboxViolation(f"refused by the reward sandbox: {event}")


def _guard_sympy_parser() -> None:
    from sympy.parsing import sympy_parser

    original = sympy_parser.parse_expr

    def guarded(s, *args, **kwargs):
        global violations
        if isinstance(s, str) and _UNSAFE_SOURCE_RE.search(s):
            violations += 1
            raise SandboxViolation("string refused by the reward sandbox's parse_expr guard")
        return original(s, *args, **kwargs)

    sympy_parser.parse_expr = guarded


def _set_limit(which: int, soft: int) -> None:
    _, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY and soft > hard:
        soft = hard
    resource.setrlimit(which, (soft, hard))


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the thread that spawned it exits (prctl PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def arm_cpu_limit(seconds: float) -> None:
    """Allow this process ``seconds`` more CPU time from now, then SIGXCPU ends it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    _set_limit(resource.RLIMIT_CPU, int(used + seconds) + 1)


def harden(memory_mb: int | None, die_with_parent: bool) -> None:
    """Confine the current process for verification; irreversible. Call after imports."""
    if die_with_parent:
        _die_with_parent()
    sys.dont_write_bytecode = True
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a refused write fails instead of killing
    _set_limit(resource.RLIMIT_CORE, 0)
    _set_limit(resource.RLIMIT_FSIZE, 0)
    if memory_mb is not None:
        _set_limit(resource.RLIMIT_AS, int(memory_mb) * 1024 * 1024)
    _guard_sympy_parser()
    sys.addaudithook(_audit)
