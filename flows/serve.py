"""``dndx serve``: what one user needs to run dndx's deployments from the Prefect UI.

A Prefect server on loopback (started in the background unless one already
answers), the ``process`` work pool ``dndx``, the deployments of
``infra/prefect.yaml``, and a worker for the pool in the foreground.

Ctrl-C (or SIGTERM) stops, in this order: the worker with every process it
started (flow runs, their Dask workers and DVC stages), each signal of
:data:`flows.processes.STOP_SIGNALS` in turn; the flow runs it was running,
marked Cancelled; then the server this command started. A second Ctrl-C kills
what is left at once. The processes are recorded in ``.prefect/serve.json``,
so that a later ``dndx serve`` recognises what an earlier one left running.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import StateType
from prefect.settings import (
    PREFECT_API_REQUEST_TIMEOUT,
    PREFECT_API_URL,
    PREFECT_CLIENT_MAX_RETRIES,
    temporary_settings,
)
from prefect.states import Cancelled

from dndx.errors import DndxError
from dndx.storage import atomic_file
from flows.processes import alive, describe, kill_trees, listener, stop_trees

__all__ = [
    "PID_FILE",
    "PREFECT_FILE",
    "WORK_POOL",
    "api_is_up",
    "cancel_flow_runs",
    "check_stale",
    "deploy",
    "ensure_work_pool",
    "serve",
    "start_server",
    "start_worker",
    "stop_stale",
    "wait_for_api",
]

#: The deployments, relative to the repository root.
PREFECT_FILE = Path("infra/prefect.yaml")
#: The process work pool the deployments run on.
WORK_POOL = "dndx"
#: Where ``dndx serve`` records the processes it started, relative to the repository root.
PID_FILE = Path(".prefect/serve.json")

_PREFECT = str(Path(sys.executable).parent / "prefect")


def api_is_up(api_url: str) -> bool:
    """True when a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for_api(
    api_url: str, timeout_s: float = 120.0, server: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until the Prefect API at ``api_url`` answers.

    Raises:
        DndxError: it did not answer within ``timeout_s``, or ``server`` exited first.
    """
    deadline = time.monotonic() + timeout_s
    while not api_is_up(api_url):
        if server is not None and server.poll() is not None:
            raise DndxError(
                f"the Prefect server for {api_url} exited ({server.returncode}) before it answered"
            )
        if time.monotonic() > deadline:
            raise DndxError(f"the Prefect server at {api_url} did not answer in {timeout_s:.0f} s")
        time.sleep(0.5)


def start_server(
    host: str, port: int, env: Mapping[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """``prefect server start`` in the background, its output in ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        return subprocess.Popen(
            [_PREFECT, "server", "start", "--host", host, "--port", str(port)],
            env=dict(env),
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _prefect(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> str:
    result = subprocess.run(
        [_PREFECT, *args], env=dict(env), cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise DndxError(
            f"`prefect {' '.join(args)}` failed ({result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def ensure_work_pool(env: Mapping[str, str], name: str = WORK_POOL) -> None:
    """Create the ``process`` work pool ``name`` at ``env``'s API unless it exists, with
    the process worker's default job template, as ``prefect work-pool create`` would
    (through the client: two CLI processes fewer, a few seconds of start-up)."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    with (
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
        get_client(sync_client=True) as client,
    ):
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            template = ProcessWorker.get_default_base_job_template()
            client.create_work_pool(
                WorkPoolCreate(name=name, type="process", base_job_template=template)
            )


def deploy(env: Mapping[str, str], repo_dir: Path, names: Sequence[str] = ()) -> str:
    """Register the deployments of ``infra/prefect.yaml`` (all, or those ``names``)
    from ``repo_dir``; returns Prefect's report."""
    select = [arg for name in names for arg in ("--name", name)] or ["--all"]
    return _prefect(
        ["deploy", "--no-prompt", *select, "--prefect-file", str(PREFECT_FILE)], env, repo_dir
    )


def start_worker(
    env: Mapping[str, str], cwd: Path, log: Path | None = None, pool: str = WORK_POOL
) -> subprocess.Popen[bytes]:
    """``prefect worker start`` for ``pool``; output to ``log`` (default: this terminal)."""
    command = [_PREFECT, "worker", "start", "--pool", pool, "--type", "process"]
    if log is None:
        return subprocess.Popen(command, env=dict(env), cwd=cwd, start_new_session=True)
    with log.open("ab") as sink:
        return subprocess.Popen(
            command,
            env=dict(env),
            cwd=cwd,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _entry(process: subprocess.Popen[bytes]) -> dict[str, float]:
    return {"pid": process.pid, "started": psutil.Process(process.pid).create_time()}


def _write_record(path: Path, record: Mapping[str, Any]) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")


def _recorded(path: Path) -> dict[str, psutil.Process]:
    """The processes of ``path`` (a :data:`PID_FILE`) that still run, by role
    (``serve``, ``server``, ``worker``); a pid now used by another process is not one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    found: dict[str, psutil.Process] = {}
    for role in ("serve", "server", "worker"):
        entry = record.get(role) if isinstance(record, dict) else None
        if not isinstance(entry, dict):
            continue
        try:
            process = psutil.Process(int(entry["pid"]))
            if abs(process.create_time() - float(entry["started"])) < 0.1 and alive(process):
                found[role] = process
        except (psutil.Error, KeyError, TypeError, ValueError):
            continue
    return found


def check_stale(repo_dir: Path, host: str, port: int) -> None:
    """Refuse to start over what an earlier ``dndx serve`` left running, or on a port
    that another program holds.

    Raises:
        DndxError: one line naming the process (pid, command) and how to stop it.
    """
    pid_file = repo_dir / PID_FILE
    left = _recorded(pid_file)
    if "serve" in left:
        raise DndxError(
            f"`dndx serve` already runs here ({describe(left['serve'])}; {pid_file}); "
            f"stop it with Ctrl-C in its terminal or `kill -INT {left['serve'].pid}`"
        )
    if left:
        parts = [
            f"its Prefect server ({describe(left['server'])})" if "server" in left else "",
            f"its worker ({describe(left['worker'])})" if "worker" in left else "",
        ]
        raise DndxError(
            f"an earlier `dndx serve` left {' and '.join(part for part in parts if part)} "
            f"running ({pid_file}); stop them with `dndx serve --stop`, then start again"
        )
    if _port_is_free(host, port):
        return
    holder = listener(host, port)
    if api_is_up(f"http://{host}:{port}/api"):
        return
    who = describe(holder) if holder is not None else "a process this user cannot see"
    raise DndxError(
        f"{host}:{port} is held by {who}, which is not a Prefect server; stop it "
        f"(`kill {holder.pid if holder else 'PID'}`) or serve on another port with `--port`"
    )


def cancel_flow_runs(api_url: str, pids: set[int], since: datetime) -> list[str]:
    """Mark Cancelled the flow runs of the pool ``dndx`` whose process was one of
    ``pids`` and that are still pending, running or cancelling (or that crashed since
    ``since``, as a flow run killed under Prefect's engine reports itself); returns
    their names."""
    unfinished = [StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.CRASHED]
    names = []
    with (
        temporary_settings(
            {
                PREFECT_API_URL: api_url,
                PREFECT_API_REQUEST_TIMEOUT: 5,
                PREFECT_CLIENT_MAX_RETRIES: 0,
            }
        ),
        get_client(sync_client=True) as client,
    ):
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=unfinished))
            ),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[WORK_POOL])),
        )
        for run in runs:
            pid = (run.infrastructure_pid or "").rpartition(":")[2]
            if not pid.isdigit() or int(pid) not in pids or run.state is None:
                continue
            if run.state.type == StateType.CRASHED and run.state.timestamp < since:
                continue
            message = "Cancelled: `dndx serve` stopped its worker"
            client.set_flow_run_state(run.id, Cancelled(message=message), force=True)
            names.append(run.name)
    return names


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def _stopped_like_ctrl_c() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP stop ``dndx serve`` as Ctrl-C does, even where it
    was started with SIGINT ignored (a background job of a script)."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.getsignal(signum) for signum in stops}
    for signum in previous:
        signal.signal(signum, _interrupt)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _say(line: str) -> None:
    print(line, flush=True)


def _shut_down(
    api_url: str, server: subprocess.Popen[bytes] | None, worker: subprocess.Popen[bytes] | None
) -> None:
    since = datetime.now(UTC)
    if worker is not None:
        pids = stop_trees(
            [psutil.Process(worker.pid)],
            on_signal=lambda signum, n: _say(f"  {signum.name} to the worker's {n} process(es)"),
        )
        try:
            cancelled = cancel_flow_runs(api_url, pids, since)
        except Exception as error:  # the server may be gone; stopping goes on
            _say(f"  could not mark the worker's flow runs cancelled: {error}")
        else:
            if cancelled:
                _say(f"  flow run(s) {', '.join(cancelled)} marked Cancelled")
    if server is not None:
        stop_trees(
            [psutil.Process(server.pid)],
            on_signal=lambda signum, n: _say(f"  {signum.name} to the server's {n} process(es)"),
        )


def serve(repo_dir: Path = Path("."), host: str = "127.0.0.1", port: int = 4200) -> None:
    """Start (or reuse) the server, register the deployments, run a worker until Ctrl-C."""
    repo_dir = repo_dir.resolve()
    if not (repo_dir / PREFECT_FILE).is_file():
        raise DndxError(
            f"{repo_dir / PREFECT_FILE}: not found; run `dndx serve` from the repository root"
        )
    check_stale(repo_dir, host, port)
    api_url = f"http://{host}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The worker's flow runs start their stages and Dask workers from this environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    record: dict[str, Any] = {
        "host": host,
        "port": port,
        "serve": {"pid": os.getpid(), "started": psutil.Process().create_time()},
    }
    server: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    with _stopped_like_ctrl_c():
        try:
            if api_is_up(api_url):
                holder = listener(host, port)
                held = f" ({describe(holder)})" if holder is not None else ""
                print(f"Using the Prefect server already at {api_url}{held}")
            else:
                server = _start_recorded_server(repo_dir, env, record)
                wait_for_api(api_url, server=server)
            ensure_work_pool(env)
            registered = re.findall(r"Deployment '([^']+)' successfully", deploy(env, repo_dir))
            worker = start_worker(env, repo_dir)
            record["worker"] = _entry(worker)
            _write_record(repo_dir / PID_FILE, record)
            print(_ready(host, port, registered), flush=True)
            code = worker.wait()
            raise DndxError(f"the worker for the pool '{WORK_POOL}' exited by itself ({code})")
        except KeyboardInterrupt:
            _say("\nStopping (Ctrl-C again forces) ...")
        finally:
            try:
                _shut_down(api_url, server, worker)
            except KeyboardInterrupt:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                _say("  killing what is left")
                kill_trees(psutil.Process(p.pid) for p in (worker, server) if p is not None)
            (repo_dir / PID_FILE).unlink(missing_ok=True)
    _say("Stopped.")


def _start_recorded_server(
    repo_dir: Path, env: dict[str, str], record: dict[str, Any]
) -> subprocess.Popen[bytes]:
    """Start a Prefect server on ``record``'s host and port, logging to
    ``.prefect/server.log``, and record it in the PID file at once."""
    host, port = record["host"], record["port"]
    log = repo_dir / ".prefect" / "server.log"
    server = start_server(host, port, env, log)
    record["server"] = _entry(server)
    _write_record(repo_dir / PID_FILE, record)
    print(f"Starting a Prefect server on {host}:{port} (log: {log}) ...", flush=True)
    return server


def _ready(host: str, port: int, deployments: list[str]) -> str:
    """What ``dndx serve`` says once its worker runs: where to look, how to run."""
    return f"""
Prefect UI:   http://{host}:{port}
Deployments:  {", ".join(deployments)} (work pool '{WORK_POOL}')
Run them from the UI, or from another terminal:
  export PREFECT_API_URL=http://{host}:{port}/api
  prefect deployment run 'pipeline/dndx-pipeline'
  prefect deployment run 'infer/dndx-infer' \\
      -p inputs='["/path/to/waveforms.root"]' -p out=/path/to/results.parquet
A worker for the pool '{WORK_POOL}' runs here; Ctrl-C stops it, its flow runs and the server.
"""


def stop_stale(repo_dir: Path = Path(".")) -> None:
    """Stop what an earlier ``dndx serve`` of ``repo_dir`` left running (its
    :data:`PID_FILE`): the command itself as Ctrl-C would, else its worker and server
    with every process they started."""
    pid_file = repo_dir.resolve() / PID_FILE
    left = _recorded(pid_file)
    if not left:
        print(f"Nothing that `dndx serve` started here runs ({pid_file}).")
        pid_file.unlink(missing_ok=True)
        return
    for role, process in left.items():
        print(f"Stopping the {role} ({describe(process)})", flush=True)
    if "serve" in left:
        left["serve"].send_signal(signal.SIGINT)
        psutil.wait_procs([left["serve"]], timeout=30)
    stop_trees(left.values())
    pid_file.unlink(missing_ok=True)
