"""One TC-MoA module: task router bank, shared adapter bank, prompts and prompt-driven fusion.

Computed exactly as the official code does (checked on its outputs: tests/test_official_fixture.py),
including the parts the paper states differently: noise std softplus(.) + 0.1, adapters combined
as log sum g*exp(adapter), prompts as sigmoid(channel mean), and the learnable scalar weighting
the fused branch.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

PROMPT_CENTRE = 0.5  # mu of the paper's Eq. 8
# Weight of each module's load-balancing loss, cv²(importance) + cv²(load) (Shazeer et al.'s noisy
# top-k gating): the official code's value, which its checkpoints were trained with. Over E experts
# cv² is at most E (every token on one expert), so a module adds at most 2·E·1e-3 = 0.008 for E = 4:
# a nudge that keeps every adapter in use without rivalling the fusion terms. Measured on the shipped
# model (3 modules), VIF pair msrs_00047N, 256 px crop, train mode: aux 0.005 against a VIF loss of
# 0.64 (tcmoa recipe) or 0.86 (official 2025).
AUX_LOSS_WEIGHT = 1e-3


@dataclass(frozen=True)
class PromptControl:
    """The paper's Eq. 8: p_A' = mu + alpha (p_A - mu) + beta, p_B' = mu + alpha (p_B - mu) - beta."""

    alpha: float = 1.0  # polarises the per-region choice between sources (0 = no preference)
    beta: float = 0.0  # shifts dominance: > 0 towards source A, < 0 towards source B

    def apply(self, p_a: torch.Tensor, p_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rescale and shift a pair of prompts (identity for alpha=1, beta=0)."""
        if self.alpha == 1.0 and self.beta == 0.0:
            return p_a, p_b
        p_a = PROMPT_CENTRE + self.alpha * (p_a - PROMPT_CENTRE) + self.beta
        p_b = PROMPT_CENTRE + self.alpha * (p_b - PROMPT_CENTRE) - self.beta
        return p_a, p_b


@dataclass(frozen=True)
class KnobRange:
    """The allowed values of one prompt knob: the app's sliders and every entry point's checks use it."""

    name: str  # what settings, keywords and sweeps call it: "alpha", "beta"
    low: float
    high: float
    step: float  # the app slider's step
    symbol: str = ""  # how pages and figures show it: "α", "β"

    def check(self, value: object) -> float:
        """`value` as a float within [low, high], else ValueError with the one message every entry point shows.

        Only a real number counts: True (an int to Python) or the string "1.5" is refused, not read as a number.
        """
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        x = float(value) if is_number else float("nan")  # type: ignore[arg-type]
        if not self.low <= x <= self.high:  # also rejects NaN
            raise ValueError(f"{self.name} must be a number in [{self.low:g}, {self.high:g}], got {value!r}")
        return x

    def sweep(self, count: int = 5) -> list[float]:
        """`count` evenly spaced values from low to high (the app's sweep strip)."""
        return [self.low + (self.high - self.low) * i / (count - 1) for i in range(count)]


# Beyond these the prompts leave any range the model was trained near: alpha > 3 saturates every
# region's choice, |beta| > 0.5 pins the prompts of one source above 1 everywhere.
ALPHA_RANGE = KnobRange("alpha", 0.0, 3.0, 0.05, "α")
BETA_RANGE = KnobRange("beta", -0.5, 0.5, 0.01, "β")


@dataclass
class ModuleTrace:
    """What one module computed, for the losses and the explanations."""

    prompt_a: torch.Tensor  # (B, N, 1) after the sigmoid and alpha/beta
    prompt_b: torch.Tensor  # (B, N, 1)
    router_logits: torch.Tensor  # (B*N, E) clean logits (before noise)
    gates: torch.Tensor  # (B*N, E) top-k softmax, zero elsewhere
    aux_loss: torch.Tensor  # () load-balancing loss


def cv_squared(v: torch.Tensor) -> torch.Tensor:
    """Squared coefficient of variation (unbiased variance), 0 for a single expert."""
    if v.numel() == 1:
        return v.new_zeros(())
    v = v.float()
    return v.var() / (v.mean() ** 2 + 1e-10)


class RouterBank(nn.Module):
    """One noisy top-k router per task; a route may blend the tasks' routers."""

    def __init__(self, num_routers: int, dim: int, num_experts: int, top_k: int,
                 noise_floor: float, threshold: float):
        super().__init__()
        # Zero init, as in the official code: every expert starts equally likely.
        self.gate = nn.Parameter(torch.zeros(num_routers, dim, num_experts))
        self.noise = nn.Parameter(torch.zeros(num_routers, dim, num_experts))
        self.top_k, self.noise_floor, self.threshold = top_k, noise_floor, threshold

    def forward(self, phi: torch.Tensor, route: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """phi (M, D), route (T,) task weights -> clean logits, gates (M, E), aux loss."""
        # A blend of routers is the same blend of their logits; a one-hot route picks one exactly.
        clean = phi @ torch.einsum("t,tde->de", route, self.gate)
        logits = clean
        num_experts = clean.shape[1]
        noisy = self.training
        if noisy:
            noise_std = F.softplus(phi @ torch.einsum("t,tde->de", route, self.noise)) + self.noise_floor
            logits = clean + torch.randn_like(clean) * noise_std
        k = min(self.top_k, num_experts)
        top_vals, top_idx = logits.topk(min(k + 1, num_experts), dim=1)
        gates = torch.zeros_like(logits).scatter(1, top_idx[:, :k], torch.softmax(top_vals[:, :k], dim=1))
        gates = gates * (gates > self.threshold)
        importance = gates.sum(0)
        if noisy and k < num_experts:
            load = self._prob_in_top_k(clean, logits, noise_std, top_vals, k).sum(0)
        else:
            load = (gates > 0).sum(0).float()
        aux = AUX_LOSS_WEIGHT * (cv_squared(importance) + cv_squared(load))
        return clean, gates, aux

    @staticmethod
    def _prob_in_top_k(clean: torch.Tensor, noisy: torch.Tensor, noise_std: torch.Tensor,
                       top_vals: torch.Tensor, k: int) -> torch.Tensor:
        """Shazeer et al.'s smooth estimate of P(expert in top-k under fresh noise), (M, E)."""
        threshold_in = top_vals[:, k:k + 1]  # the (k+1)-th value: beat it to stay in
        threshold_out = top_vals[:, k - 1:k]  # the k-th value: beat it to get in
        normal = torch.distributions.Normal(0.0, 1.0)
        p_in = normal.cdf((clean - threshold_in) / noise_std)
        p_out = normal.cdf((clean - threshold_out) / noise_std)
        return torch.where(noisy > threshold_in, p_in, p_out)


class Adapter(nn.Module):
    """One expert of the shared bank: a bottleneck MLP D -> D/8 -> D."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)


class AdapterBank(nn.ModuleList):
    """The adapters shared by every task, evaluated together and combined by the gates."""

    def combine(self, phi: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """log sum_e g_e exp(adapter_e(phi)) over the active experts: (M, D), (M, E) -> (M, D)."""
        experts = [cast(Adapter, a) for a in self]
        w1 = torch.stack([a.fc1.weight for a in experts])  # (E, h, D)
        b1 = torch.stack([a.fc1.bias for a in experts])[:, None]  # (E, 1, h)
        w2 = torch.stack([a.fc2.weight for a in experts])  # (E, D, h)
        b2 = torch.stack([a.fc2.bias for a in experts])[:, None]  # (E, 1, D)
        hidden = F.relu(torch.einsum("md,ehd->emh", phi, w1) + b1)
        out = torch.einsum("emh,edh->emd", hidden, w2) + b2  # (E, M, D)
        active = gates.t()[:, :, None] > 0  # (E, M, 1)
        # log-sum-exp over active experts = the official log(sum g exp(.)); inactive ones get -inf
        # through `where`, so no gradient passes through log(0).
        log_g = torch.where(active, gates.t()[:, :, None].clamp_min(1e-30).log(), float("-inf"))
        return torch.logsumexp(log_g + out, dim=0)


class ConvFusion(nn.Module):
    """The fusion layer on the token grid: 1x1 down, 3x3, 1x1 up; no bias, norm or activation."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.conv1 = nn.Conv2d(dim, hidden, 1, bias=False)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """(B, N, C) on an (H, W) grid -> (B, N, C)."""
        b, n, c = x.shape
        y = x.transpose(1, 2).reshape(b, c, *grid)
        y = self.conv3(self.conv2(self.conv1(y)))
        return y.flatten(2).transpose(1, 2)


class TCMoAModule(nn.Module):
    """Mixes two source streams after a backbone block, steered by a task's router."""

    def __init__(self, dim: int, num_routers: int, num_experts: int, top_k: int, reduce_ratio: int,
                 adapter_ratio: int, noise_floor: float, gate_threshold: float, restandardize: bool):
        super().__init__()
        reduced = dim // reduce_ratio
        self.pair_norm = nn.LayerNorm(2 * dim)  # PyTorch's default eps, as the official module
        self.reduce = nn.Linear(2 * dim, reduced, bias=False)
        nn.init.xavier_uniform_(self.reduce.weight)
        self.reduced_norm = nn.LayerNorm(reduced)
        self.router_bank = RouterBank(num_routers, reduced, num_experts, top_k, noise_floor, gate_threshold)
        self.adapter_bank = AdapterBank(Adapter(reduced, reduced // adapter_ratio) for _ in range(num_experts))
        # Per-task, per-source embeddings (the official `modal_shifts`, there never registered).
        self.source_embed = nn.Parameter(torch.zeros(num_routers, 2, dim))
        self.fusion = ConvFusion(dim, reduced)
        self.mix = nn.Parameter(torch.tensor(0.5))  # weight of the fused branch
        self.restandardize = restandardize

    def forward(self, x: torch.Tensor, t: torch.Tensor, grid: tuple[int, int], route: torch.Tensor,
                control: PromptControl) -> tuple[torch.Tensor, torch.Tensor, ModuleTrace]:
        """Streams x, t (B, N, C) -> mixed streams and the trace; runs in float32 like the official."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            x, t, route = x.float(), t.float(), route.float()
            b, n, c = x.shape
            phi = self.reduced_norm(self.reduce(self.pair_norm(torch.cat([x, t], dim=-1))))
            phi = phi.reshape(b * n, -1)  # (B*N, D)
            logits, gates, aux = self.router_bank(phi, route)
            y = self.adapter_bank.combine(phi, gates).reshape(b, n, -1)
            half = y.shape[-1] // 2
            p_a = torch.sigmoid(y[..., :half].mean(-1, keepdim=True))  # (B, N, 1)
            p_b = torch.sigmoid(y[..., half:].mean(-1, keepdim=True))
            p_a, p_b = control.apply(p_a, p_b)
            shift = torch.einsum("t,tsc->sc", route, self.source_embed)  # (2, C)
            fused = self.fusion(p_a * x + shift[0] + p_b * t + shift[1], grid)
            x_new = self.mix * fused + (1 - self.mix) * x
            t_new = self.mix * fused + (1 - self.mix) * t
            if self.restandardize:
                x_new, t_new = restandardize(x_new, x), restandardize(t_new, t)
        return x_new, t_new, ModuleTrace(p_a, p_b, logits, gates, aux)


def restandardize(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Give `new` the per-sample mean and (unbiased) std of `old`, over tokens and channels."""
    dims = tuple(range(1, new.dim()))
    new_mean, new_std = new.mean(dims, keepdim=True), new.std(dims, keepdim=True)
    old_mean, old_std = old.mean(dims, keepdim=True), old.std(dims, keepdim=True)
    return (new - new_mean) * old_std / (new_std + 1e-12) + old_mean
