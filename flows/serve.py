"""``dndx serve``: what one user needs to run dndx's deployments from the Prefect UI.

A Prefect server on loopback (started in the background unless one already
answers), the ``process`` work pool ``dndx``, the deployments of
``infra/prefect.yaml``, and a worker for the pool in the foreground; Ctrl-C
stops the worker and the server this command started.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from dndx.errors import DndxError

__all__ = [
    "PREFECT_FILE",
    "WORK_POOL",
    "api_is_up",
    "deploy",
    "ensure_work_pool",
    "serve",
    "start_server",
    "start_worker",
    "wait_for_api",
]

#: The deployments, relative to the repository root.
PREFECT_FILE = Path("infra/prefect.yaml")
#: The process work pool the deployments run on.
WORK_POOL = "dndx"

_PREFECT = str(Path(sys.executable).parent / "prefect")


def api_is_up(api_url: str) -> bool:
    """True when a Prefect API answers its health check at ``api_url``."""
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_for_api(api_url: str, timeout_s: float = 120.0) -> None:
    """Wait until the Prefect API at ``api_url`` answers.

    Raises:
        DndxError: it did not answer within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not api_is_up(api_url):
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


def ensure_work_pool(env: Mapping[str, str], cwd: Path, name: str = WORK_POOL) -> None:
    """Create the ``process`` work pool ``name`` unless it exists."""
    inspect = subprocess.run(
        [_PREFECT, "work-pool", "inspect", name],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        check=False,
    )
    if inspect.returncode != 0:
        _prefect(["work-pool", "create", name, "--type", "process"], env, cwd)


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


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve(repo_dir: Path = Path("."), host: str = "127.0.0.1", port: int = 4200) -> None:
    """Start (or reuse) the server, register the deployments, run a worker until Ctrl-C."""
    repo_dir = repo_dir.resolve()
    if not (repo_dir / PREFECT_FILE).is_file():
        raise DndxError(
            f"{repo_dir / PREFECT_FILE}: not found; run `dndx serve` from the repository root"
        )
    api_url = f"http://{host}:{port}/api"
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # The worker's flow runs start their stages and Dask workers from this environment.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        if api_is_up(api_url):
            print(f"Using the Prefect server already at {api_url}")
        else:
            log = repo_dir / ".prefect" / "server.log"
            started.append(start_server(host, port, env, log))
            print(f"Starting a Prefect server on {host}:{port} (log: {log}) ...")
            wait_for_api(api_url)
        ensure_work_pool(env, repo_dir)
        registered = re.findall(r"Deployment '([^']+)' successfully", deploy(env, repo_dir))
        print(
            f"""
Prefect UI:   http://{host}:{port}
Deployments:  {", ".join(registered)} (work pool '{WORK_POOL}')
Run them from the UI, or from another terminal:
  export PREFECT_API_URL={api_url}
  prefect deployment run 'pipeline/dndx-pipeline'
  prefect deployment run 'infer/dndx-infer' \\
      -p inputs='["/path/to/waveforms.root"]' -p out=/path/to/results.parquet
Starting a worker for the pool '{WORK_POOL}'; Ctrl-C stops it and the server.
""",
            flush=True,
        )
        worker = start_worker(env, repo_dir)
        started.append(worker)
        worker.wait()
    except KeyboardInterrupt:
        print("\nStopping ...")
    finally:
        for process in reversed(started):
            _stop(process)
