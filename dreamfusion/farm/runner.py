"""Running a batch: each run is a task (on Ray when it is installed, else one after another here),
and each task runs ``dreamfusion`` in a subprocess of its own.

    summary = run_batch(items, BatchOptions(farm=Path("farm"), common=["--iters", "5000"]))

A subprocess per run isolates failures (a bad prompt, an out-of-memory, a crash) to that run and
lets the CLI do what it already does well: one-line errors, checkpoints, resuming. A task records
its outcome in ``<farm>/.batch/<slug>.json``; rerunning the batch skips the runs recorded as done
and runs the others again, which resumes interrupted ones from their checkpoints. Subprocesses die
with the task that started them (Linux: parent-death signal), so a killed batch leaves no run
writing behind its back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from dreamfusion.errors import UserError
from dreamfusion.farm.prompts import BatchItem

STATUS_DIR = ".batch"
LOG_DIR = ".logs"


@dataclass
class BatchOptions:
    farm: Path
    common: list[str] = field(default_factory=list)   # training options for every run
    address: str | None = None                        # None: a local Ray started here; "auto" or ray://...
    gpus_per_task: float | None = None                # None: 1 when CUDA is present, else 0
    cpus_per_task: float = 1.0
    evaluate: bool = True
    evaluate_args: list[str] = field(default_factory=list)
    use_ray: bool = True
    num_cpus: int | None = None                       # CPUs of a local Ray (None: all)
    cwd: str = field(default_factory=os.getcwd)       # where relative paths in the options are taken from


@dataclass
class RunOutcome:
    """What one task reports (and ``<farm>/.batch/<slug>.json`` keeps)."""

    slug: str
    label: str
    state: str                 # done | failed
    exit_code: int
    reason: str = ""
    seconds: float = 0.0
    evaluation: str = ""       # "" (written to <workspace>/eval.json) or why it was not
    node: str = ""


def status_path(farm: Path, slug: str) -> Path:
    return Path(farm) / STATUS_DIR / f"{slug}.json"


def read_outcome(farm: Path, slug: str) -> RunOutcome | None:
    try:
        return RunOutcome(**json.loads(status_path(farm, slug).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def run_arguments(item: BatchItem, farm: Path, common: list[str]) -> list[str]:
    """The command line of one run (after ``dreamfusion``)."""
    args = [*common, *item.options, "--workspace", str(Path(farm) / item.slug)]
    if item.prompt:
        args += ["--text", item.prompt]
    if item.image:
        args += ["--image", item.image]
    if item.seed is not None:
        args += ["--seed", str(item.seed)]
    return args


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed batch may leave this run going


def _run(command: list[str], log: Path, threads: int, cwd: str) -> tuple[int, str]:
    """Run ``python -m dreamfusion command``; returns (exit code, last line of stderr)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n$ dreamfusion {' '.join(command)}\n".encode())
        out.flush()
        process = subprocess.Popen([sys.executable, "-m", "dreamfusion", *command], stdout=out,
                                   stderr=subprocess.PIPE, env=env, cwd=cwd, preexec_fn=_die_with_parent)
        _, err = process.communicate()
        out.write(err)
    lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
    last = next((line for line in reversed(lines) if line.startswith("dreamfusion: error:")), lines[-1] if lines else "")
    return process.returncode, last.removeprefix("dreamfusion: error: ").strip()[:300]


def run_item(item: BatchItem, options: BatchOptions) -> RunOutcome:
    """One run: train (resuming if the workspace has checkpoints), then evaluate. Records and returns
    the outcome; never raises for the run's own failure."""
    import platform

    farm = Path(options.farm)
    threads = max(1, int(options.cpus_per_task))
    started = time.time()
    code, reason = _run(run_arguments(item, farm, options.common), farm / LOG_DIR / f"{item.slug}.txt", threads,
                        options.cwd)
    outcome = RunOutcome(item.slug, item.label, "done" if code == 0 else "failed", code,
                         "" if code == 0 else (reason or f"exit code {code}"), round(time.time() - started, 1),
                         node=platform.node())
    if code == 0 and options.evaluate:
        log = farm / LOG_DIR / f"{item.slug}.txt"
        code, reason = _run(["evaluate", str(farm / item.slug), *options.evaluate_args], log, threads, options.cwd)
        reason = reason or f"evaluate exit code {code}"
        if code != 0 and not options.evaluate_args:
            # The default CLIP may be absent (offline): the scores that need no weights, when there are any.
            code, without = _run(["evaluate", str(farm / item.slug), "--clip_model", "none"], log, threads, options.cwd)
            reason = f"CLIP: {reason}; " + ("3D scores only" if code == 0 else without)
        outcome.evaluation = "" if code == 0 and not reason.startswith("CLIP: ") else reason
    _write_outcome(farm, outcome)
    return outcome


