"""The shapes world's constants: sizes, vocabulary, model configs and where the shipped weights live.

Everything here is a choice of this project (issue 12), sized so that the whole build trains in about an
hour on a 2-core CPU; each number says why it is what it is.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from reneg_video.core.encoders import EncoderFamily

# 32x32 RGB: the smallest size at which circle, square and triangle stay distinguishable after a x4 VAE.
IMAGE_SIZE = 32
# 8 frames per video: enough for a judge to see the direction of motion, cheap for a CPU-trained UNet3D.
FRAMES = 8
# Frame rate of written videos: 8 frames play for one second.
FPS = 8
# World v2: the VAE downsamples 32 -> 16 (one stride-2 stage): 16x16x8 latents. At 8x8 (v1, the shipped
# v3/v5 weights) two renders differing only in shape were 0.063 apart in latent MSE, about what a 1.5-px
# shift costs, and the generators drew the average blob (shape check 0.45, chance 1/3; docs/shapes.md, "Why
# the generators ignore the shape word"). 16x16 gives a square's corners four times the latent area; a
# UNet step costs ~3x (t2i) to ~5x (t2v) more, measured at one thread. 8 channels as v1: 4 (the v1 and v2
# builds at 8x8) lost corners.
VAE_DOWNSAMPLE = 2
LATENT_CHANNELS = 8
LATENT_SIZE = IMAGE_SIZE // VAE_DOWNSAMPLE

# Text encoder: token count and width of the shapes encoder family (TEXT_FAMILY below). 16 positions: the longest grammar caption ("a blurry noisy faded red circle moving left on a blue
# background") is 12 words + start + end = 14 tokens.
TEXT_TOKENS = 16
# 128 wide: a width no released family uses (768, 1024, 4096), so embeddings of other spaces are refused.
TEXT_WIDTH = 128

# Colours as float RGB in [0, 1]; the judge names a colour by its nearest entry here.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 0.8, 0.0),
    "blue": (0.0, 0.2, 1.0),
    "yellow": (1.0, 0.9, 0.0),
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
}
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = ("left", "right", "up", "down")
# Words captions use to name a degradation (and that a handcrafted negative prompt uses).
DEGRADATION_WORDS = ("blurry", "noisy", "faded", "tinted", "jittery")
# Extra words a handcrafted negative may use; in the vocabulary so they tokenise as whole words.
NEGATIVE_WORDS = ("wrong", "colour", "color", "shape", "missing", "empty", "low", "quality", "bad", "ugly")
GRAMMAR_WORDS = ("a", "an", "on", "background", "moving")
VOCABULARY: tuple[str, ...] = (
    *GRAMMAR_WORDS,
    *COLOURS,
    *SHAPES,
    *DIRECTIONS,
    *DEGRADATION_WORDS,
    *NEGATIVE_WORDS,
    ",",
)
# The handcrafted negative of the shapes world: the degradation words of its captions.
HANDCRAFTED_NEGATIVE = "blurry, noisy, faded, tinted, jittery, wrong colour"  # 13 of the 16 tokens

# The text-encoder family of the shapes models, registered with reneg_video by shapes_world.plugin: 16
# positions (CLIP's absolute position table), 128 wide, no mask.
TEXT_FAMILY = EncoderFamily(
    "shapes-clip",
    TEXT_WIDTH,
    (TEXT_TOKENS,),
    False,
    "shapes-world CLIP text encoder (shapes-t2i, shapes-t2v)",
    positions=TEXT_TOKENS,
    files=("shapes_reneg_emb.bin (shipped in shapes_world/weights/)",),
)

# Where the shipped weights live inside the package (a spec's `bundled = "shapes_world:weights/t2v"`).
PACKAGE = "shapes_world"
WEIGHTS_DIR = "weights"
# The shipped models, each a folder of weights/: the two generators and the reward.
MODELS = ("t2i", "t2v", "reward")
GENERATORS = ("t2i", "t2v")
# What both generators share (one frozen text encoder, its tokenizer, one VAE), stored once in
# weights/COMMON_DIR; each generator's folder names them in reneg_video's shared-components file.
COMMON_DIR = "common"
SHARED_COMPONENTS = ("text_encoder", "tokenizer", "vae")
RENEG_BIN = "shapes_reneg_emb.bin"
RENEG_SAFETENSORS = "shapes_reneg_emb.safetensors"
PROMPTS_DIR = "prompts"


def weights_root() -> Path:
    """The folder holding the shipped shapes weights (inside the installed package)."""
    return Path(str(resources.files(PACKAGE))) / WEIGHTS_DIR


def bundled_folder(name: str) -> Path:
    """The shipped folder of one of MODELS ("t2i", "t2v", "reward"); KeyError when unknown."""
    if name not in MODELS:
        raise KeyError(f"{name!r}: expected one of {MODELS}")
    return weights_root() / name


def shipped_vae() -> Path:
    """The shipped AutoencoderKL folder (both generators' VAE)."""
    return weights_root() / COMMON_DIR / "vae"


def copy_generator(name: str, dest: Path, leave_out: tuple[str, ...] = ()) -> None:
    """A self-contained diffusers folder at `dest` of the shipped generator `name` ("t2i" or "t2v"): its own
    files and its shared components copied in from weights/COMMON_DIR, less the components in `leave_out`
    (what an experiment saves its own UNet beside)."""
    import shutil

    from reneg_video.models.pipeline import SHARED_COMPONENTS_FILE

    source = bundled_folder(name)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(SHARED_COMPONENTS_FILE, *leave_out))
    for part in SHARED_COMPONENTS:
        if part not in leave_out:
            shutil.copytree(weights_root() / COMMON_DIR / part, dest / part)


