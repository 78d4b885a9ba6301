"""The hook host: a fresh interpreter that runs alive_worker.hook for the worker.

Started by the worker (alive_worker/_hook_client.py) as
``python -I _host.py FD WORKER_PID`` with FD its end of a socketpair, every
other descriptor closed, its own session and process group, / as its
directory.  Nothing PostgreSQL owns is in this process: no shared memory, no
lock, no descriptor of the server's, no signal handler of the backend's.
Whatever the hook does to its process (its directory, umask, descriptors,
signals, timers, the GIL, its stack, how it exits, fork) stays here; the
worker sees only that the host ends, and starts another.

The conversation (alive_worker._wire frames):
  worker -> host  {"op": "init", "path": [...], "hook": spec, "memory_limit": bytes}
                  {"op": "tick", "number", "message", "settings"}: run the hook
                  {"op": "reply", "result"} or {"op": "reply", "error"}: a statement's answer
  host -> worker  {"op": "ready"}
                  {"op": "call", "function", "args"}: a statement (alive_worker._host_spi)
                  {"op": "log", "level", "message", "thread"}, {"op": "drop", "plan"}
                  {"op": "done"} or {"op": "failed", "type", "message", "traceback", ...}
"""

from __future__ import annotations

import os
import sys

# Run as a script: its own directory must not shadow anything; the package's
# parent directory comes first until the worker sends its whole path.
sys.path[:] = [os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *sys.path[1:]]

import logging  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from alive_worker import _wire  # noqa: E402

# Exit code after a MemoryError: the worker names alive_worker.hook_memory_limit.
EXIT_MEMORY_LIMIT = 75
PR_SET_PDEATHSIG = 1


class Connection:
    """The host's end: the hook's thread calls and reads; any thread may send."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock: socket.socket | None = sock
        self.reader = _wire.Reader()
        self.lock = threading.Lock()
        self.pid = os.getpid()
        # A statement waiting for its reply: a call meanwhile (a signal handler's,
        # run on the hook's thread between two bytecodes) would read that reply.
        self.calling = False

    def send(self, message: _wire.Message) -> None:
        frame = _wire.encode(message)
        with self.lock:
            if self.sock is None or os.getpid() != self.pid:
                raise OSError("alive_worker hook host: not the host's connection (a forked child?)")
            self.sock.sendall(frame)

    def receive(self) -> _wire.Message:
        if self.sock is None or os.getpid() != self.pid:
            raise OSError("alive_worker hook host: not the host's connection (a forked child?)")
        return _wire.receive(self.sock, self.reader)

    def call(self, function: str, args: list[Any]) -> Any:
        from alive_worker import _host_spi

        if self.calling:
            raise _host_spi.errors.FeatureNotSupported(
                "alive_worker.spi was called while another of the hook's statements waits for its answer "
                "(from a signal handler?)",
                hint="Run statements from the hook's own code, not from a signal handler.",
            )
        self.calling = True
        try:
            self.send({"op": "call", "function": function, "args": args})
            reply = self.receive()
        finally:
            self.calling = False
        if reply.get("op") != "reply":
            raise OSError(f"alive_worker hook host: expected a reply, got {reply.get('op')!r}")
        if "error" in reply:
            _host_spi.raise_error(reply["error"])
        return reply.get("result")

    def forked(self) -> None:
        """In a child the hook forked: the connection is the parent's alone."""
        self.sock = None


class WorkerLogHandler(logging.Handler):
    """Sends each record to the worker, which writes it to the server log."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            on_hook_thread = threading.get_ident() == threading.main_thread().ident
            self.connection.send(
                {
                    "op": "log",
                    "level": record.levelno,
                    "message": message,
                    "thread": None if on_hook_thread else record.threadName,
                }
            )
        except Exception:
            pass  # nowhere to report it: the server log is the worker's


def die_with_the_worker(worker_pid: int) -> None:
    """SIGKILL when the worker ends, however it ends; exits if it already has."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != worker_pid:
        os._exit(1)


# rt_sigaction's number: glibc's sigaction refuses the signals it keeps for
# itself (32 and 33, SIGCANCEL and SIGSETXID), which exec also keeps ignored.
RT_SIGACTION = {"x86_64": 13, "aarch64": 134}


