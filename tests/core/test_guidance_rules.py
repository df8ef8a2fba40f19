"""Guidance rules (core.guidance): the prediction the scheduler receives is the rule's formula of the two
branch outputs, the negative branch still carries the ReNeg rows, and every stand-in with a negative branch
runs every rule. The formulas are written out here from the papers, not taken from diffusers, except FDG's
Laplacian pyramid (compared with a fresh diffusers guider)."""

from __future__ import annotations

import pytest
import torch

from reneg_video.core.errors import UsageError
from reneg_video.core.guidance import APG_ETA, APG_NORM_THRESHOLD, FDG_LOW_FRACTION, RULES, check_rule
from reneg_video.core.specs import load_spec, registry
from reneg_video.models.generate import generate, settings_for

pytestmark = pytest.mark.usefixtures("one_thread_module")

RULE_NAMES = [name for name in RULES if name != "cfg"]


def _cfg(cond, uncond, g):
    return uncond + g * (cond - uncond)


def _apg_on_denoised(cond, uncond, g, x, a, b):
    # The paper guides the denoised estimates D = a x_t + b prediction (Algorithm 1), then the prediction
    # that gives the guided D is handed on.
    x, cond, uncond = x.double(), cond.double(), uncond.double()
    guided = _apg_first_step(a * x + b * cond, a * x + b * uncond, g).double()
    return ((guided - a * x) / b).float()


def _apg_first_step(cond, uncond, g):
    # Sadat et al. 2024, Algorithm 1 at step 0 (the momentum buffer is still empty): clip the update's norm at
    # r, keep its part orthogonal to the conditional prediction plus eta times the parallel part.
    dims = list(range(1, cond.ndim))
    diff = (cond - uncond).double()
    diff = diff * torch.clamp(APG_NORM_THRESHOLD / diff.norm(p=2, dim=dims, keepdim=True), max=1.0)
    unit = cond.double() / cond.double().norm(p=2, dim=dims, keepdim=True)
    parallel = (diff * unit).sum(dim=dims, keepdim=True) * unit
    update = (diff - parallel) + APG_ETA * parallel
    return (uncond.double() + g * update).float()


def _cfg_zero_star(cond, uncond, g):
    # Fan et al. 2025, eq. 8: s* = <cond, uncond> / ||uncond||^2 per sample, then CFG on s* * uncond.
    c, u = cond.flatten(1).float(), uncond.flatten(1).float()
    s = ((c * u).sum(1) / ((u * u).sum(1) + 1e-8)).view(-1, *(1,) * (cond.ndim - 1))
    return _cfg(cond, uncond * s, g)


def _tcfg(cond, uncond, g):
    # Kwon et al. 2025: project the unconditional prediction onto the first right-singular vector of the
    # stacked [cond; uncond] (dropping its tangential component), then CFG.
    stacked = torch.stack([cond, uncond], dim=1).flatten(2).float()
    _, _, vh = torch.linalg.svd(stacked, full_matrices=False)
    first = vh[:, :1]  # [B, 1, n]
    u = uncond.flatten(1).float().unsqueeze(1)
    projected = (u @ first.transpose(1, 2) @ first).reshape(uncond.shape)
    return _cfg(cond, projected, g)


def _fdg(cond, uncond, g):
    from diffusers.guiders import FrequencyDecoupledGuidance

    guider = FrequencyDecoupledGuidance(guidance_scales=[g, max(1.0, g * FDG_LOW_FRACTION)])
    guider.set_state(step=0, num_inference_steps=1, timestep=None)
    fold = lambda x: x.reshape(x.shape[0], -1, *x.shape[-2:])  # noqa: E731 - frames into channels, as the hook
    return guider.forward(fold(cond), fold(uncond)).pred.reshape(cond.shape)


FORMULAS = {"apg": _apg_first_step, "cfg-zero-star": _cfg_zero_star, "tcfg": _tcfg, "fdg": _fdg}


