"""The paper's network (`model.recipe: paper`): the original code's conditional U-Net, built from
diffusers' res blocks, attention and resampling (the official code's
`CUNet` with `sep_mlp` conditioning, `mltools/networks/`; references: paper-network).

What sets it apart from the diffusers recipe's network:
- the conditioning h (11 values) goes raw to every res block, each with its own c-MLP and its own
  t-MLP (Linear → GELU → Linear → GELU), both added to the block's features as per-channel biases;
  the c-MLP's output is what the linear latent intervention edits, block by block (chapter 4);
- GELU, GroupNorm(8, eps 1e-6), dropout 0.1, the second conv of each block zero-initialised;
- skips only before each downsampling, concatenated after the matching upsampling;
- the noise prediction is a residual from the noisy input, ε̂ = conv_out(·) + z_t, with conv_out
  zero-initialised, so at initialisation ε̂ = z_t.
The network's time input is the normalised log-SNR t_n (see `vdm.network_time`), embedded as the
original does: sinusoids of 1000·t_n at 32 frequencies 10^(−linspace(0, 4, 32)), then 64 → 256 → 256.
"""
from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention
from diffusers.models.downsampling import Downsample2D
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.resnet import ResnetBlock2D
from diffusers.models.upsampling import Upsample2D
from torch import nn

from .config import ModelConfig

TIME_FEATURES = 256  # the shared time feature every block's t-MLP reads
EPS = 1e-6           # GroupNorm eps of the original


def _mlp(inp: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inp, out), nn.GELU(), nn.Linear(out, out), nn.GELU())


class SeparateBiases(nn.Module):
    """A block's two bias MLPs, in the slot of diffusers' `time_emb_proj`: it receives the time
    feature and h concatenated and returns MLP_t(time) + MLP_c(h), one bias per channel."""

    def __init__(self, conditioning: int, channels: int):
        super().__init__()
        self.time = _mlp(TIME_FEATURES, channels)
        self.cond = _mlp(conditioning, channels)  # the block's conditioning projection

    def forward(self, time_and_h: torch.Tensor) -> torch.Tensor:
        time, h = time_and_h.split([TIME_FEATURES, time_and_h.shape[1] - TIME_FEATURES], dim=1)
        return self.time(time) + self.cond(h)


def _block(cin: int, cout: int, model: ModelConfig, conditioning: int) -> ResnetBlock2D:
    block = ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=TIME_FEATURES + conditioning,
                          groups=model.norm_groups, eps=EPS, dropout=model.dropout, non_linearity="gelu",
                          skip_time_act=True)
    block.time_emb_proj = SeparateBiases(conditioning, cout)
    nn.init.zeros_(block.conv2.weight)
    nn.init.zeros_(block.conv2.bias)
    return block


def _down(channels: int, resampling: str) -> Downsample2D:
    if resampling == "transpose":  # the original: a 2x2 stride-2 conv
        return Downsample2D(channels, use_conv=True, out_channels=channels, padding=0, kernel_size=2, name="op")
    return Downsample2D(channels, use_conv=True, out_channels=channels, padding=1, name="op")


def _up(cin: int, cout: int, resampling: str) -> Upsample2D:
    if resampling == "transpose":  # the original: a 2x2 stride-2 transposed conv
        return Upsample2D(cin, use_conv_transpose=True, out_channels=cout, kernel_size=2, padding=0)
    return Upsample2D(cin, use_conv=True, out_channels=cout)


class PaperUNet(nn.Module):
    """ε̂(z_t, t_n, h) of the paper's recipe; `blocks()` lists its 14 res blocks (at the paper's size)."""

    def __init__(self, model: ModelConfig, resolution: int, conditioning: int = 11):
        super().__init__()
        chs, n = list(model.channels), model.layers_per_block
        self.time_proj = Timesteps(64, flip_sin_to_cos=False, downscale_freq_shift=1)
        self.time_embed = TimestepEmbedding(64, TIME_FEATURES, act_fn="gelu", post_act_fn="gelu")
        self.conv_in = nn.Conv2d(3, chs[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = chs[0]
        for i, ch in enumerate(chs):
            self.down.append(nn.ModuleList([_block(c if k == 0 else ch, ch, model, conditioning) for k in range(n)]))
            c = ch
            if i < len(chs) - 1:
                self.downsample.append(_down(ch, model.resampling))
        self.mid = nn.ModuleList([_block(c, c, model, conditioning), _block(c, c, model, conditioning)])
        self.attention = (Attention(c, heads=4, dim_head=c // 4, norm_num_groups=model.norm_groups, eps=EPS,
                                    residual_connection=True, bias=True, upcast_softmax=True,
                                    _from_deprecated_attn_block=True) if model.attention else None)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, ch in enumerate(reversed(chs)):
            self.up.append(nn.ModuleList([_block(c if k == 0 else ch, ch, model, conditioning) for k in range(n)]))
            c = ch
            if i < len(chs) - 1:
                skip = chs[len(chs) - 2 - i]
                self.upsample.append(_up(ch, skip, model.resampling))
                c = 2 * skip  # the upsampled features and the skip, concatenated
        self.norm_out = nn.GroupNorm(model.norm_groups, c, eps=EPS)
        self.conv_out = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def blocks(self) -> list[ResnetBlock2D]:
        return [b for level in self.down for b in level] + list(self.mid) + [b for level in self.up for b in level]

    def cond_projections(self) -> list[nn.Module]:
        """Each res block's own conditioning MLP: where the linear latent intervention acts."""
        return [b.time_emb_proj.cond for b in self.blocks()]

    def forward(self, z: torch.Tensor, t_n: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        time = self.time_embed(self.time_proj(1000 * t_n.reshape(-1).expand(z.shape[0])).to(z.dtype))
        temb = torch.cat([time, cond.to(time.dtype)], dim=1)
        x, skips = self.conv_in(z), []
        for i, level in enumerate(self.down):
            for block in level:
                x = block(x, temb)
            if i < len(self.downsample):
                skips.append(x)
                x = self.downsample[i](x)
        x = self.mid[0](x, temb)
        if self.attention is not None:
            x = self.attention(x)
        x = self.mid[1](x, temb)
        for i, level in enumerate(self.up):
            for block in level:
                x = block(x, temb)
            if i < len(self.upsample):
                x = torch.cat([self.upsample[i](x), skips.pop()], dim=1)
        return self.conv_out(nn.functional.gelu(self.norm_out(x))) + z