def default_signal_dispositions() -> None:
    """Undoes every ignored signal exec kept: the backend's (SIGUSR2, SIGTTIN, SIGTTOU) and any its
    own parents ignored (a service manager's, a CI runner's, even glibc's internal 32 and 33).

    What Python itself ignores at start (SIGPIPE, SIGXFSZ) stays so, as in any
    Python program; the hook and its children see no disposition of the server's.
    """
    refused = []
    for number in ignored_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGPIPE, signal.SIGXFSZ}:
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError):
            refused.append(number)
    if refused:
        reset_through_the_kernel(refused)


def ignored_signals() -> set[int]:
    """The kernel's list (Python's own table misses the signals glibc hides)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("SigIgn:"):
                mask = int(line.split()[1], 16)
                return {number for number in range(1, 65) if mask >> (number - 1) & 1}
    return set()


def reset_through_the_kernel(numbers: list[int]) -> None:
    """SIG_DFL for the signals glibc will not touch, through the system call itself."""
    import ctypes
    import platform

    call = RT_SIGACTION.get(platform.machine())
    if call is None:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    # struct kernel_sigaction: handler (SIG_DFL), flags, restorer, one 64-bit mask.
    default = (ctypes.c_ulong * 4)(0, 0, 0, 0)
    for number in numbers:
        libc.syscall(ctypes.c_long(call), ctypes.c_long(number), default, None, ctypes.c_ulong(8))


def failure(exc: BaseException) -> _wire.Message:
    from alive_worker.errors import SPIError

    message: _wire.Message = {
        "op": "failed",
        "type": type(exc).__name__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)).rstrip(),
    }
    if isinstance(exc, SPIError):
        message.update(
            sqlstate=exc.sqlstate, message=exc.message, detail=exc.detail, hint=exc.hint, context=exc.context
        )
    return message


def main() -> None:
    fd, worker_pid = int(sys.argv[1]), int(sys.argv[2])
    die_with_the_worker(worker_pid)
    os.umask(0o077)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    default_signal_dispositions()
    # Inheritable only to cross the exec: a program the hook runs (os.system,
    # a daemon) must not hold the worker's connection open after the host ends.
    os.set_inheritable(fd, False)
    connection = Connection(socket.socket(fileno=fd))
    init = connection.receive()
    sys.path[:] = list(init["path"])
    limit = int(init["memory_limit"])
    if limit > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    from alive_worker import _host_spi

    # Before anything imports alive_worker.spi: the worker's needs PostgreSQL.
    sys.modules["alive_worker.spi"] = _host_spi
    import alive_worker

    # The package imports no spi of its own (it needs PostgreSQL), so the
    # attribute is new to mypy as it is to the package.
    alive_worker.spi = _host_spi  # type: ignore[attr-defined]
    _host_spi.channel.call = connection.call
    _host_spi.channel.notify = connection.send
    _host_spi.channel.hook_thread = threading.get_ident()
    os.register_at_fork(after_in_child=connection.forked)

    from alive_worker import hooks
    from alive_worker.settings import Settings

    root = logging.getLogger()
    root.handlers[:] = [WorkerLogHandler(connection)]
    root.setLevel(logging.DEBUG if init.get("debug") else logging.INFO)
    logging.captureWarnings(True)

    # Imported before "ready": the import is part of the host's start, which
    # the tick timeout leaves alone; a hook whose import outlasts the timeout
    # would otherwise be ended at every first call, and never run.  Its
    # failure is the first tick's, and the next tick imports it again.
    hook: hooks.Hook | None = None
    import_failure: BaseException | None = None
    try:
        hook = hooks.load(str(init["hook"]))
    except BaseException as exc:
        import_failure = exc
    connection.send({"op": "ready"})
    while True:
        request = connection.receive()
        if request.get("op") != "tick":
            continue
        try:
            if import_failure is not None:
                failed, import_failure = import_failure, None
                raise failed
            if hook is None:
                hook = hooks.load(str(init["hook"]))
            if hook is not None:
                hook(hooks.Tick(request["number"], request["message"], Settings(*request["settings"])))
            outcome: _wire.Message = {"op": "done"}
        except MemoryError as exc:
            outcome = failure(exc)
            outcome["memory_limit"] = True
        except BaseException as exc:  # everything the hook raises is the worker's to report
            outcome = failure(exc)
        if os.getpid() != connection.pid:
            # A child the hook forked came back here: it has nothing to report to.
            os._exit(0)
        connection.send(outcome)
        if outcome.get("memory_limit"):
            os._exit(EXIT_MEMORY_LIMIT)


if __name__ == "__main__":
    try:
        main()
    except _wire.ConnectionClosed:
        os._exit(0)
