"""Shared fixtures: tiny configurations and a throw-away copy of the project."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Under pytest-xdist every worker process runs its own temporary Prefect server; each
# keeps its database in a home of its own, so that two servers never share one SQLite
# file. Set before any module of the suite imports Prefect.
if "PYTEST_XDIST_WORKER" in os.environ:
    _home = (
        Path(os.environ.get("PREFECT_HOME", ROOT / ".prefect")) / os.environ["PYTEST_XDIST_WORKER"]
    )
    _home.mkdir(parents=True, exist_ok=True)
    os.environ["PREFECT_HOME"] = str(_home)
TINY_PARAMS = ROOT / "tests" / "data" / "params-tiny.yaml"
PROJECT_FILES = (
    "dndx",
    "flows",
    "tasks",
    "models",
    "examples",
    "dvc.yaml",
    ".dvcignore",
    "pyproject.toml",
)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process_group(process: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """Terminate a server started in its own process group, killing it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


_HOLD_LOCK = """
import select, sys
from pathlib import Path
from dndx.io.inference_store import output_lock
out, deadline_s = Path(sys.argv[1]), float(sys.argv[2])
with output_lock(out):
    print("held", flush=True)
    if not select.select([sys.stdin], [], [], deadline_s)[0]:
        print(f"never told to release within {deadline_s:g} s", flush=True)
        sys.exit(1)
    sys.stdin.readline()
    if len(sys.argv) > 3:
        out.write_text(sys.argv[3])
print("released", flush=True)
"""


@dataclass
class LockHolder:
    """Another process holding the output lock of an inference run until the test
    lets it go (:func:`hold_output_lock`)."""

    process: subprocess.Popen[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def release(self) -> None:
        """Let go of the lock (after writing the output, if the holder was given one)."""
        assert self.process.stdin is not None
        self.process.stdin.write("release\n")
        self.process.stdin.flush()

    def expect(self, line: str, timeout_s: float = 120) -> None:
        """Fail unless the holder's next line is ``line``, said within ``timeout_s``."""
        assert self.process.stdout is not None
        ready = select.select([self.process.stdout], [], [], timeout_s)[0]
        assert ready, f"the lock holder said nothing within {timeout_s:g} s (expected {line!r})"
        assert self.process.stdout.readline() == f"{line}\n"


@contextlib.contextmanager
def hold_output_lock(
    out: Path, writes: str | None = None, deadline_s: float = 300
) -> Iterator[LockHolder]:
    """A process that holds ``out``'s output lock for the block, until told to
    :meth:`LockHolder.release` it (then writing ``writes`` to ``out`` first), or
    ``deadline_s`` at most; killed at the end of the block."""
    process = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out), str(deadline_s), *filter(None, [writes])],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    holder = LockHolder(process)
    try:
        holder.expect("held")
        yield holder
    finally:
        process.kill()
        process.wait()


def venv_env() -> dict[str, str]:
    """The environment with this interpreter's scripts (dvc, dndx, python) first on PATH."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def tiny_params(**overrides: dict) -> dict:
    """``params.yaml`` with the tiny test sizes (and ``overrides``) applied, as a mapping."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for updates in (yaml.safe_load(TINY_PARAMS.read_text()), overrides):
        for section, values in updates.items():
            params.setdefault(section, {}).update(values)
    return params


def make_project(repo: Path) -> Path:
    """A fresh git + DVC repository at ``repo`` holding the project's code and tiny params."""
    repo.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    for command in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["dvc", "config", "core.analytics", "false"],
    ):
        subprocess.run(command, cwd=repo, check=True, env=venv_env())
    return repo


def dvc(repo: Path, *args: str, ok: bool = True, dask_address: str = "") -> str:
    """Run ``dvc *args`` in ``repo`` (against the session's Prefect API, if one runs,
    and the Dask scheduler at ``dask_address``, if given: :func:`dask_scheduler`),
    failing the test with DVC's output unless it succeeds (fails, if not ``ok``);
    returns that output."""
    env = {**venv_env(), "XDG_CACHE_HOME": str(repo / ".cache"), "DVC_NO_ANALYTICS": "1"}
    if dask_address:
        from flows.runtime import DASK_ADDRESS_ENV

        env[DASK_ADDRESS_ENV] = dask_address
    result = subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result.stdout + result.stderr


