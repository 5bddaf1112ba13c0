"""The conditional diffusion model of a run and its sampler, by `model.recipe`.

diffusers: a diffusers UNet2DModel whose time embedding is shifted by an MLP of the 11-value
conditioning vector (`class_embed_type="identity"`), so every res block sees it through its time
projection; diffusers owns the diffusion (DDPM noising for training, DDIM for sampling, pixels in
[-1, 1]). It differs from the paper: ε-prediction on a fixed cosine schedule instead of a VDM with a
learned schedule, and one shared conditioning MLP instead of one per res block.
paper: the original's network (`paper_unet`) with its learned VDM schedule (`vdm`), pixels in [0, 1].
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from . import vdm
from .config import ConfigError, ModelConfig, RunConfig, TrainConfig
from .data import cond_dim
from .paper_unet import PaperUNet

NULL_CONDITIONING = -1.0  # the paper's unconditional token: all 11 entries set to -1 (references: guidance)


class ConceptUNet(nn.Module):
    """ε(x_t, t, h): UNet2DModel whose time embedding is shifted by an MLP of the conditioning h."""

    def __init__(self, model: ModelConfig, resolution: int, conditioning: int = 11):
        super().__init__()
        levels = len(model.channels)
        embed_dim = 4 * model.channels[0]
        down, up = ["DownBlock2D"] * levels, ["UpBlock2D"] * levels
        if model.attention_last_level:  # the original network's size: see profiles/gpu.yaml
            down[-1], up[0] = "AttnDownBlock2D", "AttnUpBlock2D"
        self.unet = UNet2DModel(
            sample_size=resolution, in_channels=3, out_channels=3,
            block_out_channels=tuple(model.channels), layers_per_block=model.layers_per_block,
            down_block_types=tuple(down), up_block_types=tuple(up),
            add_attention=model.attention, attention_head_dim=max(model.channels[-1] // 4, 8),
            norm_num_groups=model.norm_groups, dropout=model.dropout, class_embed_type="identity")
        if model.resampling == "transpose":
            _use_strided_resampling(self.unet)
        # The conditioning embedding: the place where latent interventions edit the model (chapter 4).
        self.cond_embed = nn.Sequential(nn.Linear(conditioning, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, class_labels=self.cond_embed(cond)).sample

    def cond_projections(self) -> list[nn.Module]:
        return [self.cond_embed]


class PaperDiffusion(nn.Module):
    """The paper's recipe as one module: its network and its learned schedule γ(t), so that weights,
    optimizer and checkpoints hold both. Called like the network: ε̂(z_t, t_n, h)."""

    def __init__(self, model: ModelConfig, resolution: int, conditioning: int = 11):
        super().__init__()
        self.net = PaperUNet(model, resolution, conditioning)
        self.schedule = vdm.LinearSchedule()

    def forward(self, z: torch.Tensor, t_n: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(z, t_n, cond)

    def cond_projections(self) -> list[nn.Module]:
        return self.net.cond_projections()


def _use_strided_resampling(unet: UNet2DModel) -> None:
    """The original network's resampling: 2x2 stride-2 conv down, 2x2 stride-2 transposed conv up.

    diffusers' up-sampling (interpolate, then a 3x3 conv at the higher resolution) is a fifth of the
    paper-scale model's FLOPs; a 2x2 transposed conv costs a ninth of it, bringing the model to the
    original's FLOPs per step.
    """
    for block in unet.down_blocks:
        for i, down in enumerate(block.downsamplers or []):
            block.downsamplers[i] = Downsample2D(down.channels, use_conv=True, out_channels=down.out_channels,
                                                 padding=0, kernel_size=2, name="op")  # "op": no alias to save twice
    for block in unet.up_blocks:
        for i, up in enumerate(block.upsamplers or []):
            block.upsamplers[i] = Upsample2D(up.channels, use_conv_transpose=True, out_channels=up.out_channels,
                                             kernel_size=2, padding=0)


def build_model(run: RunConfig) -> nn.Module:
    """The model of a run, initialized from the run's seed (so initialization is part of the run)."""
    cls = PaperDiffusion if run.model.recipe == "paper" else ConceptUNet
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.train.seed)
        return cls(run.model, run.data.resolution, cond_dim(run.data))


