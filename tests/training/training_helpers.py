"""Helpers shared by the training tests (imported by module name, like tests/export's helpers)."""

import os
import subprocess
import sys
import textwrap

from dreamfusion.cli import parse_config


def tiny_args(workspace, sd_folder, *extra, iters=4, per_epoch=2):
    """Command-line arguments of a small, seeded CPU run."""
    return ["--text", "a hamburger", "--workspace", str(workspace), "--hf_key", str(sd_folder), "--seed", "0",
            "--iters", str(iters), "--dataset_size_train", str(per_epoch), "--w", "16", "--h", "16",
            "--W", "16", "--H", "16", "--dataset_size_valid", "2", "--dataset_size_test", "3",
            "--log2_hashmap_size", "12", "--num_steps", "8", "--upsample_steps", "0", "--device", "cpu",
            *[str(e) for e in extra]]


def tiny_config(workspace, sd_folder, *extra, **kwargs):
    return parse_config(tiny_args(workspace, sd_folder, *extra, **kwargs))


# A CLI runner that SIGKILLs itself before training step KILL_AT_STEP (environment), as kill -9 would.
KILL_RUNNER = textwrap.dedent("""
    import os, signal, sys
    from dreamfusion.training.trainer import Trainer
    kill_at = int(os.environ.get("KILL_AT_STEP", "0"))
    if kill_at:
        original = Trainer.optimize
        def optimize(self, step):
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)   # no chance to clean up, as with kill -9
            return original(self, step)
        Trainer.optimize = optimize
    from dreamfusion.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def run_cli(args, kill_at: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    """``dreamfusion args`` in a subprocess (one thread), SIGKILLed before step ``kill_at`` if > 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KILL_AT_STEP": str(kill_at)}
    return subprocess.run([sys.executable, "-c", KILL_RUNNER, *[str(a) for a in args]], env=env,
                          capture_output=True, text=True, timeout=timeout)
