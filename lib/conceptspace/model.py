"""The conditional diffusion model: a diffusers UNet2DModel plus a conditioning MLP, and its sampler.

The 11-value conditioning vector goes through a small MLP whose output is added to the UNet's time
embedding (diffusers' `class_embed_type="identity"`), so every res block sees it through its time
projection. diffusers owns the diffusion: DDPM noising for training, DDIM for sampling.
Deviation from the paper (spec §2.2): ε-prediction with a fixed cosine schedule instead of a VDM with
a learned schedule, and one shared conditioning MLP instead of one per res block.
"""
from __future__ import annotations

import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from diffusers.models.downsampling import Downsample2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .config import ModelConfig, RunConfig, TrainConfig
from .data import cond_dim

NULL_CONDITIONING = -1.0  # the paper's unconditional token: all 11 entries set to -1 (spec §2.2)


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


def _use_strided_resampling(unet: UNet2DModel) -> None:
    """The original network's resampling: 2x2 stride-2 conv down, 2x2 stride-2 transposed conv up.

    diffusers' up-sampling (interpolate, then a 3x3 conv at the higher resolution) is a fifth of the
    paper-scale model's FLOPs; a 2x2 transposed conv costs a ninth of it, bringing the model to the
    original's FLOPs per step.
    """
    for block in unet.down_blocks:
        for i, down in enumerate(block.downsamplers or []):
            block.downsamplers[i] = Downsample2D(down.channels, use_conv=True, out_channels=down.out_channels,
                                                 padding=0, kernel_size=2)
    for block in unet.up_blocks:
        for i, up in enumerate(block.upsamplers or []):
            block.upsamplers[i] = Upsample2D(up.channels, use_conv_transpose=True, out_channels=up.out_channels,
                                             kernel_size=2, padding=0)


def build_model(run: RunConfig) -> ConceptUNet:
    """The model of a run, initialized from the run's seed (so initialization is part of the run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.train.seed)
        return ConceptUNet(run.model, run.data.resolution, cond_dim(run.data))


def noise_scheduler(run: RunConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=run.train.timesteps, beta_schedule="squaredcos_cap_v2",
                         prediction_type="epsilon", clip_sample=True)


def null_conditioning(like: torch.Tensor) -> torch.Tensor:
    return torch.full_like(like, NULL_CONDITIONING)


def uses_bf16(train: TrainConfig, device: torch.device) -> bool:
    """bf16 autocast: on CUDA only, unless the run asks for fp32 (`train.bf16`)."""
    return device.type == "cuda" and train.bf16


@torch.no_grad()
def sample(model: nn.Module, run: RunConfig, cond: torch.Tensor, noise: torch.Tensor, steps: int = 50,
           guidance: float | torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic DDIM samples (η = 0) from the given initial noise; pixels in [0, 1].

    With `guidance` w (one weight, or one per sample), classifier-free guidance ε_u + w (ε_c − ε_u),
    the unconditional pass using the null conditioning; both passes run in one batch.
    """
    scheduler = DDIMScheduler.from_config(noise_scheduler(run).config)
    scheduler.set_timesteps(steps)
    x = noise.clone()
    param = next(model.parameters())
    x, cond = x.to(param.device), cond.to(param.device)
    if guidance is not None:
        guidance = torch.as_tensor(guidance, dtype=torch.float32, device=x.device).reshape(-1, 1, 1, 1)
    bf16 = uses_bf16(run.train, param.device)
    for t in scheduler.timesteps:
        tt = t.to(x.device).expand(x.shape[0])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            if guidance is None:
                eps = model(x, tt, cond)
            else:
                both = model(torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([cond, null_conditioning(cond)]))
                eps_c, eps_u = both.float().chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
        x = scheduler.step(eps.float(), t, x).prev_sample
    return ((x + 1) / 2).clamp(0, 1)