def _unet_layout(stepped: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """TextToVideoSD hands the scheduler [B * F, C, H, W]; back to the UNet's [B, C, F, H, W]."""
    b, c, f, h, w = like.shape
    return stepped.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)


def _capture(pipe):
    """The denoiser's raw [uncond, cond] output (a hook registered before the rule's sees it unchanged), its
    input (x_t, timestep) and what the scheduler is handed, per step."""
    raw, stepped, inputs = [], [], []
    module = getattr(pipe, "unet", None) or pipe.transformer

    def keep(m, args, kwargs, out):
        raw.append((out[0] if isinstance(out, tuple) else out.sample).detach().clone())
        x = kwargs.get("hidden_states", args[0] if args else None)
        inputs.append((x.detach().clone(), kwargs.get("timestep", args[1] if len(args) > 1 else None)))

    handle = module.register_forward_hook(keep, with_kwargs=True)
    original = pipe.scheduler.step

    def step(model_output, *args, **kwargs):
        stepped.append(model_output.detach().clone())
        return original(model_output, *args, **kwargs)

    pipe.scheduler.step = step
    undo = lambda: (handle.remove(), pipe.scheduler.__dict__.pop("step", None))  # noqa: E731
    return raw, stepped, inputs, undo


@pytest.mark.parametrize("rule", RULE_NAMES)
def test_the_scheduler_gets_the_rules_prediction_of_the_two_branches(pipelines, rule):
    """tiny-zeroscope (UNet3D, [B, C, F, H, W]; TextToVideoSD folds frames into the batch before the step)."""
    pipe = pipelines("tiny-zeroscope")
    spec = pipe.reneg_spec
    settings = settings_for(spec, seed=3, steps=1, guidance_rule=rule, frames=4, height=32, width=32)
    raw, stepped, inputs, undo = _capture(pipe)
    try:
        generate(pipe, spec, "a red fox", settings)
    finally:
        undo()
    uncond, cond = raw[0].chunk(2)
    if rule == "apg":  # DDIM, epsilon prediction: D = (x_t - sqrt(1 - ab) eps) / sqrt(ab)
        x, t = inputs[0]
        ab = pipe.scheduler.alphas_cumprod[int(t)].double()
        expected = _apg_on_denoised(
            cond, uncond, settings.guidance, x[1:], 1 / ab.sqrt(), -((1 - ab) / ab).sqrt()
        )
    else:
        expected = FORMULAS[rule](cond, uncond, settings.guidance)
    got = _unet_layout(stepped[0], expected)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # It is not plain CFG (so a removed hook fails here, not only a changed rule).
    assert not torch.allclose(got, _cfg(cond, uncond, settings.guidance), atol=1e-4)


@pytest.mark.parametrize("rule", ["apg", "tcfg", "cfg-zero-star"])
def test_ltx_packed_tokens_get_the_rule_too(pipelines, rule):
    """tiny-ltx-video (transformer output [B, N, C], handed to the scheduler as it is). At 2 steps of flow
    matching, CFG-Zero* zeroes step 0 (zero-init) and applies s* at step 1."""
    pipe = pipelines("tiny-ltx-video")
    spec = pipe.reneg_spec
    settings = settings_for(
        spec, seed=1, steps=2, guidance=3.0, guidance_rule=rule, frames=9, height=32, width=32
    )
    raw, stepped, inputs, undo = _capture(pipe)
    try:
        generate(pipe, spec, "a red fox", settings)
    finally:
        undo()
    if rule == "cfg-zero-star":
        assert torch.count_nonzero(stepped[0]) == 0
    if rule != "apg":  # APG's later steps carry momentum: step 0 is the formula above
        uncond, cond = raw[-1].chunk(2)
        torch.testing.assert_close(stepped[-1], FORMULAS[rule](cond, uncond, 3.0), rtol=1e-4, atol=1e-5)
    uncond, cond = raw[0].chunk(2)
    if rule == "apg":  # flow matching: D = x_t - s v, s = t / 1000
        x, t = inputs[0]
        s = t[:1].double().view(1, 1, 1) / 1000
        expected = _apg_on_denoised(cond, uncond, 3.0, x[1:], torch.ones_like(s), -s)
        torch.testing.assert_close(stepped[0], expected, rtol=1e-4, atol=1e-5)