def _write_outcome(farm: Path, outcome: RunOutcome) -> None:
    path = status_path(farm, outcome.slug)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(outcome), indent=1))
    os.replace(tmp, path)


def run_batch(items: list[BatchItem], options: BatchOptions, *, report: Callable[[str], None] = print,
              progress: bool = True) -> list[RunOutcome]:
    """Run what is not done yet; returns the outcomes of every item (recorded ones included)."""
    farm = Path(options.farm)
    farm.mkdir(parents=True, exist_ok=True)
    done = {i.slug: read_outcome(farm, i.slug) for i in items}
    todo = [i for i in items if not (done[i.slug] and done[i.slug].state == "done")]
    if len(todo) < len(items):
        report(f"batch: {len(items) - len(todo)} of {len(items)} runs already done (skipped)")
    if todo:
        run = _run_on_ray if options.use_ray and _ray_available(report) else _run_here
        for outcome in run(todo, options, report, progress):
            done[outcome.slug] = outcome
    return [done[i.slug] for i in items if done[i.slug] is not None]


def _ray_available(report) -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        report("batch: Ray is not installed (pip install 'dreamfusion[farm]'); running the prompts one after "
               "another in this process")
        return False
    return True


def _bar(total: int, progress: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="batch", unit="run", disable=not progress, dynamic_ncols=True)


def _line(outcome: RunOutcome) -> str:
    if outcome.state == "done":
        extra = f"; evaluation: {outcome.evaluation}" if outcome.evaluation else ""
        return f"done    {outcome.slug} ({outcome.seconds:.0f} s){extra}"
    return f"FAILED  {outcome.slug}: {outcome.reason}"


def _run_here(todo: list[BatchItem], options: BatchOptions, report, progress: bool) -> list[RunOutcome]:
    bar, outcomes = _bar(len(todo), progress), []
    try:
        for item in todo:
            bar.set_postfix_str(f"running {item.slug}")
            outcome = run_item(item, options)
            outcomes.append(outcome)
            bar.write(_line(outcome)) if progress else report(_line(outcome))
            bar.update()
    finally:
        bar.close()
    return outcomes


def _run_on_ray(todo: list[BatchItem], options: BatchOptions, report, progress: bool) -> list[RunOutcome]:
    import ray

    local = options.address is None
    if not ray.is_initialized():
        init = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        if local:
            # The embedded default: a private local Ray bound to 127.0.0.1 (nothing listens outside).
            ray.init(_node_ip_address="127.0.0.1", num_cpus=options.num_cpus, **init)
        else:
            ray.init(address=options.address, **init)
    gpus = options.gpus_per_task
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    if not local:
        check_shared_storage(Path(options.farm))
    task = ray.remote(run_item).options(num_cpus=options.cpus_per_task, num_gpus=gpus, max_retries=0)
    report(f"batch: {len(todo)} runs on Ray ({'local' if local else options.address}: "
           f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs, {ray.cluster_resources().get('GPU', 0):.0f} GPUs; "
           f"{options.cpus_per_task:g} CPU and {gpus:g} GPU per run)")
    pending = {task.remote(item, options): item for item in todo}
    bar, outcomes = _bar(len(todo), progress), []
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                item = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - a worker that died (OOM killer, node lost)
                    reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
                    outcome = RunOutcome(item.slug, item.label, "failed", -1, f"the task died: {reason}")
                    _write_outcome(Path(options.farm), outcome)
                outcomes.append(outcome)
                bar.write(_line(outcome)) if progress else report(_line(outcome))
                bar.update()
            bar.set_postfix_str(f"{len(pending)} running or queued")
    finally:
        bar.close()
    return outcomes


def check_shared_storage(farm: Path) -> None:
    """On a cluster, every node must see ``farm`` (runs resume from checkpoints any node may have
    written): each node reads a token written here, or the batch stops with one line."""
    import uuid

    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    token = uuid.uuid4().hex
    probe = Path(farm) / STATUS_DIR / "storage-check.txt"
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(token)

    def read(path: str) -> str:
        try:
            return Path(path).read_text()
        except OSError:
            return ""

    remote = ray.remote(read)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    seen = ray.get([remote.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                    .remote(str(probe.resolve())) for n in nodes])
    blind = [n.get("NodeManagerAddress", n["NodeID"]) for n, got in zip(nodes, seen) if got != token]
    if blind:
        raise UserError(f"--workspace {farm}: not visible from node(s) {', '.join(blind)}; put the farm on storage "
                        "every node mounts at the same path (docs/batch.md)")