#: The modules that take longest, longest first, as measured (CONTRIBUTING.md, "Tests").
#: `make test` (``--dist loadfile --no-loadscope-reorder``) hands whole modules to its
#: processes in collection order, and gives a process a second module at once when
#: its first holds two tests or fewer: the longest are started first and apart, and
#: the many short modules fill the cores beside them and balance the end.
LONGEST_FIRST = (
    "tests/pipeline/test_pipeline.py",
    "tests/pipeline/test_ingest_pipeline.py",
    "tests/pipeline/test_ingest.py",
    "tests/engines/test_deployments.py",
    "tests/engines/test_bad_inputs.py",
    "tests/engines/test_inference.py",
    "tests/engines/test_scan.py",
    "tests/engines/test_clusters.py",
    "tests/engines/test_mlflow_server.py",
    "tests/engines/test_quantization.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of :data:`LONGEST_FIRST` first, in its order; then the others as
    collected (a stable sort keeps each module's own order of tests)."""
    rank = {module: index for index, module in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh git + DVC repository holding the project's code and tiny params."""
    return make_project(tmp_path / "project")


@pytest.fixture(autouse=True)
def _prefect_console_as_configured() -> Iterator[None]:
    """An in-process ``dndx infer`` quiets Prefect's and Dask's consoles for the processes
    it starts; no later test (or the subprocesses it starts) inherits that."""
    yield
    for name in ("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "DASK_LOGGING__DISTRIBUTED"):
        os.environ.pop(name, None)


@dataclass(frozen=True)
class TrainedProject:
    """The tiny project after one ``dvc repro`` of every stage, that run's output, and
    the Dask scheduler its flows ran their tasks on."""

    path: Path
    repro_log: str
    dask_address: str


@pytest.fixture(scope="session")
def dask_scheduler(prefect_server: str) -> Iterator[str]:
    """The address of one Dask cluster for the session's flows, local and sized as the
    tiny params size a flow's own. A flow given it (``DNDX_DASK_ADDRESS``: the
    ``dask.mode: address`` of a user's running scheduler) runs its tasks there instead
    of starting a cluster whose workers import TensorFlow anew: seconds per stage, paid
    dozens of times by the tiny pipelines. The tests of the local cluster itself, and of
    what Ctrl-C does to it, start their own."""
    from distributed import LocalCluster

    from dndx.config import parse_params
    from flows.runtime import local_cluster_kwargs, worker_environment

    kwargs = local_cluster_kwargs(parse_params(tiny_params()).dask)["cluster_kwargs"]
    kwargs["env"] = {**worker_environment(prefect_server), **kwargs["env"]}
    with LocalCluster(**kwargs) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def shared_dask(dask_scheduler: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The flows this test runs, in its process or in those it starts, use the session's
    Dask cluster (:func:`dask_scheduler`)."""
    from flows.runtime import DASK_ADDRESS_ENV

    monkeypatch.setenv(DASK_ADDRESS_ENV, dask_scheduler)
    return dask_scheduler


@pytest.fixture(scope="session")
def trained_project(
    tmp_path_factory: pytest.TempPathFactory, dask_scheduler: str
) -> TrainedProject:
    """One tiny pipeline, profile to demo, adapted to a target (:func:`use_target`),
    trained once per session through real DVC, Prefect, Dask and MLflow. Its tests live
    in one module (tests/pipeline/test_pipeline.py), so that `make test` (one module per
    xdist worker) builds it once. Tests read it; a test
    that changes it works on a copy (:func:`copy_project`) or restores what it changed."""
    repo = make_project(tmp_path_factory.mktemp("trained") / "project")
    use_target(repo)
    return TrainedProject(repo, dvc(repo, "repro", dask_address=dask_scheduler), dask_scheduler)


#: The front end of :func:`use_target`'s files: a slower fall than the simulate section's.
TARGET_FALL_TIME_NS = (4.0, 8.0)


def use_target(repo: Path, n_waveforms: int = 300) -> None:
    """Give the project at ``repo`` a target: two unlabelled-to-the-pipeline files of
    ``n_waveforms`` waveforms in all, at 1.5 GS/s, with fall times of
    :data:`TARGET_FALL_TIME_NS`, under the default ``target.root``; name them in
    ``target.files``. They stay within the training domain's limits, so the tests of
    the simulator's own files still find them ``in`` after the fit."""
    import dataclasses

    from dndx.config import Range, load_params
    from dndx.io.labelled_writer import write_labelled
    from dndx.simulation.generator import simulate_range

    cfg = dataclasses.replace(
        load_params(repo / "params.yaml").simulate,
        seed=5,
        n_train=n_waveforms,
        block_size=n_waveforms // 2,
        chunk_size=n_waveforms,
        sampling_rates_ghz=(1.5,),
        fall_time_ns=Range(*TARGET_FALL_TIME_NS),
    )
    half = n_waveforms // 2
    for i in range(2):
        data = simulate_range(cfg, "train", half * i, half * (i + 1))
        write_labelled(data, repo / f"examples/target/run{i}.h5", "dndx")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["target"]["files"] = ["run*.h5"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def copy_project(trained: TrainedProject, destination: Path) -> Path:
    """A private copy of the trained project (workspace, DVC cache and all)."""
    return Path(shutil.copytree(trained.path, destination / "project", symlinks=True))


#: The file of a Prefect home's database (Prefect's default database URL).
PREFECT_DATABASE = "prefect.db"


@pytest.fixture(scope="session")
def prefect_database(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """An empty Prefect database, migrated once for the whole run (all xdist workers):
    a server on a new database spends 10 s of CPU migrating it, and the suite starts
    several (:func:`seed_prefect_home`)."""
    from filelock import FileLock

    # Under xdist, the directory above a worker's is the run's, shared by its workers.
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent
    database = shared / "prefect-template" / PREFECT_DATABASE
    with FileLock(shared / "prefect-template.lock"):
        if not database.exists():
            home = database.parent
            subprocess.run(
                [Path(sys.executable).parent / "prefect", "server", "database", "upgrade", "-y"],
                env={**venv_env(), "PREFECT_HOME": str(home)},
                capture_output=True,
                check=True,
            )
    return database


def seed_prefect_home(home: Path, database: Path) -> Path:
    """``home``, holding a copy of the migrated ``database`` unless it holds one."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / PREFECT_DATABASE).exists():
        shutil.copy(database, home / PREFECT_DATABASE)
    return home


@pytest.fixture(scope="session")
def prefect_server(prefect_database: Path) -> Iterator[str]:
    """One temporary Prefect server for the flows of the session, its own and its
    subprocesses', in the session's Prefect home seeded with :func:`prefect_database`;
    stopped while pytest still owns the output streams, so that the server's farewell
    is not logged to a closed stream at exit. Its URL."""
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer

    from flows.runtime import ensure_prefect_api

    seed_prefect_home(Path(os.environ["PREFECT_HOME"]), prefect_database)
    yield ensure_prefect_api()
    # Send the logs still queued while the server listens: sent at exit, they would
    # end the run with "Error logging to API".
    APILogWorker.drain_all(timeout=30)
    SubprocessASGIServer().stop()


@pytest.fixture(scope="session")
def prefect_api(prefect_server: str) -> str:
    """The session's Prefect API (:func:`prefect_server`). A module whose tests must
    find the environment as they left it overrides this fixture; the session's other
    fixtures depend on :func:`prefect_server` itself."""
    return prefect_server


@pytest.fixture(scope="module")
def prepared_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding tiny ``data/simulated`` and ``data/prepared`` made directly."""
    from dndx.config import parse_params
    from dndx.io.dataset import part_name, write_waveform_set
    from dndx.io.prepared import write_prepared
    from dndx.simulation.generator import simulate_range
    from dndx.truth.preparation import prepare_waveforms
    from dndx.waveforms import SPLITS

    root = tmp_path_factory.mktemp("prepared")
    params = parse_params(tiny_params())
    sim = params.simulate
    for split in SPLITS:
        for index, start in enumerate(range(0, sim.n_waveforms(split), sim.chunk_size)):
            stop = min(start + sim.chunk_size, sim.n_waveforms(split))
            data = simulate_range(sim, split, start, stop)
            write_waveform_set(data, root / "data/simulated" / split / part_name(index))
            write_prepared(
                prepare_waveforms(data, params.prepare), root / "data/prepared" / split, index
            )
    return root


@pytest.fixture(scope="session")
def untrained_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Untrained, seeded models as ``.keras`` files and as an ONNX bundle directory
    (``bundle/``), as the register stage would write them."""
    from dndx.chain.bundle import ModelBundle
    from dndx.chain.encoding import N_CHANNELS
    from dndx.config import CandidateConfig, load_params
    from models import build_cluster_counter, build_peak_finder
    from models.export import export_onnx

    root = tmp_path_factory.mktemp("pair")
    params = load_params()
    finder = build_peak_finder(params.peak_finder, window_length=15, seed=3)
    counter = build_cluster_counter(
        params.cluster_counter, params.counter_input.n_bins, N_CHANNELS, seed=4
    )
    finder.save(root / "peak_finder.keras")
    counter.save(root / "cluster_counter.keras")
    export_onnx(finder, root / "bundle" / "peak_finder.onnx", params.register.opset)
    export_onnx(counter, root / "bundle" / "cluster_counter.onnx", params.register.opset)
    ModelBundle(
        candidates=CandidateConfig(
            model_sampling_rate_ghz=1.5,
            candidate_threshold_sigma=2.0,
            min_curvature_sigma=0.0,
            min_window_std_sigma=0.0,
            window_before=5,
            window_after=9,
        ),
        score_threshold=0.5,
        n_bins=1024,
        samples_per_bin=3000 / 1024,
        provenance={"origin": "tests"},
        d2=None,
    ).save(root / "bundle")
    return root


def register_pair(pair: Path, scores: dict[str, float]) -> dict[str, str]:
    """Register the ``untrained_pair`` fixture's models with ``scores`` and made-up
    lineage, as the register stage would; the registered versions by model name."""
    import numpy as np

    from tasks.registry import COUNTER_NAME, PEAK_FINDER_NAME, register_bundle

    rng = np.random.default_rng(0)
    return register_bundle(
        pair / "bundle",
        {
            PEAK_FINDER_NAME: pair / "peak_finder.keras",
            COUNTER_NAME: pair / "cluster_counter.keras",
        },
        {
            PEAK_FINDER_NAME: rng.normal(size=(3, 15, 1)).astype(np.float32),
            COUNTER_NAME: rng.random((2, 1024, 4)).astype(np.float32),
        },
        scores,
        {"git_commit": "abc", "params_hash": "123"},
    )