def prompts_file(split: str) -> Path:
    """The shipped prompt list of `split` ("train" or "heldout"): data.split_prompts() written out."""
    return Path(str(resources.files(PACKAGE))) / PROMPTS_DIR / f"{split}.txt"


# ---- model configs (diffusers / transformers keyword arguments) ----------------------------------------

# Tiny CLIP: its text tower becomes the frozen CLIPTextModel of both generators; its image tower sees
# 32x32 in 4x4 patches (64 patches). gelu as OpenCLIP.
CLIP_TEXT = dict(
    hidden_size=TEXT_WIDTH,
    intermediate_size=4 * TEXT_WIDTH,
    num_hidden_layers=3,
    num_attention_heads=4,
    max_position_embeddings=TEXT_TOKENS,
    hidden_act="gelu",
    projection_dim=TEXT_WIDTH,
)
CLIP_VISION = dict(
    hidden_size=TEXT_WIDTH,
    intermediate_size=2 * TEXT_WIDTH,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=IMAGE_SIZE,
    patch_size=4,
    hidden_act="gelu",
    projection_dim=TEXT_WIDTH,
)
VAE = dict(
    in_channels=3,
    out_channels=3,
    # One block per resolution: VAE_DOWNSAMPLE 2 is one downsampling, 32 -> 16. 64/128 wide, the v1 VAE's
    # first two widths (v1's 64/128/128 at 32 -> 8 reconstructed clean frames' shapes 0.84; at 32/64/64,
    # 0.61), with the edge loss (build.vae.VAE_EDGE_WEIGHT).
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    block_out_channels=(64, 128),
    layers_per_block=1,
    latent_channels=LATENT_CHANNELS,
    norm_num_groups=32,
    sample_size=IMAGE_SIZE,
    mid_block_add_attention=False,  # convolutions over 16x16 latents see the whole 32-px frame in a few layers
)
# The 2D and 3D UNets share every spatial layer shape, so the video UNet starts from the image UNet.
UNET_BLOCKS = (64, 128)
UNET_HEADS = 4
UNET2D = dict(
    sample_size=LATENT_SIZE,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=UNET_BLOCKS,
    layers_per_block=1,
    cross_attention_dim=TEXT_WIDTH,
    attention_head_dim=UNET_HEADS,
    norm_num_groups=32,
    use_linear_projection=True,  # as UNet3DConditionModel's transformers, so every spatial weight carries over
)
UNET3D = dict(
    sample_size=LATENT_SIZE,
    in_channels=LATENT_CHANNELS,
    out_channels=LATENT_CHANNELS,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"),
    up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    block_out_channels=UNET_BLOCKS,
    layers_per_block=1,
    cross_attention_dim=TEXT_WIDTH,
    attention_head_dim=UNET_HEADS,
    norm_num_groups=32,
)
# Stable Diffusion's training noise schedule (scaled_linear 0.00085-0.012, 1000 steps), v-prediction.
SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    # v, as SD2.1-768: epsilon-prediction's x0 at high noise amplifies small errors ~15x, and the tiny t2i
    # learned to ignore the background word there (8-channel build: x0 at t=999 had the asked background
    # in 44% of cases, at t=200 in 100%).
    prediction_type="v_prediction",
)
# shapes-t2v's schedule after the build's motion stage: zero terminal SNR (Lin et al. 2023, "Common
# Diffusion Noise Schedules and Sample Steps are Flawed"), sampled from t = 999 with trailing spacing. With
# SD's schedule the clip's motion survives faintly at t = 999, so the model never had to read the
# direction word (docs/shapes-history.md, "Why shapes-t2v did not move as asked (v3)").
VIDEO_SCHEDULER = dict(SCHEDULER, rescale_betas_zero_snr=True, timestep_spacing="trailing")
