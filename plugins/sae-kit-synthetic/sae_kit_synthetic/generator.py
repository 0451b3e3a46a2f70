"""The ground truth: N unit feature directions in d dimensions and how often each fires.

Each token's activation is a sparse non-negative combination of the directions,
``a = sum_i c_i f_i``. What fires at a token is a pure function of the token's context (its
last ``KEY_TOKENS`` tokens) through an integer hash, so the same token window always gives the
same activation - the model is an ordinary deterministic function of its input ids - while
different contexts give independent draws:

* feature i fires with probability ``rate_i``; the rates follow Zipf's law (the r-th most
  frequent feature has rate ``s * r^-zipf``, ``s`` chosen so the rates sum to ``active``, the
  expected L0), with ranks assigned to features at random, so F holds frequent and rare ones;
* an active feature's coefficient is uniform in [0.5, 1.5) (mean 1);
* hierarchical (``hierarchy`` h): a share h of the features are children; a child fires only
  when its parent (a more frequent feature) does, with probability ``rate_child /
  rate_parent``, so its marginal rate is unchanged;
* correlated (``correlation`` rho): the features are paired at random; at each token, with
  probability rho both of a pair decide on one shared coin instead of one each, so they fire
  together more often than independence gives (marginal rates unchanged).

Directions: F = features 0 .. |F|-1 lie in a ``d_functional``-dimensional subspace, the others
in its orthogonal complement, each a random unit vector of its subspace. So both halves are in
superposition (more features than dimensions) and the output, which reads only the F subspace,
is exactly blind to every feature outside F.
"""

from __future__ import annotations

import torch

from sae_kit_synthetic.options import SyntheticOptions

KEY_TOKENS = 3
"""Tokens of context that determine an activation: vocab^3 contexts, so few recur."""
_MASK = (1 << 31) - 1
_MULT = 0x45D9F3B  # < 2^27: products with 31-bit values stay inside int64
_STREAMS = {"fire": 0x1B873593, "shared": 0x2C1B3C6D, "choose": 0x297A2D39, "size": 0x68E31DA4}


def mix(x: torch.Tensor) -> torch.Tensor:
    """A 31-bit integer hash (xor-shift-multiply rounds); int64 in, int64 in [0, 2^31) out."""
    x = x & _MASK
    for _ in range(3):
        x = x ^ (x >> 16)
        x = (x * _MULT) & _MASK
    return x ^ (x >> 16)


def context_keys(input_ids: torch.Tensor, vocab: int, seed: int) -> torch.Tensor:
    """One hash per position of (batch, seq) ids from the last KEY_TOKENS tokens (padded)."""
    key = torch.full_like(input_ids, seed, dtype=torch.int64)
    for back in range(KEY_TOKENS - 1, -1, -1):
        shifted = torch.full_like(input_ids, vocab, dtype=torch.int64)  # before the window: pad
        shifted[..., back:] = input_ids[..., :input_ids.shape[-1] - back]
        key = mix(key ^ mix(shifted + 1))
    return key


def zipf_rates(n: int, active: float, exponent: float) -> torch.Tensor:
    """Rates ``min(1, s r^-exponent)`` for ranks r = 1..n, summing to ``active``."""
    base = torch.arange(1, n + 1, dtype=torch.float64) ** -exponent
    low, high = 0.0, float(n) / float(base.min())
    for _ in range(100):  # bisection on s: the sum is monotone in s
        mid = (low + high) / 2
        if float((mid * base).clamp(max=1).sum()) < active:
            low = mid
        else:
            high = mid
    return (high * base).clamp(max=1)


class FeatureGenerator:
    """Directions, rates, parents and pairs, all drawn from the options' seed."""

    def __init__(self, options: SyntheticOptions) -> None:
        self.options = options
        n, g = options.n_features, torch.Generator().manual_seed(options.seed)
        rank = torch.randperm(n, generator=g)
        self.rates = zipf_rates(n, options.active, options.zipf)[rank].float()
        self.functional = torch.arange(n) < options.n_functional
        self.basis = torch.linalg.qr(torch.randn(options.d_model, options.d_model,
                                                 generator=g, dtype=torch.float64))[0].float()
        self.directions = self._directions(g)
        self.parent = self._parents(rank, g)
        pairing = torch.randperm(n, generator=g)
        self.partner = torch.empty(n, dtype=torch.long)
        self.partner[pairing[0::2][: n // 2]] = pairing[1::2][: n // 2]
        self.partner[pairing[1::2][: n // 2]] = pairing[0::2][: n // 2]
        if n % 2:
            self.partner[pairing[-1]] = pairing[-1]  # the odd one out pairs with itself

    @property
    def functional_basis(self) -> torch.Tensor:
        """(d_model, d_functional): orthonormal columns spanning F's subspace."""
        return self.basis[:, : self.options.d_functional]

    def _directions(self, g: torch.Generator) -> torch.Tensor:
        o = self.options
        n_rest = o.n_features - o.n_functional
        inside = torch.randn(o.n_functional, o.d_functional, generator=g)
        outside = torch.randn(n_rest, o.d_model - o.d_functional, generator=g)
        rows = torch.cat([inside @ self.basis[:, : o.d_functional].T,
                          outside @ self.basis[:, o.d_functional:].T])
        return rows / rows.norm(dim=1, keepdim=True)

    def _parents(self, rank: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """-1 for roots; a child's parent is a root of lower rank (more frequent)."""
        n = self.options.n_features
        parent = torch.full((n,), -1, dtype=torch.long)
        n_children = int(self.options.hierarchy * n)
        by_rank = torch.argsort(rank)  # features from most to least frequent
        children = by_rank[n - n_children:] if n_children else by_rank[:0]
        roots = by_rank[: n - n_children]
        picks = torch.randint(0, len(roots), (n_children,), generator=g)
        parent[children] = roots[picks]
        return parent

    def _uniform(self, keys: torch.Tensor, stream: str, index: torch.Tensor) -> torch.Tensor:
        """(..., n) uniforms in [0, 1), one per key and feature index, for one stream."""
        salted = mix(index.to(keys.device) * 0x9E3779B1 + _STREAMS[stream])
        return mix(keys.unsqueeze(-1) ^ salted).to(torch.float32) / float(1 << 31)

    def codes(self, keys: torch.Tensor) -> torch.Tensor:
        """(..., n_features) true coefficients at hashed contexts ``keys``."""
        n = self.options.n_features
        index = torch.arange(n)
        pair = torch.minimum(index, self.partner)
        coin = self._uniform(keys, "fire", index)
        if self.options.correlation > 0:
            shared = self._uniform(keys, "shared", pair)
            together = self._uniform(keys, "choose", pair) < self.options.correlation
            coin = torch.where(together, shared, coin)
        is_child = self.parent >= 0
        threshold = self.rates.clone()
        parent_rate = self.rates[self.parent[is_child]]
        threshold[is_child] = (self.rates[is_child] / parent_rate).clamp(max=1)
        fires = coin < threshold.to(keys.device)
        if bool(is_child.any()):  # parents are roots, so one pass settles every child
            children = is_child.nonzero().squeeze(1).to(keys.device)
            parents = self.parent[is_child].to(keys.device)
            fires[..., children] &= fires[..., parents]
        size = 0.5 + self._uniform(keys, "size", index)
        return torch.where(fires, size, torch.zeros_like(size))

    def activations(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.directions.to(codes.device)
