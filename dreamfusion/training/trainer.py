"""The Trainer: the NeRF stage of stable-dreamfusion as a clean, resumable loop (spec §3.10, §3.11, §5).

    trainer = Trainer(config, device, scene, guidance)        # mode="train"
    trainer.load(config.ckpt)                                 # resume / weights / fresh start
    trainer.train()                                           # epochs of dataset_size_train steps

One step (:meth:`Trainer.train_step`) reads like the algorithm: progressive view/level, the
shading schedule, render, the guidance or reference-view losses, the regularisers. The optimiser
step (:meth:`Trainer.optimize`) adds AMP scaling, gradient clipping and the hash-grid TV/decay
gradients. After each epoch: EMA update, full checkpoint, validation (EMA weights) + ``df.pth``
every ``eval_interval`` epochs, test video every ``test_interval`` epochs and at the end.

Determinism: every random draw of a training step comes from the global torch/numpy/python
generators, whose states are saved in checkpoints; evaluation renders run under a private,
fixed-seed RNG, so they neither perturb nor depend on the training stream. A seeded CPU run that
is interrupted and resumed ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dreamfusion import losses
from dreamfusion.cameras import (CameraBatch, OrbitConfig, OrbitSampler, circle_poses, progressive_ranges,
                                 reference_poses, six_view_poses, SIX_VIEWS)
from dreamfusion.checkpoints import (CheckpointManager, ResolvedCheckpoint, capture_rng_state, load_checkpoint,
                                     restore_rng_state)
from dreamfusion.errors import UserError
from dreamfusion.pause_points import pause_point
from dreamfusion.profiling import section
from dreamfusion.workspace_guard import mark_started
from dreamfusion.optimizers import ExponentialMovingAverage, build_lr_scheduler, build_optimizer
from dreamfusion.training import outputs
from dreamfusion.training.reference import ReferenceImages, reference_losses
from dreamfusion.training.run_log import RunLog
from dreamfusion.training.schedules import plan_step, progress_ratio, progressive_level

NAME = "df"
EVAL_SEED = 0
EMA_DECAY = 0.95


def orbit_from_config(c) -> OrbitConfig:
    """The camera ranges of a run as the cameras module wants them."""
    return OrbitConfig(
        radius_range=tuple(c.radius_range), theta_range=tuple(c.theta_range), phi_range=tuple(c.phi_range),
        fovy_range=tuple(c.fovy_range), uniform_sphere_rate=c.uniform_sphere_rate, jitter_pose=c.jitter_pose,
        jitter_center=c.jitter_center, jitter_target=c.jitter_target, jitter_up=c.jitter_up,
        angle_overhead=c.angle_overhead, angle_front=c.angle_front, default_radius=c.default_radius,
        default_polar=c.default_polar, default_azimuth=c.default_azimuth, default_fovy=c.default_fovy)


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Run a block under a fixed seed, then put every global generator back as it was."""
    saved = capture_rng_state()
    torch.manual_seed(seed)
    try:
        yield
    finally:
        restore_rng_state(saved)


