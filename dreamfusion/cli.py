"""Command line: ``dreamfusion [options]`` (stable-dreamfusion's main.py), ``dreamfusion export``,
``dreamfusion preprocess`` (stable-dreamfusion's preprocess_image.py), ``dreamfusion view``,
``dreamfusion batch`` and ``dreamfusion evaluate``.

The parser is built from :class:`dreamfusion.config.Config`'s field metadata. Every error the user can
cause ends as one line on stderr and exit code 2; nothing is written before the input is validated.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
import typing
import warnings
from pathlib import Path

import yaml

from . import __version__
from .config import Config, check_features, cli_fields, resolve
from .errors import UserError

PROG = "dreamfusion"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump) and exit code 2."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(message)


def _field_type(f: dataclasses.Field) -> type:
    hint = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    for name, kind in (("bool", bool), ("int", int), ("float", float), ("list", list)):
        if hint.split(" |")[0].strip() == name:
            return kind
    return str


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Text (or image) to 3D by Score Distillation Sampling.",
                     epilog=f"Also: '{PROG} export <workspace>' writes a textured mesh from a workspace's checkpoint; "
                            f"'{PROG} preprocess photo.jpg' makes the photo_rgba.png that --image trains on; "
                            f"'{PROG} view <workspace>' opens a finished workspace in the browser viewer; "
                            f"'{PROG} batch prompts.txt --workspace farm/' runs many prompts (on Ray); "
                            f"'{PROG} evaluate <workspace>...' scores finished runs (CLIP R-precision).",
                     formatter_class=argparse.ArgumentDefaultsHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in cli_fields():
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        flag = meta["flag"] or f"--{f.name}"
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        kind = _field_type(f)
        kwargs: dict = {"dest": f.name, "help": meta["help"], "default": default}
        if kind is bool:
            action = argparse.BooleanOptionalAction if default else "store_true"
            group.add_argument(flag, action=action, **kwargs)
            continue
        if kind is list:
            if f.name == "guidance":
                kwargs.update(nargs="+", type=str)
            else:
                kwargs.update(nargs=2, type=float, metavar=("MIN", "MAX"))
        else:
            kwargs["type"] = kind
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        group.add_argument(flag, **kwargs)
    return parser


def _expand_file_arguments(argv: list[str]) -> list[str]:
    """Replace ``--file F`` by the arguments in F, placed first so later command-line ones win."""
    if "--file" not in argv and not any(a.startswith("--file=") for a in argv):
        return argv
    rest, file_args = [], []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--file" or arg.startswith("--file="):
            if arg == "--file":
                if index + 1 >= len(argv):
                    raise UserError("argument --file: expected a file path")
                path, index = argv[index + 1], index + 2
            else:
                path, index = arg.split("=", 1)[1], index + 1
            try:
                text = Path(path).read_text()
            except OSError as error:
                raise UserError(f"--file {path}: cannot read ({error.strerror or error})") from None
            try:
                file_args += shlex.split(text, comments=True)
            except ValueError as error:
                raise UserError(f"--file {path}: {error}") from None
            rest += ["--file", path]
            continue
        rest.append(arg)
        index += 1
    return file_args + rest


def parse_config(argv: list[str]) -> Config:
    """Parse and resolve a command line into a :class:`Config` (raises UserError)."""
    namespace = build_parser().parse_args(_expand_file_arguments(argv))
    return resolve(Config(**vars(namespace)))


def check_workspace(path: str) -> Path:
    """Check that ``path`` can hold outputs, without creating it (raises UserError)."""
    workspace = Path(path).expanduser()
    if workspace.exists():
        if not workspace.is_dir():
            raise UserError(f"--workspace {path}: exists and is not a directory")
        if not os.access(workspace, os.W_OK | os.X_OK):
            raise UserError(f"--workspace {path}: directory is not writable")
    else:
        parent = workspace.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise UserError(f"--workspace {path}: cannot create it ({parent} is not writable)")
    return workspace


def prepare_workspace(path: str) -> Path:
    """Check that ``path`` can hold outputs, then create it. Raises UserError before writing anything."""
    workspace = check_workspace(path)
    try:
        workspace.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"--workspace {path}: cannot create it ({error.strerror or error})") from None
    return workspace


def save_config(config: Config, workspace: Path, name: str = "config.yaml") -> Path:
    """Write the resolved config atomically (temp file + rename)."""
    target = workspace / name
    _atomic_write(target, yaml.safe_dump(config.to_dict(), sort_keys=False).encode())
    return target


def load_saved_config(workspace: Path) -> dict:
    path = workspace / "config.yaml"
    if not path.is_file():
        raise UserError(f"{workspace}: no config.yaml (is this a dreamfusion workspace?)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise UserError(f"{path}: not a valid YAML file") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: not a dreamfusion config")
    return data


def _check_mode(config: Config) -> None:
    check_features(config)
    if config.gui and not config.six_views and not config.dry_run:
        from .viewer.run import require_viser

        require_viser()
    if config.test or config.six_views:
        return
    if config.text is None and not config.references:
        raise UserError("give a prompt with --text \"...\" or a reference image with --image (or --test to render a checkpoint)")
    if "exemplar" in config.guidance and config.text is None:
        raise UserError("--guidance exemplar needs --text naming a built-in object")


def run(config: Config) -> int:
    """Dispatch a resolved config to training, test or six-view rendering.

    A run that fails before it really starts (bad input found while loading) leaves the workspace
    as it found it, byte for byte (:class:`~dreamfusion.workspace_guard.WorkspaceGuard`).
    """
    _check_mode(config)
    from .devices import seed_everything, select_device
    from .memory import check_memory
    from .workspace_guard import WorkspaceGuard

    device = select_device(config.device)  # fails before anything is written
    check_workspace(config.workspace)
    estimate = check_memory(config, device)
    if config.estimate_polar and not config.dry_run:
        from .training.reference import estimate_reference_polar

        estimate_reference_polar(config, device)  # before the config is saved: resume and test reuse it
    if config.dry_run:
        return dry_run(config, device, estimate)
    name = "config_test.yaml" if (config.test or config.six_views) else "config.yaml"
    with WorkspaceGuard(config.workspace):
        workspace = prepare_workspace(config.workspace)
        if config.seed is not None:
            seed_everything(config.seed)
        try:
            from . import training
        except ImportError as error:  # a broken installation, not a user error, but say it in one line
            raise UserError(f"training is not available in this installation ({error})") from None
        save_config(config, workspace, name)
        if config.six_views:
            return training.six_views(config, device)
        if config.gui:
            from .viewer.run import serve_checkpoint, serve_training

            return serve_checkpoint(config, device) if config.test else serve_training(config, device)
        return training.test(config, device) if config.test else training.train(config, device)


def dry_run(config: Config, device, estimate) -> int:
    """``--dry_run``: the checks a run makes before writing (checkpoint and reference images read,
    not just found), then a short report on stdout. Writes nothing."""
    from .checkpoints import CheckpointManager, load_checkpoint
    from .memory import GB, available_memory

    workspace = Path(config.workspace).expanduser()
    mode = "six views of" if config.six_views else "test renders of" if config.test else "train"
    what = config.text if config.text is not None else config.image
    lines = [f"dry run: {mode} {what!r} on {device} in {workspace}" if what else f"dry run: {mode} {workspace} on {device}"]
    resolved = CheckpointManager(workspace, "df", log=lambda *_: None).resolve(config.ckpt)
    if resolved.path is not None:
        state = load_checkpoint(resolved.path, log=lambda *_: None, rewrite=False)
        lines.append(f"checkpoint: {resolved.path} (step {int(state.get('global_step', 0))})")
    elif config.test or config.six_views:
        raise UserError(f"no checkpoint found in {workspace / 'checkpoints'} (train first, or pass --ckpt <path>)")
    else:
        lines.append("checkpoint: none, starts from scratch" + (" (existing ones would be set aside)"
                                                                 if workspace.is_dir() else ""))
    if config.references:
        from .training.reference import ReferenceImages

        ReferenceImages.load(config.references, config.h, config.w)
        lines.append(f"reference images: {len(config.references)} read")
        if config.estimate_polar:
            lines.append("reference polar angle: estimated from the image when the run starts (--default_polar sets it)")
    have = available_memory(device)
    lines.append(f"memory: about {estimate.peak / GB:.1f} GB at the peak ({estimate.largest_part()})"
                 + (f", {have / GB:.1f} GB available" if have is not None else ""))
    lines.append("nothing was written")
    print("\n".join(lines))
    return 0


def _atomic_write(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def workspace_config(path: str, overrides: dict) -> tuple[Path, Config]:
    """A workspace's saved config with ``overrides`` (only names that are options) applied, resolved."""
    workspace = Path(path)
    if not workspace.is_dir():
        raise UserError(f"{path}: workspace not found")
    saved = load_saved_config(workspace)
    known = {f.name for f in dataclasses.fields(Config)}
    chosen = {k: v for k, v in overrides.items() if k in known and k != "workspace"}
    config = resolve(Config(**{**{k: v for k, v in saved.items() if k in known and k != "references"}, **chosen,
                               "workspace": str(workspace)}))
    return workspace, config


