"""The run configuration: one typed dataclass, stable-dreamfusion's option names, presets in one place.

Every field of :class:`Config` is a command-line option with the same name, default and meaning as
stable-dreamfusion's ``main.py`` (its flags ``-O``, ``-O2``, ``--IF``, ``--W`` included); fields under
the "dreamfusion" group are this project's additions. :func:`resolve` applies the presets and
overrides in stable-dreamfusion's order and validates the result; the CLI builds its parser from
the field metadata, so the dataclass is the single source of truth.

Example::

    config = resolve(Config(text="a hamburger", O=True))
    assert config.fp16 and config.cuda_ray
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import UserError

GUIDANCE_CHOICES = ("SD", "IF", "zero123", "clip", "exemplar")
SD_VERSIONS = {
    "1.5": "runwayml/stable-diffusion-v1-5",
    "2.0": "stabilityai/stable-diffusion-2-base",
    "2.1": "stabilityai/stable-diffusion-2-1-base",
}


def opt(default: Any, help: str, group: str, *, flag: str | None = None, choices: tuple | None = None,
        cli: bool = True) -> Any:
    """A config field with its command-line metadata (``flag`` overrides ``--<name>``)."""
    meta = {"help": help, "group": group, "flag": flag, "choices": choices, "cli": cli}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ReferenceView:
    """One known view for image-conditioned runs (from --image or a row of --image_config)."""

    image: str
    radius: float
    polar: float
    azimuth: float
    zero123_weight: float = 1.0


@dataclass
class Config:
    # ---- general / mode (spec §2.1)
    file: str | None = opt(None, "read more arguments from a text file; later command-line arguments override", "general")
    text: str | None = opt(None, "text prompt", "general")
    negative: str = opt("", "negative prompt (the unconditional embedding of classifier-free guidance)", "general")
    O: bool = opt(False, "preset: --fp16 --cuda_ray", "general", flag="-O")
    O2: bool = opt(False, "preset (when not -O): --fp16 --backbone vanilla --progressive_level", "general", flag="-O2")
    test: bool = opt(False, "test mode: load a checkpoint and render the 360° video", "general")
    six_views: bool = opt(False, "render six fixed views (front, side, back, other side, top, bottom)", "general")
    eval_interval: int = opt(1, "validate every N epochs", "general")
    test_interval: int = opt(100, "render the test video every N epochs (and at the last epoch)", "general")
    workspace: str = opt("workspace", "output directory", "general")
    seed: int | None = opt(None, "random seed (a seeded CPU run is repeatable bit for bit)", "general")
    gui: bool = opt(False, "browser viewer (viser) of the run while it trains, or of a checkpoint with --test; see docs/viewer.md", "general")

    # ---- guidance (spec §2.2)
    guidance: list = opt(["SD"], "guidance models: SD, IF, zero123, clip, exemplar", "guidance", choices=GUIDANCE_CHOICES)
    IF: bool = opt(False, "use DeepFloyd IF instead of Stable Diffusion (no latent warm-up)", "guidance", flag="--IF")
    guidance_scale: float = opt(100.0, "classifier-free guidance scale", "guidance")
    sd_version: str = opt("2.1", "Stable Diffusion version", "guidance", choices=tuple(SD_VERSIONS))
    hf_key: str | None = opt(None, "hub id or local folder of a diffusers Stable Diffusion checkpoint (overrides --sd_version)", "guidance")
    t_range: list = opt([0.02, 0.98], "diffusion timestep range as fractions of the schedule", "guidance")
    dont_override_stuff: bool = opt(False, "keep user values that image/DMTet/exemplar presets would override", "guidance")
    lambda_guidance: float = opt(1.0, "weight of the SDS gradient", "guidance")
    perpneg: bool = opt(False, "Perp-Neg view prompting (fights the Janus problem)", "guidance")
    negative_w: float = opt(-2.0, "Perp-Neg negative weight (0 … -4)", "guidance")
    front_decay_factor: float = opt(2.0, "Perp-Neg decay of the front prompt weight", "guidance")
    side_decay_factor: float = opt(10.0, "Perp-Neg decay of the side prompt weight", "guidance")
    zero123_config: str = opt("./pretrained/zero123/sd-objaverse-finetune-c_concat-256.yaml", "zero123 LDM config (accepted for compatibility; dreamfusion loads the diffusers layout)", "guidance")
    zero123_ckpt: str = opt("kxic/zero123-xl", "zero123 weights: a hub id or a diffusers-format folder (stable-dreamfusion took the original .ckpt file here; its diffusers conversion is kxic/zero123-xl), or 'exemplar': the built-in offline image prior over the exemplar objects (docs/image-to-3d.md)", "guidance")
    zero123_grad_scale: str = opt("angle", "scale zero123 SDS by the angle to the nearest reference ('angle') or not ('None')", "guidance", choices=("angle", "None"))

    # ---- image conditioning (spec §2.3)
    image: str | None = opt(None, "reference image *_rgba.png (with optional _depth.png / _normal.png siblings)", "image")
    image_config: str | None = opt(None, "CSV of reference views: zero123_weight, radius, polar, azimuth, image", "image")
    known_view_interval: int = opt(4, "every N-th step trains on the reference view", "image")
    known_view_scale: float = opt(1.5, "reference-view render size = scale × (h, w)", "image")
    known_view_noise_scale: float = opt(2e-3, "std of the ray jitter of the reference view", "image")
    default_radius: float = opt(3.2, "reference/test camera radius", "image")
    default_polar: float | None = opt(None, "reference/test camera polar angle (degrees); default 90, except with the offline image prior (--zero123_ckpt exemplar), which estimates the photo's elevation when this is not given", "image")
    default_azimuth: float = opt(0.0, "reference/test camera azimuth (degrees)", "image")
    default_fovy: float = opt(20.0, "reference/test vertical field of view (degrees)", "image")

    # ---- training (spec §2.4)
    iters: int = opt(10000, "training iterations", "training")
    lr: float = opt(1e-3, "base learning rate (Adan uses 5x, the hash grid 10x of that)", "training")
    ckpt: str = opt("latest", "latest | scratch | best | latest_model | <path>", "training")
    optim: str = opt("adan", "optimizer", "training", choices=("adan", "adam"))
    fp16: bool = opt(False, "mixed precision (autocast + GradScaler)", "training")
    vram_O: bool = opt(False, "low-VRAM guidance (attention slicing, CPU offload)", "training")
    w: int = opt(64, "training render width", "training")
    h: int = opt(64, "training render height", "training")
    batch_size: int = opt(1, "images rendered per step", "training")
    dataset_size_train: int = opt(100, "iterations per epoch", "training")
    dataset_size_valid: int = opt(8, "validation frames", "training")
    dataset_size_test: int = opt(100, "frames of the test video", "training")
    exp_start_iter: int | None = opt(None, "start of the progress ratio (default 0)", "training")
    exp_end_iter: int | None = opt(None, "end of the progress ratio (default iters)", "training")
    latent_iter_ratio: float = opt(0.2, "fraction of the run with the normal+alpha latent warm-up (SD)", "training")
    albedo_iter_ratio: float = opt(0.0, "fraction of the run with albedo shading", "training")
    min_ambient_ratio: float = opt(0.1, "lower bound of the random ambient term", "training")
    textureless_ratio: float = opt(0.2, "probability of textureless shading", "training")
    jitter_pose: bool = opt(False, "jitter camera centre, target and up", "training")
    jitter_center: float = opt(0.2, "width of the camera-centre jitter", "training")
    jitter_target: float = opt(0.2, "std of the look-at target jitter", "training")
    jitter_up: float = opt(0.02, "std of the up-vector jitter", "training")
    uniform_sphere_rate: float = opt(0.0, "probability a batch samples directions uniformly on the upper hemisphere", "training")
    grad_clip: float = opt(-1.0, "clip parameter gradients by value (>= 0)", "training")
    grad_clip_rgb: float = opt(-1.0, "clamp the gradient at the rendered image (>= 0)", "training")
    progressive_view: bool = opt(False, "grow camera ranges from the default view", "training")
    progressive_view_init_ratio: float = opt(0.2, "initial fraction of the camera ranges", "training")
    progressive_level: bool = opt(False, "grow the number of active encoder levels", "training")
    save_guidance: bool = opt(False, "write render / noisy / denoised strips to <workspace>/guidance", "training")
    save_guidance_interval: int = opt(10, "steps between --save_guidance images", "training")

    # ---- rendering / model (spec §2.5)
    backbone: str = opt("grid", "network backbone", "model", choices=("grid", "vanilla", "grid_tcnn", "grid_taichi"))
    cuda_ray: bool = opt(False, "occupancy-grid ray marching (pure PyTorch here, any device)", "model")
    taichi_ray: bool = opt(False, "Taichi ray marching", "model")
    max_steps: int = opt(1024, "max samples per ray (occupancy-grid marching)", "model")
    num_steps: int = opt(64, "uniform samples per ray", "model")
    upsample_steps: int = opt(32, "importance samples per ray", "model")
    update_extra_interval: int = opt(16, "occupancy-grid refresh interval (iterations)", "model")
    max_ray_batch: int = opt(4096, "ray chunk size at inference", "model")
    bg_radius: float = opt(1.4, "> 0: background MLP on ray directions", "model")
    density_activation: str = opt("exp", "density activation", "model", choices=("exp", "softplus"))
    density_thresh: float = opt(10.0, "occupancy threshold (and marching-cubes level with --mesh_surface density)", "model")
    blob_density: float = opt(5.0, "peak of the density blob", "model")
    blob_radius: float = opt(0.2, "width of the density blob", "model")
    bound: float = opt(1.0, "scene is the cube [-bound, bound]^3", "model")
    dt_gamma: float = opt(0.0, "adaptive ray-marching step (0 = constant)", "model")
    min_near: float = opt(0.01, "camera near plane", "model")

    # ---- camera ranges (spec §2.6)
    radius_range: list = opt([3.0, 3.5], "training camera distance", "camera")
    theta_range: list = opt([45.0, 105.0], "training polar range (degrees)", "camera")
    phi_range: list = opt([-180.0, 180.0], "training azimuth range (degrees)", "camera")
    fovy_range: list = opt([10.0, 30.0], "training vertical field of view (degrees)", "camera")
    angle_overhead: float = opt(30.0, "polar below this is the overhead view (above 180 minus it: bottom)", "camera")
    angle_front: float = opt(60.0, "width of the front and back azimuth sectors (degrees)", "camera")

    # ---- losses (spec §2.7)
    lambda_entropy: float = opt(1e-3, "alpha entropy (ramped)", "losses")
    lambda_opacity: float = opt(0.0, "mean squared opacity", "losses")
    lambda_orient: float = opt(1e-2, "orientation loss", "losses")
    lambda_distortion: float = opt(0.0, "distortion loss (mip-NeRF 360): how far apart each ray's weight is spread; sharpens foggy surfaces", "losses")
    lambda_tv: float = opt(0.0, "hash-grid total variation (ramped)", "losses")
    lambda_wd: float = opt(0.0, "hash-grid weight decay", "losses")
    lambda_mesh_normal: float = opt(0.5, "DMTet face-normal consistency", "losses")
    lambda_mesh_laplacian: float = opt(0.5, "DMTet Laplacian", "losses")
    lambda_rgb: float = opt(1000.0, "reference-view RGB", "losses")
    lambda_mask: float = opt(500.0, "reference-view mask", "losses")
    lambda_normal: float = opt(0.0, "reference-view normal (ramped)", "losses")
    lambda_depth: float = opt(10.0, "reference-view depth, 1 - Pearson (ramped)", "losses")
    lambda_2d_normal_smooth: float = opt(0.0, "smoothness of the rendered normal image", "losses")
    lambda_3d_normal_smooth: float = opt(0.0, "smoothness of 3D normals", "losses")

    # ---- mesh / DMTet (spec §2.8)
    save_mesh: bool = opt(False, "export a textured mesh (OBJ + GLB) after training or test", "mesh")
    mcubes_resolution: int = opt(256, "marching-cubes grid resolution", "mesh")
    mesh_surface: str = opt("visible", "which solid --save_mesh meshes: 'visible' (density above the level at which the mesh has the silhouettes of the renders, plus the space no view sees into: pockets, tunnels, narrow pits; texture as rendered along the normal) or 'density' (stable-dreamfusion: density above --density_thresh); both close hairline gaps, fill enclosed voids and drop floaters", "mesh", choices=("visible", "density"))
    decimate_target: int = opt(50000, "target face count", "mesh")
    dmtet: bool = opt(False, "DMTet mesh fine-tuning stage", "mesh")
    tet_grid_size: int = opt(128, "DMTet tetrahedral grid size, stable-dreamfusion's names: N means a Kuhn grid of N/2 cells per side, 6 tets per cell (128: 65^3 = 274,625 vertices, 1.57M tets, about stable-dreamfusion's 128 grid); from a NeRF, as many cubic cells over the object's box", "mesh", choices=(32, 64, 128, 256))
    init_with: str = opt("", "DMTet initialisation: the NeRF stage's checkpoint (<ws>/checkpoints/df.pth, or the workspace folder) or a mesh file (.obj/.glb/.ply/.stl)", "mesh")
    lock_geo: bool = opt(False, "DMTet: optimise texture only", "mesh")
    dmtet_reso_scale: float = opt(8.0, "DMTet render size = scale × (h, w)", "mesh")
    dmtet_lr_scale: float = opt(10.0, "DMTet: learning rate of the SDF and the deformations = scale × the base rate (1 is stable-dreamfusion, where the geometry barely moves; see docs/dmtet.md)", "mesh")
    dmtet_texture_fit: int = opt(200, "DMTet from a NeRF: steps fitting the colour network, on the initial surface, to the colours the NeRF renders there (what its mesh export bakes) rather than the albedo at the level set; 0: the colour network as the NeRF left it (stable-dreamfusion); see docs/dmtet.md", "mesh")
    dmtet_lr_decay: float = opt(0.1, "DMTet: the SDF and deformation learning rate decays geometrically to this fraction of its start by --iters (1: constant, as stable-dreamfusion; see docs/dmtet.md)", "mesh")

    # ---- GUI and validation/test render size (spec §2.9)
    W: int = opt(800, "GUI width; also validation/test/six-view render width", "gui", flag="--W")
    H: int = opt(800, "GUI height; also validation/test/six-view render height", "gui", flag="--H")
    radius: float = opt(5.0, "GUI camera radius", "gui")
    fovy: float = opt(20.0, "GUI field of view", "gui")
    light_theta: float = opt(60.0, "GUI light polar angle", "gui")
    light_phi: float = opt(0.0, "GUI light azimuth", "gui")
    max_spp: int = opt(1, "GUI samples per pixel (accepted for compatibility; the browser viewer refines by resolution)", "gui")
    gui_host: str = opt("127.0.0.1", "address the --gui viewer listens on (0.0.0.0: every interface)", "gui")
    gui_port: int = opt(0, "port of the --gui viewer (0: a free one; the URL printed is the port really taken)", "gui")

    # ---- dreamfusion additions
    if_key: str = opt("DeepFloyd/IF-I-XL-v1.0", "hub id or local folder of DeepFloyd IF stage I (--IF)", "dreamfusion")
    clip_key: str = opt("openai/clip-vit-base-patch16", "hub id or local folder of the CLIP model (clip guidance)", "dreamfusion")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N | mps", "dreamfusion")
    dry_run: bool = opt(False, "check everything (options, files, checkpoint, workspace, memory), say what the run would do, and write nothing", "dreamfusion")
    debug: bool = opt(False, "show the traceback of an unexpected error (also DREAMFUSION_DEBUG=1)", "dreamfusion")
    view_prompt: bool = opt(True, "view-dependent prompting (--no-view_prompt turns it off)", "dreamfusion")
    compile: bool = opt(False, "torch.compile the hash-grid index math (faster on CPU after a ~10 s compile; needs a C compiler)", "dreamfusion")
    grid_size: int = opt(128, "occupancy-grid resolution of the fast path (-O / --cuda_ray)", "dreamfusion")
    deferred_shading: bool = opt(False, "shade lambertian/textureless renders once per ray, with the normal at the ray's expected surface point, not at every sample (one normal per ray: shaded steps cost about what albedo steps do)", "dreamfusion")
    normal_skip_weight: float = opt(1e-3, "shaded steps skip the finite-difference normals (6 more field queries each) at the samples of least weight of each ray whose weights add up to at most this; they get ambient light only, so a pixel moves by at most this much. 0: normals at every sample, as stable-dreamfusion", "dreamfusion")
    log2_hashmap_size: int = opt(19, "log2 of the hash-table size per level", "dreamfusion")
    max_keep_ckpt: int = opt(2, "full checkpoints kept", "dreamfusion")
    texture_size: int = opt(2048, "baked albedo texture size", "dreamfusion")
    exemplar_resolution: int = opt(32, "image size of the built-in exemplar prior", "dreamfusion")
    exemplar_views: int = opt(64, "reference views per view class of the exemplar prior", "dreamfusion")
    exemplar_condition: str = opt("camera", "what the exemplar prior knows of the camera: 'camera' (its pose, like MVDream/Zero123) or 'view' (the front/side/back prompt only, like Stable Diffusion; shows the Janus problem and cannot tell elevations apart)", "dreamfusion", choices=("camera", "view"))
    video_fps: int = opt(25, "frame rate of the test videos", "dreamfusion")

    # ---- derived by resolve() (not options)
    references: list = opt([], "reference views (derived)", "derived", cli=False)
    estimate_polar: bool = opt(False, "the reference polar angle is to be read from the image (derived)", "derived", cli=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def model_key(self) -> str:
        """Hub id or folder of the Stable Diffusion weights."""
        return self.hf_key or SD_VERSIONS[self.sd_version]


REFERENCE_EXTENT = 0.6
"""Half-extent (in --bound units) of a recentred reference's silhouette in the offline image prior's
scene: the reference camera's field of view is chosen for it."""

