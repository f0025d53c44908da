"""Training loop, checkpoints and run outputs (the stable-dreamfusion Trainer, spec §3.10-§3.11, §5).

Entry points (what the CLI calls), each ``(config, device) -> exit code``:

    train(config, device)             # --ckpt latest|scratch|best|latest_model|<path>
    test(config, device)              # --test: turntable video of a checkpoint
    six_views(config, device)         # --six_views: six fixed views as PNGs
    export_workspace(config, device)  # dreamfusion export <workspace>

See docs/training.md for the workspace layout, checkpoints and resuming.
"""

from dreamfusion.training.entry import build_trainer, export_workspace, save_mesh, six_views, test, train
from dreamfusion.training.trainer import Trainer

__all__ = ["Trainer", "build_trainer", "export_workspace", "save_mesh", "six_views", "test", "train"]
