"""``dreamfusion evaluate <workspace>... [--clip_model ID|FOLDER] [--views N] [--device D]``.

Scores each workspace (:func:`dreamfusion.evaluation.score_workspace`), writes its eval.json and
prints one line per workspace. Every workspace is checked before CLIP loads, so a typo costs
nothing; CLIP loads once for all of them.
"""

from __future__ import annotations

import argparse
import sys
import typing

from dreamfusion.errors import UserError

PROG = "dreamfusion evaluate"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (UserError, exit code 2) like the rest of the CLI."""

    def error(self, message: str) -> typing.NoReturn:
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    from dreamfusion.evaluation.clip_embedder import DEFAULT_CLIP
    from dreamfusion.evaluation.exemplar_3d import EXEMPLAR_SIZE, EXEMPLAR_VOLUME_RESOLUTION

    parser = _Parser(prog=PROG, allow_abbrev=False,
                     description="Score trained workspaces: CLIP score and CLIP R-precision of turntable views "
                                 "(plus ground-truth 3D scores for exemplar runs), written to <workspace>/eval.json.")
    parser.add_argument("workspaces", nargs="+", metavar="workspace")
    parser.add_argument("--clip_model", default=DEFAULT_CLIP,
                        help=f"CLIP hub id or local folder (default {DEFAULT_CLIP}); 'none': 3D scores only")
    parser.add_argument("--views", type=int, default=8, help="turntable views (default 8)")
    parser.add_argument("--ckpt", default="latest", help="latest | best | <path> (default latest)")
    parser.add_argument("--exemplar_size", type=int, default=EXEMPLAR_SIZE,
                        help=f"exemplar runs: 3D evaluation image size (default {EXEMPLAR_SIZE})")
    parser.add_argument("--exemplar_volume", type=int, default=EXEMPLAR_VOLUME_RESOLUTION,
                        help=f"exemplar runs: volume IoU grid (default {EXEMPLAR_VOLUME_RESOLUTION})")
    parser.add_argument("--no_exemplar_3d", action="store_true", help="skip the exemplar runs' 3D scores")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an unexpected error")
    return parser


def summary_line(report: dict) -> str:
    """One line a person reads: CLIP score, R@1, mean rank, 3D scores when there are any."""
    parts = []
    if report.get("clip_score") is not None:
        parts.append(f"CLIP score {report['clip_score']:.2f}, R@1 {report['r_precision']:.3f} "
                     f"(mean rank {report['mean_rank']:.1f} of {report['pool_size']})")
    exemplar = report.get("exemplar_3d")
    if exemplar:
        field = exemplar["field"]
        parts.append(f"3D ({exemplar['object']}): view IoU {field['views']['all']['iou']:.3f}, "
                     f"volume IoU {field['volume_iou']:.3f}")
        if exemplar.get("mesh"):
            parts.append(f"mesh volume IoU {exemplar['mesh']['volume_iou']:.3f}")
    views = f", {report['views']} views" if report.get("views") else ""
    return f"{report['workspace']}: step {report['step']}{views}: {'; '.join(parts)}"


def evaluate_main(argv: list[str]) -> int:
    """Score every workspace; 0 when all were scored, 2 when any could not be (one line each)."""
    args = build_parser().parse_args(argv)
    from dreamfusion.devices import select_device
    from dreamfusion.evaluation.clip_embedder import ClipEmbedder
    from dreamfusion.evaluation.score import EVAL_FILE, score_workspace
    from dreamfusion.evaluation.turntable import find_checkpoint

    if args.views < 1:
        raise UserError(f"--views {args.views}: at least one view is needed")
    for workspace in args.workspaces:
        find_checkpoint(workspace, args.ckpt)
    device = select_device(args.device)
    clip_model = None if args.clip_model.lower() == "none" else args.clip_model
    if clip_model is None and args.no_exemplar_3d:
        raise UserError("--clip_model none with --no_exemplar_3d: nothing to score")
    embedder = ClipEmbedder.from_pretrained(clip_model, device) if clip_model else None
    failed = 0
    for workspace in args.workspaces:
        try:
            report = score_workspace(workspace, clip_model=clip_model, embedder=embedder, views=args.views,
                                     device=device, log=lambda *_: None, ckpt=args.ckpt,
                                     exemplar_3d=not args.no_exemplar_3d, exemplar_size=args.exemplar_size,
                                     exemplar_volume_resolution=args.exemplar_volume)
        except UserError as error:
            failed += 1
            print(f"{PROG}: error: {error}", file=sys.stderr)
            continue
        print(f"{summary_line(report)} -> {report['workspace']}/{EVAL_FILE}")
    return 2 if failed else 0