class _StopFlag:
    """Ctrl-C during training sets a flag checked between steps; a second Ctrl-C aborts at once."""

    def __init__(self, log):
        self.requested = False
        self._log = log
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: give up on a clean stop
            raise KeyboardInterrupt
        self.requested = True
        self._log("interrupt received: stopping after this step and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


DIVERGED_EXIT_CODE = 3  # a run stopped because its loss, gradients or weights became non-finite


class Trainer:
    """Owns the optimisation state of a run and writes its outputs.

    Args:
        config: a resolved :class:`dreamfusion.config.Config`.
        device: where the scene and guidance run.
        scene: a :class:`dreamfusion.training.scene.Scene` (field + renderer).
        guidance: :class:`GuidanceTerms` (``None`` in test / six-view mode).
        mode: ``train`` builds optimiser, scheduler, EMA and scaler; ``test`` only renders.
        progress_bar: show a tqdm bar on stderr while training.
    """

    def __init__(self, config, device: torch.device, scene, guidance=None, *, mode: str = "train",
                 progress_bar: bool = True, log_echo: bool = True):
        self.cfg = c = config
        self.device = torch.device(device)
        self.scene = scene.to(self.device)
        self.guidance = guidance
        self.mode = mode
        self.progress_bar = progress_bar
        self.workspace = Path(c.workspace)
        self.log = RunLog(self.workspace, NAME, tensorboard=(mode == "train"), echo=log_echo)
        self.ckpt = CheckpointManager(self.workspace, NAME, keep=c.max_keep_ckpt, log=self.log.line)
        self.orbit = orbit_from_config(c)
        self.sampler = OrbitSampler(self.orbit)
        self.global_step = 0
        self.epoch = 0
        self._set_aside_from: int | None = None  # see load() and _started()
        self.iters_per_epoch = c.dataset_size_train
        self.max_epoch = math.ceil(c.iters / self.iters_per_epoch)
        self.amp = bool(c.fp16) and self.device.type == "cuda"
        if c.fp16 and not self.amp:
            self.log.line(f"--fp16: mixed precision needs CUDA; running in float32 on {self.device.type}")
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        self.references = None
        self._known_view: CameraBatch | None = None
        if c.references:
            kh, kw = int(c.h * c.known_view_scale), int(c.w * c.known_view_scale)
            self.references = ReferenceImages.load(c.references, kh, kw).to(self.device)
            self._known_view = reference_poses(self.orbit, self.references.polar, self.references.azimuth,
                                               self.references.radius, kh, kw).to(self.device)
        self.optimizer = self.lr_scheduler = self.ema = None
        self.observer = None  # a TrainingObserver (the viewer): see dreamfusion.training.observer
        self.last_batch = None  # the latest step's StepBatch, kept while an observer is attached
        if mode == "train":
            base_lr = 5 * c.lr if c.optim == "adan" else c.lr  # stable-dreamfusion: Adan runs at 5× --lr
            self.optimizer = build_optimizer(c.optim, self.scene.param_groups(base_lr))
            self.lr_scheduler = build_lr_scheduler(c.backbone, self.optimizer, c.iters)
            self.ema = ExponentialMovingAverage(self.scene.parameters(), EMA_DECAY)

    # ------------------------------------------------------------------------------ one step

    def train_step(self, step: int) -> tuple[Tensor, dict[str, float]]:
        """Render one batch and assemble its loss. Returns ``(loss, {term: value})``."""
        c = self.cfg
        rho = progress_ratio(step, c.exp_start_iter, c.exp_end_iter)
        if c.progressive_level:
            self.scene.set_max_level(progressive_level(rho))
        plan = plan_step(step, rho, known_view_interval=c.known_view_interval,
                         has_references=self.references is not None, latent_iter_ratio=c.latent_iter_ratio,
                         albedo_iter_ratio=c.albedo_iter_ratio, min_ambient_ratio=c.min_ambient_ratio,
                         textureless_ratio=c.textureless_ratio, has_background_net=self.scene.has_background)

        refs = None
        if plan.known_view:
            cameras, refs = self._known_view_batch()
        else:
            ranges = progressive_ranges(self.orbit, rho, c.progressive_view_init_ratio) if c.progressive_view \
                else self.orbit
            cameras = self.sampler.sample(c.batch_size, c.h, c.w, config=ranges).to(self.device)
        B, H, W = cameras.c2w.shape[0], cameras.height, cameras.width
        rays_o, rays_d = cameras.rays()
        if plan.known_view and c.known_view_noise_scale > 0:
            # One random offset for all origins and one for all directions: fights grid artefacts.
            rays_o = rays_o + torch.randn(3, device=self.device) * c.known_view_noise_scale
            rays_d = rays_d + torch.randn(3, device=self.device) * c.known_view_noise_scale
        background = self._background(plan.background, B, H, W)

        # Priors that know the camera's key light (the exemplar prior) get renders lit by it.
        light = None if plan.known_view else self.guidance.light_directions(cameras)
        shading = plan.shading
        if shading == "lambertian" and plan.ambient_ratio >= 1.0 and c.lambda_orient <= 0 and c.lambda_3d_normal_smooth <= 0:
            shading = "albedo"  # the same image (the known view's ambient-1 lambertian), without the normals
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp), section("render"):
            out = self.scene.render(rays_o, rays_d, shading=shading, ambient_ratio=plan.ambient_ratio,
                                    bg_color=background, perturb=True, training=True, light_d=light, cameras=cameras,
                                    need_normal_image=c.lambda_2d_normal_smooth > 0
                                    or (plan.known_view and c.lambda_normal > 0))
        rgb = out["image"].reshape(B, H, W, 3)
        if c.grad_clip_rgb >= 0 and rgb.requires_grad:
            bound = c.grad_clip_rgb * (self.scaler.get_scale() if self.amp else 1.0)
            rgb.register_hook(lambda g: g.clamp(-bound, bound))
        opacity = out["weights_sum"].reshape(B, H, W)
        normal_image = out.get("normal_image")
        normal_image = normal_image.reshape(B, H, W, 3) if normal_image is not None else None
        if self.observer is not None:
            from dreamfusion.training.observer import StepBatch

            self.last_batch = StepBatch(cameras, rgb.detach(), opacity.detach(), plan.known_view)

        terms: dict[str, Tensor] = {}
        if plan.known_view:
            bg = background.reshape(B, H, W, 3)
            depth = out["depth"].reshape(B, H, W)
            with section("reference losses"):
                terms.update(reference_losses(rgb, opacity, depth, normal_image, refs, bg,
                                              lambda_rgb=c.lambda_rgb, lambda_mask=c.lambda_mask,
                                              lambda_depth=c.lambda_depth, lambda_normal=c.lambda_normal,
                                              ramp=losses.linear_ramp(step, c.iters)))
        else:
            if plan.as_latent:
                # The normal-shaded render (shading="normal") plus opacity is the prior's latent.
                images = torch.cat([rgb, opacity[..., None]], -1).permute(0, 3, 1, 2)
            else:
                images = rgb.permute(0, 3, 1, 2)
            preview = None
            if c.save_guidance and step % c.save_guidance_interval == 0:
                preview = self.workspace / "guidance" / f"step_{step:07d}.png"
            elif self.observer is not None:
                preview = self.observer.preview_sink(self, step)
            with section("prior + SDS"):
                terms.update(self.guidance.losses(images.float(), cameras, as_latent=plan.as_latent,
                                                  opacity=opacity.float(), save_guidance_path=preview,
                                                  shading=plan.shading, ambient_ratio=plan.ambient_ratio))

        # Regularisers, on every step (known-view steps included).
        with section("regularisers"):
            self._regularisers(step, terms, out, opacity, normal_image)
        loss = sum(terms.values())
        return loss, {k: float(v.detach()) for k, v in terms.items()}

    def _regularisers(self, step: int, terms: dict[str, Tensor], out: dict[str, Tensor], opacity: Tensor,
                      normal_image: Tensor | None) -> None:
        c = self.cfg
        if c.lambda_opacity > 0:
            terms["opacity"] = c.lambda_opacity * losses.opacity_loss(opacity)
        if c.lambda_entropy > 0 and "weights" in out:
            terms["entropy"] = c.lambda_entropy * losses.entropy_ramp(step, c.iters) * \
                losses.alpha_entropy(out["weights"])
        if c.lambda_distortion > 0 and "loss_distortion" in out:
            terms["distortion"] = c.lambda_distortion * out["loss_distortion"]
        if c.lambda_2d_normal_smooth > 0 and normal_image is not None:
            terms["normal_2d"] = c.lambda_2d_normal_smooth * losses.normal_smoothness_2d(normal_image)
        if c.lambda_orient > 0 and "loss_orient" in out:
            terms["orient"] = c.lambda_orient * out["loss_orient"]
        if c.lambda_3d_normal_smooth > 0 and "loss_normal_perturb" in out:
            terms["normal_3d"] = c.lambda_3d_normal_smooth * out["loss_normal_perturb"]
        if c.lambda_mesh_normal > 0 and "loss_mesh_normal" in out:  # the DMTet stage's surface
            terms["mesh_normal"] = c.lambda_mesh_normal * out["loss_mesh_normal"]
        if c.lambda_mesh_laplacian > 0 and "loss_mesh_laplacian" in out:
            terms["mesh_laplacian"] = c.lambda_mesh_laplacian * out["loss_mesh_laplacian"]

    def _known_view_batch(self) -> tuple[CameraBatch, ReferenceImages]:
        n, b = len(self.references), self.cfg.batch_size
        index = torch.randperm(n)[:b] if n > b else torch.arange(n)
        cams = self._known_view
        pick = lambda t: t[index.to(t.device)]  # noqa: E731
        chosen = CameraBatch(c2w=pick(cams.c2w), intrinsics=pick(cams.intrinsics), height=cams.height,
                             width=cams.width, polar=pick(cams.polar), azimuth=pick(cams.azimuth),
                             radius=pick(cams.radius), fovy=pick(cams.fovy), delta_polar=pick(cams.delta_polar),
                             delta_azimuth=pick(cams.delta_azimuth), delta_radius=pick(cams.delta_radius),
                             direction=pick(cams.direction))
        return chosen, self.references.select(index)

    def _background(self, kind: str, B: int, H: int, W: int) -> Tensor | None:
        """None means: the scene's background network (or white when it has none)."""
        if kind == "network":
            return None
        if kind == "white":
            return torch.ones(3, device=self.device)
        if kind == "pixels":
            return torch.rand(B * H * W, 3, device=self.device)
        return torch.rand(3, device=self.device)

    def optimize(self, step: int) -> dict[str, float]:
        """One optimisation step: occupancy refresh, forward, backward, gradient hooks, update."""
        c = self.cfg
        if self.scene.uses_occupancy_grid and (step - 1) % c.update_extra_interval == 0:
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp), section("occupancy update"):
                self.scene.update_occupancy_grid()
        self.scene.train()
        self.optimizer.zero_grad(set_to_none=True)
        with section("forward"):
            loss, terms = self.train_step(step)
        for name, value in {**terms, "total": float(loss.detach())}.items():
            if not math.isfinite(value):
                self._diverged(step, f"the {name} loss is {value}")
        with section("backward"):
            self.scaler.scale(loss).backward()
        with section("gradient hooks"):
            self._gradient_hooks(step)
        with section("optimizer"):
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.lr_scheduler.step()
            bad = _first_non_finite(self.scene.named_parameters())
        if bad is not None:
            self._diverged(step, f"the weights of {bad} are not finite after the update")
        terms["loss"] = float(loss.detach())
        return terms

    def _gradient_hooks(self, step: int) -> None:
        """Unscale, clip, add the hash grid's TV / weight-decay gradients, check for non-finite values."""
        c = self.cfg
        self.scaler.unscale_(self.optimizer)
        if c.grad_clip >= 0:
            torch.nn.utils.clip_grad_value_(self.scene.parameters(), c.grad_clip)
        grid = self.scene.hash_grid() if (c.lambda_tv > 0 or c.lambda_wd > 0) else None
        if grid is not None and grid.embeddings.grad is not None:
            if c.lambda_tv > 0:
                losses.add_hash_grid_tv_grad_(grid.embeddings.detach(), grid.embeddings.grad, grid.offsets,
                                              grid.resolutions, grid.vertex_index,
                                              c.lambda_tv * losses.tv_ramp(step, c.iters), grid.tv_points,
                                              max_level=grid.active_levels)
            if c.lambda_wd > 0:
                losses.add_level_weight_decay_grad_(grid.embeddings.detach(), grid.embeddings.grad, grid.offsets,
                                                    c.lambda_wd)
        if not self.amp:  # under fp16 the grad scaler skips steps with inf/NaN gradients by design
            bad = _first_non_finite((n, p.grad) for n, p in self.scene.named_parameters() if p.grad is not None)
            if bad is not None:
                self._diverged(step, f"the gradient of {bad} is not finite")

    # ---------------------------------------------------------------------------------- loop

    def train(self) -> int:
        """Train up to ``iters`` steps from the current state. Returns a process exit code."""
        c = self.cfg
        if self.global_step > 0 and self.global_step % self.iters_per_epoch == 0 or self.global_step >= c.iters:
            # Resumed at the end of an epoch: a kill may have come between the checkpoint and that
            # epoch's validation or video; make whatever is missing, exactly as the run would have.
            self._started()
            with _StopFlag(self.log.line) as stop:
                self._epoch_outputs(stop, only_missing=True)
                if stop.requested:
                    return 130
        if self.global_step >= c.iters:
            self.log.line(f"already trained to step {self.global_step} (--iters {c.iters}): outputs are complete; "
                          f"raise --iters to continue, or render with --test")
            return 0
        self.log.line(f"training {c.iters} iterations ({self.max_epoch} epochs of {self.iters_per_epoch}) on "
                      f"{self.device}, starting after step {self.global_step}")
        bar = self._progress_bar()
        started, started_here = time.time(), False
        with _StopFlag(self.log.line) as stop:
            while self.global_step < c.iters:
                epoch = self.global_step // self.iters_per_epoch + 1
                last = min(epoch * self.iters_per_epoch, c.iters)
                for step in range(self.global_step + 1, last + 1):
                    if self.observer is not None:
                        self.observer.between_steps(self, stop)  # may pause, save or export here
                    if stop.requested:
                        return self._stop_early(bar)
                    try:
                        terms = self.optimize(step)
                    except BaseException:
                        if bar is not None:
                            bar.close()  # before the error line, not after it
                        raise
                    if not started_here:
                        self._started()
                        started_here = True
                    self.global_step = step
                    self._log_step(step, terms, bar)
                    if self.observer is not None:
                        self.observer.after_step(self, step, terms)
                self.epoch = epoch
                self.ema.update()  # once per epoch, like stable-dreamfusion
                path = self.ckpt.save_full(self.full_state(), epoch)
                self.log.line(f"epoch {epoch} done at step {self.global_step}: saved {path.name}")
                if stop.requested:
                    return self._stop_early(bar)
                self._epoch_outputs(stop)
        if bar is not None:
            bar.close()
        self.log.line(f"training finished at step {self.global_step} in {time.time() - started:.1f} s")
        self.log.flush()
        return 0

    def _diverged(self, step: int, what: str) -> None:
        """Stop a run whose numbers went non-finite, before anything of it is saved: the last
        checkpoint written (at the end of the previous epoch) is the last good state."""
        last = self.ckpt.full_checkpoints()
        kept = f"the last good checkpoint, {last[-1][1]}, is kept" if last else "no checkpoint was written"
        self.log.line(f"training diverged at step {step}: {what}; stopped without saving ({kept})")
        raise UserError(f"training diverged at step {step}: {what}; stopped without saving ({kept}); "
                        f"lower --lr or change the loss weights, then run again", exit_code=DIVERGED_EXIT_CODE)

    def _epoch_outputs(self, stop, only_missing: bool = False) -> None:
        """What the end of epoch ``self.epoch`` writes: validation and df.pth every ``eval_interval``
        epochs, the test video every ``test_interval`` and at the last epoch, index.html. With
        ``only_missing``, each is made only when absent (a resumed run catching up after a kill)."""
        c, epoch = self.cfg, self.epoch
        if epoch % c.eval_interval == 0 and not (only_missing and self._best_is_current()):
            self.validate(stop)
            if stop.requested:
                return
            self.ckpt.save_best(self.best_state())
        if (epoch % c.test_interval == 0 or epoch == self.max_epoch) and not stop.requested:
            if not (only_missing and all(p.is_file() for p in self._video_paths())):
                self.test_video(stop)
        outputs.write_index_html(self.workspace, f"dreamfusion: {c.text or c.image or 'run'}")

    def _best_is_current(self) -> bool:
        """df.pth holds this step's EMA weights (the validation that writes it finished)."""
        if not self.ckpt.best_path.is_file():
            return False
        try:
            state = torch.load(self.ckpt.best_path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # noqa: BLE001 - unreadable: make it again
            return False
        return isinstance(state, dict) and int(state.get("global_step", -1)) == self.global_step

    def _video_paths(self) -> tuple[Path, Path]:
        folder = self.workspace / "results"
        return folder / f"{NAME}_ep{self.epoch:04d}_rgb.mp4", folder / f"{NAME}_ep{self.epoch:04d}_depth.mp4"

    def _started(self) -> None:
        """The first step went through: the run's outputs are now its own (see
        :mod:`dreamfusion.workspace_guard`), and files this run could overwrite are set aside."""
        mark_started()
        outputs.remove_stale_temporaries(self.workspace)
        self.ckpt.remove_stale_temporaries()
        if self._set_aside_from is not None:
            self.ckpt.set_aside(None if self._set_aside_from < 0 else self._set_aside_from)
            self._set_aside_from = None

    def _stop_early(self, bar) -> int:
        if bar is not None:
            bar.close()
        epoch = max(1, math.ceil(self.global_step / self.iters_per_epoch))
        if self.global_step > 0:
            path = self.ckpt.save_full(self.full_state(), epoch)
            self.log.line(f"interrupted after step {self.global_step}: saved {path}; run the same command "
                          f"again to resume")
        else:
            self.log.line("interrupted before the first step; nothing to save")
        self.log.flush()
        return 130

    def _progress_bar(self):
        if not self.progress_bar:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=self.cfg.iters, initial=self.global_step, desc="train", unit="it",
                    dynamic_ncols=True, leave=True)

    def _log_step(self, step: int, terms: dict[str, float], bar) -> None:
        lr = self.optimizer.param_groups[0]["lr"]
        scalars = {f"train/{k}": v for k, v in terms.items()}
        scalars["train/lr"] = lr
        self.log.scalars(step, scalars)
        if bar is not None:
            bar.set_postfix(loss=f"{terms['loss']:.4g}", lr=f"{lr:.2g}", refresh=False)  # one redraw per step
            bar.update(1)
        if step % max(1, self.iters_per_epoch // 4) == 0 or step == self.cfg.iters:
            self.log.line(f"step {step}: " + ", ".join(f"{k}={v:.5g}" for k, v in terms.items()))

    # ----------------------------------------------------------------------------- rendering

    @torch.no_grad()
    def render_views(self, cameras: CameraBatch, *, stop=None, normals: bool = True,
                     desc: str = "render") -> list[dict[str, Tensor]]:
        """Render each camera (albedo shading, default background) under a fixed-seed private RNG,
        with a progress bar named ``desc``.

        Returns one dict per view: ``rgb [H,W,3]``, ``depth [H,W]`` (raw), ``normal [H,W,3]``.
        """
        from tqdm.auto import tqdm

        self.scene.eval()
        frames = []
        bar = tqdm(total=cameras.c2w.shape[0], desc=desc, unit="view", leave=False, disable=not self.progress_bar)
        with isolated_rng(EVAL_SEED), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            for i in range(cameras.c2w.shape[0]):
                if stop is not None and stop.requested:
                    break
                one = _slice_cameras(cameras, i).to(self.device)
                rays_o, rays_d = one.rays()
                out = self.scene.render(rays_o, rays_d, shading="albedo", ambient_ratio=1.0, bg_color=None,
                                        perturb=False, training=False, need_normal_image=normals, cameras=one)
                H, W = one.height, one.width
                frame = {"rgb": out["image"].reshape(H, W, 3).float().clamp(0, 1),
                         "depth": out["depth"].reshape(H, W).float()}
                if normals and out.get("normal_image") is not None:
                    frame["normal"] = out["normal_image"].reshape(H, W, 3).float().clamp(0, 1)
                frames.append(frame)
                bar.update()
        bar.close()
        return frames

    def validate(self, stop=None) -> None:
        """Render ``dataset_size_valid`` turntable views with EMA weights into ``validation/``."""
        c = self.cfg
        cams = circle_poses(self.orbit, c.dataset_size_valid, c.H, c.W)
        if self.ema is not None:
            self.ema.store()
            self.ema.copy_to()
        try:
            frames = self.render_views(cams, stop=stop, desc="validation")
        finally:
            if self.ema is not None:
                self.ema.restore()
        folder = self.workspace / "validation"
        for i, frame in enumerate(frames):
            stem = f"{NAME}_ep{self.epoch:04d}_{i:04d}"
            self._save_frame(folder, stem, frame)
            pause_point("validation")
            if i == 0:
                self.log.image(self.global_step, "validation/rgb", frame["rgb"])
                self.log.image(self.global_step, "validation/depth", outputs.normalize_depth(frame["depth"]))
                if "normal" in frame:
                    self.log.image(self.global_step, "validation/normal", frame["normal"])
        self.log.line(f"validation: {len(frames)} views written to {folder}")

    def _save_frame(self, folder: Path, stem: str, frame: dict[str, Tensor]) -> None:
        outputs.save_png(folder / f"{stem}_rgb.png", frame["rgb"])
        outputs.save_png(folder / f"{stem}_depth.png", outputs.normalize_depth(frame["depth"]))
        if "normal" in frame:
            outputs.save_png(folder / f"{stem}_normal.png", frame["normal"])

    def test_frames(self, stop=None) -> list[dict[str, Tensor]]:
        """The turntable of the test video (current weights, not EMA: stable-dreamfusion's test())."""
        c = self.cfg
        return self.render_views(circle_poses(self.orbit, c.dataset_size_test, c.H, c.W), stop=stop, normals=False,
                                 desc="test video")

    def test_video(self, stop=None) -> tuple[Path, Path] | None:
        """Write ``results/df_ep{E}_rgb.mp4`` and ``_depth.mp4``."""
        frames = self.test_frames(stop)
        if stop is not None and stop.requested:
            return None
        rgb_path, depth_path = self._video_paths()
        self.log.line(f"encoding the test video ({len(frames)} frames)")
        outputs.write_video(rgb_path, [outputs.to_uint8(f["rgb"]) for f in frames], self.cfg.video_fps)
        pause_point("video")
        outputs.write_video(depth_path, [outputs.to_uint8(outputs.normalize_depth(f["depth"])) for f in frames],
                            self.cfg.video_fps)
        self.log.line(f"test video: {rgb_path} and {depth_path} ({len(frames)} frames)")
        return rgb_path, depth_path

    def six_views(self) -> list[Path]:
        """Render the six fixed views to ``results/df_ep{E}_{i}_{rgb,depth,normal}.png``."""
        c = self.cfg
        frames = self.render_views(six_view_poses(self.orbit, c.H, c.W))
        folder = self.workspace / "results"
        written = []
        for i, frame in enumerate(frames):
            stem = f"{NAME}_ep{self.epoch:04d}_{i:04d}"
            self._save_frame(folder, stem, frame)
            written.append(folder / f"{stem}_rgb.png")
        self.log.line("six views (" + ", ".join(v[0] for v in SIX_VIEWS) + f") written to {folder}")
        return written

    # ---------------------------------------------------------------------------- checkpoints

    def full_state(self) -> dict[str, Any]:
        """Everything needed to continue exactly: weights, optimiser, schedules, EMA, RNG."""
        return {
            "epoch": self.epoch,
            "global_step": self.global_step,
            "model": self.scene.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict(),
            "rng": capture_rng_state(),
            "config": _plain_config(self.cfg),
            "stage": self.scene.stage,
        }

    def best_state(self) -> dict[str, Any]:
        """``df.pth``: EMA weights (what validation showed), no optimiser state."""
        self.ema.store()
        self.ema.copy_to()
        try:
            model = {k: v.clone() for k, v in self.scene.state_dict().items()}
        finally:
            self.ema.restore()
        return {"epoch": self.epoch, "global_step": self.global_step, "model": model,
                "config": _plain_config(self.cfg), "stage": self.scene.stage}

    def read_checkpoint(self, ckpt: str) -> tuple[ResolvedCheckpoint, dict | None]:
        """Resolve ``--ckpt`` and read the file (raises UserError for a missing or bad one), without
        applying it: the CLI reads it before loading the guidance models, so a bad file costs a second."""
        resolved = self.ckpt.resolve(ckpt)
        if resolved.path is None:
            return resolved, None
        return resolved, load_checkpoint(resolved.path, map_location=self.device, log=self.log.line)

    def load(self, ckpt: str, read: tuple[ResolvedCheckpoint, dict | None] | None = None) -> None:
        """Apply ``--ckpt`` (see :mod:`dreamfusion.checkpoints`); ``read`` is what
        :meth:`read_checkpoint` returned, if it was called already."""
        resolved, state = read if read is not None else self.read_checkpoint(ckpt)
        if resolved.path is None:
            if self.mode == "train":
                self._set_aside_from = -1  # a fresh start never overwrites an older run's files (-1: all of them)
                self.log.line("starting from scratch")
            else:
                raise UserError(f"no checkpoint found in {self.ckpt.folder} (train first, or pass --ckpt <path>)")
            return
        try:
            self.scene.load_state_dict(state["model"])
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise UserError(f"checkpoint {resolved.path} does not fit this model (different --backbone or size "
                            f"options?): {first[:160]}") from None
        full = not resolved.model_only and "optimizer" in state
        self.epoch = int(state.get("epoch", 0)) if full else 0
        self.global_step = int(state.get("global_step", 0)) if full else 0
        if self.mode != "train":
            self.epoch = int(state.get("epoch", 0))
            self.global_step = int(state.get("global_step", 0))
            self.log.line(f"loaded {resolved.path} (epoch {self.epoch}, step {self.global_step})")
            return
        if full:
            self.optimizer.load_state_dict(state["optimizer"])
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            self.ema.load_state_dict(state["ema"])
            restore_rng_state(state["rng"])
            self._set_aside_from = math.ceil(self.global_step / self.iters_per_epoch)
            self.log.line(f"resumed from {resolved.path} at step {self.global_step} (epoch {self.epoch})")
        else:
            self.reset_ema()
            self._set_aside_from = -1
            self.log.line(f"loaded weights from {resolved.path}; optimiser and step start fresh")

    def reset_ema(self) -> None:
        """Restart the weights' moving average from the current weights."""
        self.ema = ExponentialMovingAverage(self.scene.parameters(), EMA_DECAY)

    def close(self) -> None:
        self.log.close()


def _first_non_finite(named_tensors) -> str | None:
    """Name of the first tensor holding an inf or NaN, else None (one sync for all of them)."""
    named = [(n, t) for n, t in named_tensors]
    if not named:
        return None
    flags = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(flags.all()):
        return None
    return named[int((~flags).nonzero()[0, 0])][0]


def _slice_cameras(cameras: CameraBatch, i: int) -> CameraBatch:
    sl = slice(i, i + 1)
    return CameraBatch(c2w=cameras.c2w[sl], intrinsics=cameras.intrinsics[sl], height=cameras.height,
                       width=cameras.width, polar=cameras.polar[sl], azimuth=cameras.azimuth[sl],
                       radius=cameras.radius[sl], fovy=cameras.fovy[sl], delta_polar=cameras.delta_polar[sl],
                       delta_azimuth=cameras.delta_azimuth[sl], delta_radius=cameras.delta_radius[sl],
                       direction=cameras.direction[sl])


def _plain_config(config) -> dict:
    to_dict = getattr(config, "to_dict", None)
    return to_dict() if callable(to_dict) else dict(vars(config))