EXEMPLAR_DMTET_MAX_RESOLUTION = 128
"""Largest exemplar-prior image size the DMTet stage raises ``--exemplar_resolution`` to."""

RANGE_FIELDS = ("t_range", "radius_range", "theta_range", "phi_range", "fovy_range")

NOT_BUILT = {
    "taichi_ray": "Taichi ray marching (--taichi_ray)",
}
"""Options whose feature this version does not implement: using one is an error, never ignored."""


def cli_fields() -> list[dataclasses.Field]:
    return [f for f in fields(Config) if f.metadata.get("cli", True)]


def resolve(config: Config) -> Config:
    """Validate, then apply presets and overrides in stable-dreamfusion's order (spec §2.10)."""
    c = dataclasses.replace(config)
    for name in ("guidance", "t_range", "radius_range", "theta_range", "phi_range", "fovy_range"):
        setattr(c, name, list(getattr(c, name)))
    _validate(c)

    keep = c.dont_override_stuff
    if c.O:
        c.fp16, c.cuda_ray = True, True
    elif c.O2:
        c.fp16, c.backbone, c.progressive_level = True, "vanilla", True
    if c.backbone == "grid_taichi":
        c.cuda_ray, c.taichi_ray = False, True
    if c.IF:
        c.guidance = ["IF" if g == "SD" else g for g in c.guidance]
        c.latent_iter_ratio = 0.0
    if "exemplar" in c.guidance:
        # The exemplar prior compares images of the object at one field of view (in 'view'
        # mode it sees images, not cameras, so a varying fovy would change the apparent size), wide
        # enough that every training, exemplar and test view holds the whole renderable ball
        # (radius --bound, 5 % margin): nothing can grow where no view looks. Its exact denoiser
        # needs no strong classifier-free guidance (100 over-saturates colours).
        c.latent_iter_ratio = 0.0
        if not keep:
            from .cameras import framing_fovy

            nearest = min(c.radius_range[0], c.default_radius)
            fovy = round(framing_fovy(nearest, min(1.05 * c.bound, 0.99 * nearest)), 2)
            c.fovy_range = [fovy, fovy]
            c.default_fovy = fovy
            # Half the steps shaded under the camera's key light: an albedo render shows the
            # surface only through silhouettes and colour edges, a shaded one through its normals
            # (3 seeds x 7 objects: higher mesh volume IoU and lower p95 distances on every object,
            # about the same time; docs/exemplar.md).
            c.albedo_iter_ratio = 0.5
            c.guidance_scale = 7.5
        c.bg_radius = -1.0  # the prior integrates out a flat background colour; a background net could cheat
    if c.exp_start_iter is None:
        c.exp_start_iter = 0
    if c.exp_end_iter is None:
        c.exp_end_iter = c.iters

    offline_image = c.zero123_ckpt == "exemplar" and c.text is None
    c.estimate_polar = c.default_polar is None and offline_image and c.image is not None and c.image_config is None
    if c.default_polar is None:
        c.default_polar = 90.0  # stable-dreamfusion's; an estimate replaces it before training (cli.run)
    if c.image is not None or c.image_config is not None:
        c.references = _load_references(c)
        if offline_image:
            # The exemplar image prior compares albedo images (its exemplars are unlit) over a flat
            # background colour at one field of view that frames the whole renderable ball.
            c.albedo_iter_ratio, c.bg_radius, c.latent_iter_ratio = 1.0, -1.0, 0.0
            if not keep:
                from .cameras import framing_fovy

                nearest = min(c.radius_range[0], c.default_radius)
                framing = round(framing_fovy(nearest, min(1.05 * c.bound, 0.99 * nearest)), 2)
                # The reference camera's field of view sets the object's size in the scene (the
                # reference fills it): a recentred photo (border 0.2) then spans +-REFERENCE_EXTENT,
                # so the object, deeper than it is wide at worst by about 1.4, stays inside --bound.
                c.default_fovy = round(2.0 * math.degrees(math.atan(REFERENCE_EXTENT * c.bound / (0.8 * c.default_radius))), 2)
        if c.text is None:
            c.guidance = ["zero123"]
            if not keep:
                c.fovy_range = [framing, framing] if offline_image else [c.default_fovy, c.default_fovy]
                # The exemplar posterior is exact: classifier-free guidance (3 measured) only
                # saturates colours and blurs the shape (docs/image-to-3d.md).
                c.guidance_scale = 1.0 if offline_image else 5.0
                if offline_image:
                    # 'angle' damps SDS near the reference (weight angle/180), leaving it to the
                    # reference losses; but views 40 degrees off still see what the photo hides, the
                    # exact posterior is right there, and damped they let a photo that hides the
                    # torus's hole make a disc (docs/image-to-3d.md).
                    c.zero123_grad_scale = "None"
                c.lambda_3d_normal_smooth = 10.0
        else:
            c.guidance = ["SD", "clip"]
            if not keep:
                c.guidance_scale = 10.0
                c.t_range = [0.2, 0.6]
                c.known_view_interval = 2
                c.lambda_3d_normal_smooth = 20.0
            c.bg_radius = -1.0
        c.lambda_entropy, c.lambda_orient, c.latent_iter_ratio = 1.0, 1.0, 0.0
        if not keep:
            c.progressive_view = c.progressive_level = True
            if offline_image:
                # Albedo renders: the orientation and 3D-normal terms regularise shading, and their
                # normals cost about as much as the rest of the step. Entropy 1 (Zero123's preset)
                # erodes parts one or two pixels wide at these render sizes; the text demo's 1e-3
                # measured better in 3D (docs/image-to-3d.md).
                c.lambda_orient = c.lambda_3d_normal_smooth = 0.0
                c.lambda_entropy = 1e-3
            else:
                c.albedo_iter_ratio = 0.0

    if c.dmtet:
        c.h, c.w = int(c.h * c.dmtet_reso_scale), int(c.w * c.dmtet_reso_scale)
        c.known_view_scale = 1.0
        if not keep:
            c.t_range = [0.2, 0.5] if (c.references and c.text) else [0.02, 0.5]
        if c.references:
            c.lambda_normal = c.lambda_depth = 0.0
        c.latent_iter_ratio = c.albedo_iter_ratio = 0.0  # shaded renders: shading is what shows the surface
        if "exemplar" in c.guidance:
            # The exemplar prior must see the stage's resolution, or an 8x render adds nothing. Its
            # reference sets hold views x pixels floats, hence the cap.
            c.exemplar_resolution = max(c.exemplar_resolution, min(c.h, c.w, EXEMPLAR_DMTET_MAX_RESOLUTION))
        c.progressive_view = False

    if c.progressive_view:
        if not keep:
            c.jitter_pose = False
        c.uniform_sphere_rate = 0.0
    return c