def noise_scheduler(run: RunConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=run.train.timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", clip_sample=True)


def null_conditioning(like: torch.Tensor) -> torch.Tensor:
    return torch.full_like(like, NULL_CONDITIONING)


CPUINFO = Path("/proc/cpuinfo")
# CPU flags (Linux's names) of bf16 arithmetic in hardware: AVX512-BF16 (Cooper Lake, Zen 4 and later)
# and AMX-BF16 (Sapphire Rapids and later). Without them torch still runs bf16, converting to fp32.
NATIVE_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags listed by /proc/cpuinfo text (its `flags` lines)."""
    out: set[str] = set()
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "flags":
            out.update(value.split())
    return out


@functools.lru_cache(maxsize=None)
def _native_cpu_bf16(path: str) -> bool:
    try:
        text = Path(path).read_text()
    except OSError:  # no /proc (macOS, Windows): nothing says the CPU has it
        return False
    return any(flag in cpu_flags(text) for flag in NATIVE_CPU_BF16_FLAGS)


def native_cpu_bf16(path: str | Path | None = None) -> bool:
    """Whether this CPU does bf16 arithmetic in hardware, as /proc/cpuinfo (`path`) says: one of
    NATIVE_CPU_BF16_FLAGS. False where there is no such file. Read once per path."""
    return _native_cpu_bf16(str(path if path is not None else CPUINFO))


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` does bf16 arithmetic in hardware: CUDA with bf16 support (not the emulation torch
    offers on older GPUs), or a CPU with native_cpu_bf16."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and native_cpu_bf16()


def precision(train: TrainConfig, device: torch.device | str) -> str:
    """The arithmetic a run trains and samples in on `device`, "bf16" or "fp32", from `train.bf16`:
    auto: bf16 where the device has it natively (native_bf16), fp32 elsewhere; always: bf16; never: fp32."""
    mode = train.bf16
    if mode == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if mode in ("always", "never"):
        return "bf16" if mode == "always" else "fp32"
    raise ConfigError(f"train.bf16 = {mode!r} is unknown; allowed: ['auto', 'always', 'never']")


def default_precision(train: TrainConfig) -> str:
    """`precision` on the device `train.train` picks when given none: CUDA where there is one, else the CPU."""
    return precision(train, "cuda" if torch.cuda.is_available() else "cpu")


def autocast(device: torch.device | str, prec: str):
    """The context a forward pass runs in: bf16 autocast on `device` where `prec` is "bf16"."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=prec == "bf16")


def _guided(model: nn.Module, guidance: torch.Tensor | None, device: torch.device, prec: str):
    """ε̂(x, t, h), with classifier-free guidance ε_u + w (ε_c − ε_u) where `guidance` w is given (the
    unconditional pass uses the null conditioning; both passes run in one batch), in `prec` arithmetic."""
    def eps(x, t, cond):
        with autocast(device, prec):
            if guidance is None:
                return model(x, t, cond).float()
            both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null_conditioning(cond)]))
        eps_c, eps_u = both.float().chunk(2)
        return eps_u + guidance * (eps_c - eps_u)
    return eps


@torch.no_grad()
def sample(model: nn.Module, run: RunConfig, cond: torch.Tensor, noise: torch.Tensor, steps: int = 50,
           guidance: float | torch.Tensor | None = None) -> torch.Tensor:
    """Samples from the given initial noise, deterministic given it; pixels in [0, 1].

    diffusers recipe: DDIM (η = 0), clipped to [0, 1]. paper recipe: the ancestral VDM sampler, whose
    z_0 goes on unclipped, as in the original (only display clips). `guidance` w: one weight, or one
    per sample.
    """
    param = next(model.parameters())
    x, cond = noise.to(param.device), cond.to(param.device)
    if guidance is not None:
        guidance = torch.as_tensor(guidance, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
    eps = _guided(model, guidance, param.device, precision(run.train, param.device))
    if run.model.recipe == "paper":
        return vdm.sample(eps, model.schedule, cond, x, steps)
    scheduler = DDIMScheduler.from_config(noise_scheduler(run).config)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(eps(x, t.to(x.device).expand(x.shape[0]), cond), t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)