def test_the_negative_branch_carries_the_reneg_rows_under_a_rule(pipelines, sd21_file):
    from reneg_video.core.embedding import load_embedding
    from reneg_video.core.inject import attached, negative_rows

    pipe = pipelines("tiny-zeroscope")
    spec = pipe.reneg_spec
    neg = load_embedding(sd21_file)
    seen = []
    handle = pipe.unet.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(
            kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
        ),
        with_kwargs=True,
    )
    try:
        with attached(pipe, neg, spec):
            generate(pipe, spec, "a red fox", settings_for(spec, steps=1, guidance_rule="apg", frames=4))
    finally:
        handle.remove()
    rows, _ = negative_rows(pipe, neg, spec)
    torch.testing.assert_close(seen[0][:1].float(), rows.float())


def test_plain_cfg_installs_nothing(pipelines):
    pipe = pipelines("tiny-zeroscope")
    spec = pipe.reneg_spec
    settings = settings_for(spec, seed=2, steps=1, frames=4, height=32, width=32)
    raw, stepped, inputs, undo = _capture(pipe)
    try:
        generate(pipe, spec, "a red fox", settings)
    finally:
        undo()
    uncond, cond = raw[0].chunk(2)
    got = _unet_layout(stepped[0], cond)
    torch.testing.assert_close(got, _cfg(cond, uncond, settings.guidance), rtol=1e-4, atol=1e-5)
    assert not pipe.unet._forward_hooks


def _standins_with_a_negative_branch():
    return sorted({s.name for s in registry().values() if s.standin and s.negative_branch})


@pytest.mark.slow
@pytest.mark.parametrize("name", _standins_with_a_negative_branch())
def test_every_standin_with_a_negative_branch_runs_every_rule(pipelines, name):
    from dataclasses import replace

    from PIL import Image

    pipe = pipelines(name)
    spec = pipe.reneg_spec
    if spec.image:  # image+text models take their conditioning image as a call argument (render.job)
        spec = replace(spec, call_kwargs={**spec.call_kwargs, "image": Image.new("RGB", (32, 32), "red")})
    guidance = max(spec.defaults.guidance, 2.0)
    for rule in RULE_NAMES:
        try:
            check_rule(rule, spec, guidance, scheduled=False)
        except UsageError as refused:
            assert rule == "fdg" and "packed tokens" in str(refused), refused
            continue
        settings = settings_for(spec, seed=0, steps=1, guidance=guidance, guidance_rule=rule)
        frames = generate(pipe, spec, "a red fox", settings)
        assert frames.ndim == 4 and torch.isfinite(torch.from_numpy(frames)).all(), (name, rule)
        assert pipe.reneg_rule_scales == [guidance], (name, rule)


@pytest.mark.parametrize(
    ("model", "rule", "guidance", "needle"),
    [
        ("tiny-zeroscope", "pag", 9.0, "unknown; expected one of cfg, apg"),
        ("tiny-zeroscope", "apg", 1.0, "at guidance <= 1 there is no negative branch"),
        ("tiny-ltx-video", "fdg", 3.0, "packed tokens"),
        ("ltx-video-0.9.7-distilled", "tcfg", 1.0, "has no negative branch"),
        ("wan-2.1", "apg", 5.0, "separate denoiser calls"),
    ],
)
def test_rules_that_cannot_act_are_refused_in_one_line(model, rule, guidance, needle):
    with pytest.raises(UsageError) as refused:
        check_rule(rule, load_spec(model), guidance, scheduled=False)
    assert needle in str(refused.value) and "\n" not in str(refused.value)