def _is_utf8(text: str) -> bool:
    """False for strings holding undecodable bytes (Python maps them to lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_features(c: Config) -> None:
    """Refuse options whose feature is not built, with one line naming it."""
    from .errors import FeatureNotBuiltError

    for name, feature in NOT_BUILT.items():
        if getattr(c, name):
            raise FeatureNotBuiltError(feature)


def _validate(c: Config) -> None:
    for f in fields(c):
        value = getattr(c, f.name)
        flag = f.metadata.get("flag") or f"--{f.name}"
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        for text in ([value] if isinstance(value, str) else value if isinstance(value, list) else []):
            if isinstance(text, str) and not _is_utf8(text):
                shown = text.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
                raise UserError(f"{flag} is not valid UTF-8 text: '{shown[:60]}' (check the shell's quoting and locale)")
    for name in RANGE_FIELDS:
        value = getattr(c, name)
        if len(value) != 2:
            raise UserError(f"--{name} takes two numbers (min max), got {len(value)}")
        if not all(math.isfinite(v) for v in value):
            raise UserError(f"--{name} must be finite numbers, got {value[0]} {value[1]}")
        if value[0] > value[1]:
            raise UserError(f"--{name}: min {value[0]} is greater than max {value[1]}")
    if not 0.0 <= c.t_range[0] <= c.t_range[1] <= 1.0:
        raise UserError(f"--t_range must lie in [0, 1], got {c.t_range[0]} {c.t_range[1]}")
    if c.radius_range[0] <= c.bound:
        raise UserError(f"--radius_range min {c.radius_range[0]} must be larger than --bound {c.bound} (cameras inside the scene)")
    if not (0.0 <= c.theta_range[0] and c.theta_range[1] <= 180.0):
        raise UserError(f"--theta_range must lie in [0, 180], got {c.theta_range[0]} {c.theta_range[1]}")
    if not (0.0 < c.fovy_range[0] and c.fovy_range[1] < 180.0):
        raise UserError(f"--fovy_range must lie in (0, 180), got {c.fovy_range[0]} {c.fovy_range[1]}")
    for g in c.guidance:
        if g not in GUIDANCE_CHOICES:
            raise UserError(f"--guidance: unknown model '{g}' (choose from {', '.join(GUIDANCE_CHOICES)})")
    positive = ("iters", "w", "h", "batch_size", "dataset_size_train", "dataset_size_valid", "dataset_size_test",
                "W", "H", "num_steps", "max_steps", "max_ray_batch", "mcubes_resolution", "eval_interval",
                "test_interval", "update_extra_interval", "grid_size", "known_view_interval", "max_keep_ckpt", "texture_size",
                "exemplar_resolution", "exemplar_views", "video_fps", "save_guidance_interval", "decimate_target")
    for name in positive:
        if getattr(c, name) <= 0:
            raise UserError(f"--{name} must be positive, got {getattr(c, name)}")
    if not 0 <= c.gui_port <= 65535:
        raise UserError(f"--gui_port must be a port number in 0..65535 (0: a free one), got {c.gui_port}")
    if not c.gui_host.strip():
        raise UserError("--gui_host is empty; give an address such as 127.0.0.1")
    if not 0 <= c.normal_skip_weight < 1:
        raise UserError(f"--normal_skip_weight must be in [0, 1), got {c.normal_skip_weight}")
    if c.dmtet_texture_fit < 0:
        raise UserError(f"--dmtet_texture_fit must be >= 0 (0: no fit), got {c.dmtet_texture_fit}")
    if not 0 < c.dmtet_lr_decay <= 1:
        raise UserError(f"--dmtet_lr_decay must be in (0, 1] (1: constant), got {c.dmtet_lr_decay}")
    if c.upsample_steps < 0:
        raise UserError(f"--upsample_steps must be >= 0, got {c.upsample_steps}")
    if c.bound <= 0 or c.lr <= 0:
        raise UserError("--bound and --lr must be positive")
    for name in ("latent_iter_ratio", "albedo_iter_ratio", "min_ambient_ratio", "textureless_ratio", "uniform_sphere_rate",
                 "progressive_view_init_ratio"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise UserError(f"--{name} must lie in [0, 1], got {getattr(c, name)}")
    if c.text is not None and not c.text.strip():
        raise UserError("--text is empty; give a prompt such as --text \"a hamburger\"")
    if c.ckpt not in ("latest", "scratch", "best", "latest_model") and not c.ckpt.endswith((".pth", ".pt")):
        raise UserError(f"--ckpt must be latest, scratch, best, latest_model or a .pth path, got '{c.ckpt}'")
    if c.image is not None:
        if not c.image.endswith("_rgba.png"):
            raise UserError(f"--image must be a preprocessed RGBA file named *_rgba.png, got '{c.image}'")
        if not os.path.isfile(c.image):
            raise UserError(f"--image: file not found: {c.image}")
    if c.image_config is not None and not os.path.isfile(c.image_config):
        raise UserError(f"--image_config: file not found: {c.image_config}")


def _load_references(c: Config) -> list[ReferenceView]:
    refs: list[ReferenceView] = []
    if c.image is not None:
        refs.append(ReferenceView(c.image, c.default_radius, c.default_polar, c.default_azimuth, 1.0))
    if c.image_config is not None:
        base = os.path.dirname(os.path.abspath(c.image_config))
        with open(c.image_config, newline="") as handle:
            rows = [r for r in csv.reader(handle) if r and not r[0].strip().startswith("#")]
        if rows and not _is_number(rows[0][0]):
            rows = rows[1:]  # header line
        for number, row in enumerate(rows, 1):
            if len(row) != 5:
                raise UserError(f"--image_config {c.image_config}: row {number} needs 5 fields (zero123_weight, radius, polar, azimuth, image), got {len(row)}")
            try:
                weight, radius, polar, azimuth = (float(v) for v in row[:4])
            except ValueError:
                raise UserError(f"--image_config {c.image_config}: row {number} has a non-numeric value") from None
            if not all(math.isfinite(v) for v in (weight, radius, polar, azimuth)):
                raise UserError(f"--image_config {c.image_config}: row {number} has a non-finite value")
            if radius <= c.bound or weight < 0:
                raise UserError(f"--image_config {c.image_config}: row {number}: the radius must exceed --bound {c.bound} "
                                f"and the weight must be >= 0")
            path = row[4].strip()
            path = path if os.path.isabs(path) or os.path.exists(path) else os.path.join(base, path)
            if not os.path.isfile(path):
                raise UserError(f"--image_config {c.image_config}: row {number}: image not found: {path}")
            refs.append(ReferenceView(path, radius, polar, azimuth, weight))
        if not refs:
            raise UserError(f"--image_config {c.image_config} lists no views")
        if c.image is None:
            c.default_radius, c.default_polar, c.default_azimuth = refs[0].radius, refs[0].polar, refs[0].azimuth
    return refs


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False
