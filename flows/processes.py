"""The processes a command started, and everything they started in turn.

A Prefect worker starts one process per flow run (in a session of its own), and
a flow run starts Dask workers and DVC stage commands; when a parent dies first,
its children are handed to init. So a tree is followed both ways: the children
of every process seen, and every process in a session that one of them leads
(Prefect's servers, workers and flow runs start sessions of their own), which
orphans keep.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable

import psutil

__all__ = [
    "STOP_SIGNALS",
    "alive",
    "describe",
    "kill_trees",
    "listener",
    "process_tree",
    "stop_trees",
]

#: How a tree is stopped: each signal, then how long its processes get to exit.
STOP_SIGNALS: tuple[tuple[signal.Signals, float], ...] = (
    (signal.SIGINT, 2.0),
    (signal.SIGTERM, 2.0),
    (signal.SIGKILL, 2.0),
)


def describe(process: psutil.Process, width: int = 100) -> str:
    """``pid N: command line`` of ``process``, the command cut to ``width`` characters."""
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "?"
    if len(command) > width:
        command = command[: width - 3] + "..."
    return f"pid {process.pid}: {command}"


def process_tree(roots: Iterable[psutil.Process]) -> set[psutil.Process]:
    """``roots`` (those still running), their descendants, and every process in a
    session that one of them leads (orphans keep their session)."""
    found: set[psutil.Process] = set()
    for root in roots:
        try:
            found.add(root)
            found.update(root.children(recursive=True))
        except psutil.Error:
            continue
    sessions: set[int] = set()
    for process in found:
        try:
            if os.getsid(process.pid) == process.pid:
                sessions.add(process.pid)
        except OSError:
            continue
    sessions.discard(os.getsid(0))
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in sessions:
                found.add(process)
        except OSError:
            continue
    return {process for process in found if alive(process)}


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie: a zombie has exited and holds nothing but its pid."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal_all(processes: Iterable[psutil.Process], signum: signal.Signals) -> None:
    for process in processes:
        try:
            process.send_signal(signum)
        except psutil.Error:
            continue


def stop_trees(
    roots: Iterable[psutil.Process],
    stages: tuple[tuple[signal.Signals, float], ...] = STOP_SIGNALS,
    on_signal: Callable[[signal.Signals, int], None] | None = None,
) -> set[int]:
    """Stop ``roots`` and every process of their trees: each signal of ``stages`` to
    all that still run, then wait up to its seconds for them to exit. Returns the pids
    stopped. ``on_signal(signal, n_processes)`` is told before each signal is sent."""
    seen = process_tree(roots)
    for signum, wait_s in stages:
        running = process_tree(seen)
        seen |= running
        if not running:
            break
        if on_signal is not None:
            on_signal(signum, len(running))
        _signal_all(running, signum)
        psutil.wait_procs(list(running), timeout=wait_s)
    return {process.pid for process in seen}


def kill_trees(roots: Iterable[psutil.Process]) -> set[int]:
    """SIGKILL ``roots`` and their trees at once; returns the pids killed."""
    return stop_trees(roots, ((signal.SIGKILL, 2.0),))


def listener(host: str, port: int) -> psutil.Process | None:
    """The process that listens on TCP ``host:port`` (or on every address at ``port``),
    when this user may see it; None when none does or it is hidden."""
    wildcard = {"0.0.0.0", "::", host}
    for connection in psutil.net_connections(kind="tcp"):
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr
            and connection.laddr.port == port
            and connection.laddr.ip in wildcard
            and connection.pid is not None
        ):
            try:
                return psutil.Process(connection.pid)
            except psutil.Error:
                return None
    return None
