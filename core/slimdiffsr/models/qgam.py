"""Query-driven global aggregation (QGAM): linear-cost replacement for self-attention.

32 learned queries gather a global summary G (32 x 64) from all L tokens, then every token reads
from G. Both attentions are single-head with 64-d projections, so cost is O(L * 32 * 64), linear
in L, where self-attention is O(L^2). The softmax scale is C^-1/2 (not 64^-1/2), kept for
compatibility with the published weights.
"""

from __future__ import annotations

import torch
from torch import nn


class QueryGlobalAggregation(nn.Module):
    """QGAM over tokens (B, L, C) -> (B, L, C)."""

    def __init__(self, channels: int, num_queries: int = 32, dim: int = 64) -> None:
        super().__init__()
        self.channels, self.num_queries, self.dim = channels, num_queries, dim
        self.scale = channels**-0.5
        self.query = nn.Parameter(torch.randn(num_queries, channels))
        self.q_proj = nn.Linear(channels, dim, bias=False)
        self.k_proj = nn.Linear(channels, dim, bias=False)
        self.v_proj = nn.Linear(channels, dim, bias=False)
        self.q_proj_c = nn.Linear(channels, dim, bias=False)
        self.k_proj_c = nn.Linear(dim, dim, bias=False)
        self.v_proj_c = nn.Linear(dim, dim, bias=False)
        self.out_proj = nn.Linear(dim, channels)

    def attention_sizes(self, tokens: int) -> tuple[tuple[int, int], tuple[int, int]]:
        """Shapes of the two attention matrices for ``tokens`` tokens (per image)."""
        return (self.num_queries, tokens), (tokens, self.num_queries)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.q_proj(self.query)  # (Q, d)
        k, v = self.k_proj(x), self.v_proj(x)  # (B, L, d)
        gather = torch.softmax(torch.einsum("qd,bld->bql", q, k) * self.scale, dim=-1)
        g = torch.bmm(gather, v)  # (B, Q, d)
        qc, kc, vc = self.q_proj_c(x), self.k_proj_c(g), self.v_proj_c(g)
        scatter = torch.softmax(torch.bmm(qc, kc.transpose(1, 2)) * self.scale, dim=-1)
        return self.out_proj(torch.bmm(scatter, vc))