def export_main(argv: list[str]) -> int:
    """``dreamfusion export <workspace> [--mcubes_resolution N] [--decimate_target N] ...``."""
    parser = _Parser(prog=f"{PROG} export", description="Export a textured mesh (OBJ + GLB) from a workspace's checkpoint.")
    parser.add_argument("workspace")
    parser.add_argument("--ckpt", default="latest", help="latest | best | <path>")
    parser.add_argument("--mcubes_resolution", type=int, default=None)
    parser.add_argument("--decimate_target", type=int, default=None)
    parser.add_argument("--texture_size", type=int, default=None)
    parser.add_argument("--mesh_surface", choices=("visible", "density"), default=None,
                        help="visible: level read off the renders, hidden space filled (default); density: density > --density_thresh")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args = parser.parse_args(argv)
    workspace, config = workspace_config(args.workspace, {k: v for k, v in vars(args).items() if v is not None})
    from .devices import select_device

    device = select_device(args.device)
    try:
        from .training import export_workspace
    except ImportError as error:
        raise UserError(f"mesh export is not available in this installation ({error})") from None
    from .workspace_guard import WorkspaceGuard

    with WorkspaceGuard(workspace):
        return export_workspace(config, device)


def view_main(argv: list[str]) -> int:
    """``dreamfusion view <workspace> [--gui_host H] [--gui_port P] [--ckpt latest|best|<path>]``."""
    parser = _Parser(prog=f"{PROG} view", allow_abbrev=False,
                     description="Open a finished workspace in the browser viewer: its field from any camera, "
                                 "with the shading, light and field-of-view controls, beside its exported mesh.")
    parser.add_argument("workspace")
    parser.add_argument("--ckpt", default="latest", help="latest | best | <path> (default latest)")
    parser.add_argument("--gui_host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--gui_port", type=int, default=0, help="port (default 0: a free one; the URL printed is "
                                                                  "the port really taken)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args = parser.parse_args(argv)
    workspace, config = workspace_config(args.workspace, {"ckpt": args.ckpt, "gui_host": args.gui_host,
                                                          "gui_port": args.gui_port, "device": args.device,
                                                          "test": True, "gui": True})
    from .devices import select_device
    from .viewer.run import require_viser, serve_checkpoint
    from .workspace_guard import WorkspaceGuard

    require_viser()
    device = select_device(args.device)
    with WorkspaceGuard(workspace):
        return serve_checkpoint(config, device)


def batch_main(argv: list[str]) -> int:
    """``dreamfusion batch prompts.txt --workspace farm/ [--seeds 0 1 2] [--address ...] [training options]``.
    Exit code: the number of runs that failed (at most 100)."""
    parser = _Parser(prog=f"{PROG} batch", allow_abbrev=False,
                     description="Run many prompts (a .txt with one a line, or .csv / .jsonl with per-prompt options, "
                                 "seeds and images), each in <workspace>/<slug>, as tasks on Ray; rerun to resume. "
                                 "Any other option is a training option for every run.")
    parser.add_argument("prompts", help="prompt file: .txt, .csv or .jsonl (docs/batch.md)")
    parser.add_argument("--workspace", required=True, help="the farm: one workspace per run inside it")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="run each prompt with each of these seeds")
    parser.add_argument("--address", default=None, help="an existing Ray cluster: 'auto' or ray://host:10001 "
                                                         "(default: a local Ray started here, on 127.0.0.1)")
    parser.add_argument("--gpus_per_task", type=float, default=None, help="GPUs per run (default 1 when the cluster "
                                                                         "has GPUs, else 0)")
    parser.add_argument("--cpus_per_task", type=float, default=1.0, help="CPUs per run (and its torch threads; default 1)")
    parser.add_argument("--num_cpus", type=int, default=None, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--no_ray", action="store_true", help="run the prompts one after another in this process")
    parser.add_argument("--no_evaluate", action="store_true", help="skip 'dreamfusion evaluate' after each run")
    parser.add_argument("--clip_model", default=None, help="CLIP model for the evaluation (hub id or folder)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args, training = parser.parse_known_args(argv)
    per_run = {"--text", "--image", "--workspace", "--seed", "--image_config"}
    given = [a.split("=")[0] for a in training if a.split("=")[0] in per_run]
    if given:
        raise UserError(f"batch: {given[0]} is set per run (from the prompt file), not for the whole batch")
    if args.cpus_per_task <= 0 or (args.gpus_per_task is not None and args.gpus_per_task < 0):
        raise UserError("batch: --cpus_per_task must be positive and --gpus_per_task >= 0")
    parse_config([*training, "--text", "check", "--workspace", str(Path(args.workspace) / "check")])  # bad options stop here
    from .farm.prompts import read_batch
    from .farm.report import write_reports
    from .farm.runner import BatchOptions, run_batch

    items = read_batch(Path(args.prompts), args.seeds)
    farm = check_workspace(args.workspace).absolute()
    options = BatchOptions(farm=farm, common=training, address=args.address, gpus_per_task=args.gpus_per_task,
                           cpus_per_task=args.cpus_per_task, evaluate=not args.no_evaluate,
                           evaluate_args=["--clip_model", args.clip_model] if args.clip_model else [],
                           use_ray=not args.no_ray, num_cpus=args.num_cpus)
    print(f"batch: {len(items)} runs from {args.prompts} into {farm}", flush=True)
    outcomes = run_batch(items, options, report=lambda line: print(line, flush=True), progress=sys.stderr.isatty())
    write_reports(farm, items, outcomes)
    failed = sum(o.state != "done" for o in outcomes)
    print(f"batch: {len(outcomes) - failed} done, {failed} failed; see {farm / 'index.html'} and "
          f"{farm / 'summary.csv'}", flush=True)
    return min(failed, 100)


def preprocess_main(argv: list[str]) -> int:
    """``dreamfusion preprocess photo.jpg [more ...] [--size 256] [--border_ratio 0.2] [--no-recenter]
    [--no-holes] [--depth_model ID|PATH|none] [--out_dir DIR]``."""
    from .preprocess.depth import DEFAULT_DEPTH_MODEL  # no torch/onnxruntime/transformers until used

    parser = _Parser(prog=f"{PROG} preprocess", allow_abbrev=False,
                     description="Turn photos into the <stem>_rgba.png (+ _depth.png, _normal.png, and the "
                                 "<stem>_rgba.json transform) that --image trains on.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="photos of one object each")
    parser.add_argument("--size", type=int, default=256, help="output side in pixels when recentring, 32..4096 (default 256)")
    parser.add_argument("--border_ratio", type=float, default=0.2,
                        help="share of --size left around the object's longer side, in [0, 1) (default 0.2)")
    parser.add_argument("--recenter", action=argparse.BooleanOptionalAction, default=True,
                        help="crop and centre the object (default); --no-recenter keeps the photo's framing and "
                             "resolution")
    parser.add_argument("--holes", action=argparse.BooleanOptionalAction, default=True,
                        help="open enclosed regions of the mask where the background shows through the object "
                             "(a ring's hole; by colour, see docs/preprocess.md) (default); --no-holes keeps "
                             "the background remover's mask as it is")
    parser.add_argument("--depth_model", default=DEFAULT_DEPTH_MODEL,
                        help="transformers depth model (hub id or local folder) for _depth.png and _normal.png; "
                             f"'none' writes the RGBA only (default {DEFAULT_DEPTH_MODEL})")
    parser.add_argument("--out_dir", default=None, help="where to write (default: next to each photo)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    args = parser.parse_args(argv)
    from .preprocess import preprocess_images

    preprocess_images(args.images, size=args.size, border_ratio=args.border_ratio, recenter=args.recenter,
                      holes=args.holes, depth_model=args.depth_model, out_dir=args.out_dir)
    return 0


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def legacy_preprocess_main(argv: list[str] | None = None) -> int:
    """stable-dreamfusion's ``python preprocess_image.py <path> [--size 256] [--border_ratio 0.2]
    [--recenter True|False] [--dont_recenter]``, run by the same pipeline as ``dreamfusion preprocess``
    (``--recenter False`` really turns recentring off here; there, ``type=bool`` made it True)."""
    argv = list(sys.argv[1:] if argv is None else argv)

    def translate() -> int:
        parser = _Parser(prog="preprocess_image.py", allow_abbrev=False,
                         description="stable-dreamfusion's preprocess_image.py; see 'dreamfusion preprocess --help'.")
        parser.add_argument("path")
        parser.add_argument("--size", default="256")
        parser.add_argument("--border_ratio", default="0.2")
        parser.add_argument("--recenter", type=_parse_bool, default=True)
        parser.add_argument("--dont_recenter", dest="recenter", action="store_false")
        parser.add_argument("--depth_model", default=None)
        parser.add_argument("--out_dir", default=None)
        parser.add_argument("--debug", action="store_true")
        args = parser.parse_args(argv)
        forwarded = [args.path, "--size", args.size, "--border_ratio", args.border_ratio,
                     "--recenter" if args.recenter else "--no-recenter"]
        forwarded += ["--depth_model", args.depth_model] if args.depth_model is not None else []
        forwarded += ["--out_dir", args.out_dir] if args.out_dir is not None else []
        return preprocess_main(forwarded)

    return _guarded(translate, argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "export":
        return _guarded(lambda: export_main(argv[1:]), argv)
    if argv and argv[0] == "preprocess":
        return _guarded(lambda: preprocess_main(argv[1:]), argv)
    if argv and argv[0] == "view":
        return _guarded(lambda: view_main(argv[1:]), argv)
    if argv and argv[0] == "batch":
        return _guarded(lambda: batch_main(argv[1:]), argv)
    if argv and argv[0] == "evaluate":
        from .evaluation.cli import evaluate_main

        return _guarded(lambda: evaluate_main(argv[1:]), argv)
    return _guarded(lambda: run(parse_config(argv)) or 0, argv)


def _guarded(command: typing.Callable[[], int], argv: list[str]) -> int:
    """Run a command with the CLI's error policy: a UserError is one stderr line and its exit code (2)."""
    # transformers warns on import about the torchvision backends we deliberately do not install
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    # huggingface_hub warns about an argument diffusers still passes; it is not the user's business
    warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
    try:
        return command()
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a bug or an environment problem: still one line
        if _debugging(argv):
            raise
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        print(f"{PROG}: error: {type(error).__name__}: {reason} (unexpected; run again with --debug or "
              f"DREAMFUSION_DEBUG=1 for the traceback, and please report it)", file=sys.stderr)
        return 1


def _debugging(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("DREAMFUSION_DEBUG", "") not in ("", "0")


if __name__ == "__main__":
    sys.exit(main())
