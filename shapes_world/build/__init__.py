"""Train the shapes world from seeds: tiny CLIP (text encoder), VAE, text-to-image UNet, text-to-video
UNet, and the learned reward. Every stage is resumable and deterministic from the build seed.

    from shapes_world.build import BuildConfig, build
    build("build/shapes", BuildConfig.quick())      # a reduced build (~1.5 min on 2 cores)

Stages, in order, one module each (each writes `OUT/<stage>/` atomically when done; mid-stage checkpoints
go to `OUT/checkpoints/<stage>.pt` and `--resume` continues from them):
1. `clip`: a tiny `CLIPModel` trained contrastively on captioned frames and twins; its text tower is frozen
   and becomes the `CLIPTextModel` both generators read (as SD2.1 and ZeroScope share OpenCLIP-H);
2. `vae`: an `AutoencoderKL` 32x32x3 -> 16x16x8 (world v2; 8x8x8 in v1), scaling factor set to 1/std of latents (or, with
   `vae_from`, a trained one adopted);
2b. `decoder`: the VAE decoder alone fine-tuned (encoder frozen: the latents stay the same);
3. `t2i`: a `UNet2DConditionModel` (v-prediction, 10% caption dropout so CFG works), its EMA shipped;
4. `t2v`: a `UNet3DConditionModel` whose spatial layers start from the t2i EMA weights;
4b. `motion`: the t2v UNet on a direction curriculum with zero terminal SNR, so it moves as the word says;
4c. `polish`: all four directions at once, the EMA of the weights shipped;
5. `reward`: the stage-1 CLIP fine-tuned Bradley-Terry on simulated raters' choices between stills
   (PickScore's recipe; `shapes_world.raters`: their own weights, ~20% disagreement with the judge);
6. `export`: the pipelines (`StableDiffusionPipeline`, `TextToVideoSDPipeline`, DDIM) and the reward,
   written with `save_pretrained` in float16, plus the judge accuracy of both generators.
`common` holds what they share: BuildConfig, seeding, the training loop, sampling.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

from reneg_video.core.atomic import atomic_path
from reneg_video.core.errors import UsageError

from .clip import train_clip
from .common import STAGES, BuildConfig
from .decoder import train_decoder
from .export import export
from .motion import train_motion
from .polish import train_polish
from .reward import train_reward
from .t2i import train_t2i
from .t2v import train_t2v
from .vae import adopt_vae, check_vae_folder, train_vae

RUNNERS = {
    "clip": train_clip,
    "vae": train_vae,
    "decoder": train_decoder,
    "t2i": train_t2i,
    "t2v": train_t2v,
    "motion": train_motion,
    "polish": train_polish,
    "reward": train_reward,
    "export": export,
}


def build(
    out: str | Path, cfg: BuildConfig, *, resume: bool = False, stages: tuple[str, ...] = STAGES
) -> dict:
    """Run the stages in order; completed ones (their OUT/<stage>/ exists) are skipped on resume."""
    out = Path(out)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise UsageError(f"--stages {','.join(unknown)}: unknown; expected some of {','.join(STAGES)}")
    if out.exists() and any(out.iterdir()) and not resume:
        raise UsageError(f"--out {out}: exists and is not empty; pass --resume to continue that build")
    if cfg.vae_from is not None:
        check_vae_folder(Path(cfg.vae_from))
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / "build_config.json"
    wanted = json.loads(json.dumps(asdict(cfg)))  # as saved: tuples become lists
    if config_path.exists():
        # Finished stages must have been built with these settings; later ones may change.
        saved = json.loads(config_path.read_text())
        done = [s for s in STAGES if (out / s / "stage.json").exists() and s in wanted]
        changed = [s for s in ("seed", "vae_from", *done) if saved.get(s) != wanted[s]]
        if changed:
            raise UsageError(
                f"--resume {out}: finished stages {changed} were built with other settings ({config_path}); "
                "resume with the same options or start a new --out"
            )
    with atomic_path(config_path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=1) + "\n")
    # With --vae-from the VAE is adopted, not trained, and final: no decoder stage.
    runners = RUNNERS if cfg.vae_from is None else {**RUNNERS, "vae": adopt_vae, "decoder": None}
    timings = {}
    for stage in stages:
        if (out / stage / "stage.json").exists() or runners[stage] is None:
            continue
        start = time.perf_counter()
        runners[stage](out, cfg)
        timings[stage] = round(time.perf_counter() - start, 1)
        info = json.loads((out / stage / "stage.json").read_text())
        info["seconds"] = timings[stage]
        with atomic_path(out / stage / "stage.json") as tmp:
            tmp.write_text(json.dumps(info, indent=1) + "\n")
    return timings


__all__ = ["RUNNERS", "STAGES", "BuildConfig", "build"]
