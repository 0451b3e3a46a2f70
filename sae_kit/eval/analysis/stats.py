"""Per-feature statistics accumulated batch by batch in memory that does not grow with tokens.

Every ``add`` takes ``codes`` of shape (batch, seq, n_dict) and, where contexts are kept, the
``input_ids`` (batch, seq) they came from. A feature *fires* on a token when its code is
nonzero (as in :func:`sae_kit.eval.metrics.fired`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

HIST_DECADES = (-4.0, 3.0)
"""|activation| histogram range, log10: 1e-4 .. 1e3 (values outside land in the end bins)."""
HIST_BINS_PER_DECADE = 8


@dataclass
class Entries:
    """The nonzero codes of a batch, sparse: what every accumulator here works from.

    At the paper's L0 (tens of active elements per token) this is ~1% of the dense codes, so
    nothing below touches a dense (tokens, n_dict) tensor after ``nonzero``.
    """

    token: torch.Tensor
    """Flat token index (row * seq + position)."""
    feature: torch.Tensor
    value: torch.Tensor
    n_tokens: int

    @classmethod
    def of(cls, codes: torch.Tensor) -> Entries:
        flat = codes.detach().reshape(-1, codes.shape[-1]).cpu()
        token, feature = flat.nonzero(as_tuple=True)
        return cls(token, feature, flat[token, feature].float(), flat.shape[0])


def hist_edges() -> torch.Tensor:
    """Edges of the per-feature activation histogram: log-spaced, shared by all features."""
    lo, hi = HIST_DECADES
    n = round((hi - lo) * HIST_BINS_PER_DECADE)
    return torch.logspace(lo, hi, n + 1, dtype=torch.float64)


class FeatureStats:
    """Firing count, activation sum and max, and a log-binned |activation| histogram."""

    def __init__(self, n_dict: int) -> None:
        self.n_dict = n_dict
        self.n_tokens = 0
        self.count = torch.zeros(n_dict, dtype=torch.long)
        self.total = torch.zeros(n_dict, dtype=torch.float64)
        self.max = torch.zeros(n_dict)
        self.edges = hist_edges()
        self.hist = torch.zeros(n_dict, len(self.edges) - 1, dtype=torch.long)

    def add(self, codes: torch.Tensor, entries: Entries | None = None) -> None:
        entries = entries or Entries.of(codes)
        self.n_tokens += entries.n_tokens
        self.count += torch.bincount(entries.feature, minlength=self.n_dict)
        self.total.index_add_(0, entries.feature, entries.value.double())
        self.max = torch.maximum(self.max, codes.detach().reshape(-1, self.n_dict).amax(0).cpu())
        n_bins = self.hist.shape[1]
        # Bins are [lo, hi); below the first edge -> bin 0, above the last -> the last bin.
        bins = torch.bucketize(entries.value.abs().double(), self.edges[1:-1], right=True)
        flat_index = entries.feature * n_bins + bins
        self.hist += torch.bincount(flat_index, minlength=self.n_dict * n_bins).view_as(self.hist)

    @property
    def density(self) -> torch.Tensor:
        """Fraction of tokens on which each feature fires."""
        return self.count.double() / max(self.n_tokens, 1)

    @property
    def log10_density(self) -> torch.Tensor:
        """log10 of the density; -inf for features that never fired (dead)."""
        return torch.log10(self.density)

    @property
    def mean(self) -> torch.Tensor:
        """Mean activation over the tokens where the feature fires (0 for dead features)."""
        return self.total / self.count.clamp(min=1)

    @property
    def dead(self) -> torch.Tensor:
        return self.count == 0


@dataclass
class Contexts:
    """k token windows per feature, centred on one token: shapes (k, n_dict[, width])."""

    score: torch.Tensor
    """What the entries were ranked by; -inf marks an empty slot."""
    value: torch.Tensor
    """The feature's activation on the centre token."""
    tokens: torch.Tensor
    """Token ids of the window; -1 outside the sequence."""
    acts: torch.Tensor
    """The feature's activation on every token of the window."""
    where: torch.Tensor
    """The centre token's place in the stream: window number * window length + position
    (windows counted over every ``add``); -1 for an empty slot."""

    @property
    def valid(self) -> torch.Tensor:
        return self.score > -math.inf


class TopContexts:
    """The k highest-scoring tokens per feature so far, each with its surrounding window.

    Each batch's own top k is merged with the running top k, so memory is k x n_dict x width
    however many tokens pass. Scores are the activations (the top-k contexts) or random keys
    on firing tokens (:class:`ReservoirContexts`, a uniform sample of the firing tokens).
    """

    def __init__(self, n_dict: int, k: int, before: int, after: int) -> None:
        self.k, self.before, self.after = k, before, after
        self.windows = 0
        width = before + 1 + after
        self.best = Contexts(
            score=torch.full((k, n_dict), -math.inf), value=torch.zeros(k, n_dict),
            tokens=torch.full((k, n_dict, width), -1, dtype=torch.long),
            acts=torch.zeros(k, n_dict, width),
            where=torch.full((k, n_dict), -1, dtype=torch.long),
        )

    def scores(self, entries: Entries) -> torch.Tensor:
        """What firing tokens are ranked by: their activation."""
        return entries.value

    def add(self, codes: torch.Tensor, input_ids: torch.Tensor,
            entries: Entries | None = None) -> None:
        codes, input_ids = codes.detach().cpu(), input_ids.cpu()
        entries = entries or Entries.of(codes)
        n_dict, seq = codes.shape[-1], codes.shape[1]
        score = self.scores(entries)
        slot, chosen = _top_per_feature(entries.feature, score, n_dict, self.k)
        feature, token = entries.feature[chosen], entries.token[chosen]
        rows, centre = token // seq, token % seq
        positions = centre[:, None] + torch.arange(-self.before, self.after + 1)  # (m, width)
        inside = (positions >= 0) & (positions < seq)
        positions = positions.clamp(0, seq - 1)
        new = Contexts(score=torch.full_like(self.best.score, -math.inf),
                       value=torch.zeros_like(self.best.value),
                       tokens=torch.full_like(self.best.tokens, -1),
                       acts=torch.zeros_like(self.best.acts),
                       where=torch.full_like(self.best.where, -1))
        new.score[slot, feature] = score[chosen]
        new.where[slot, feature] = self.windows * seq + token
        self.windows += codes.shape[0]
        new.value[slot, feature] = entries.value[chosen]
        new.tokens[slot, feature] = input_ids[rows[:, None], positions].masked_fill(~inside, -1)
        acts = codes[rows[:, None], positions, feature[:, None]].float()
        new.acts[slot, feature] = acts.masked_fill(~inside, 0.0)
        self.best = _merge(self.best, new, self.k)


def _top_per_feature(feature: torch.Tensor, score: torch.Tensor, n_dict: int,
                     k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k highest-scoring entries of each feature: (rank 0..k-1, entry index) pairs.

    Entries are sorted by score, then stably by feature, so each feature's entries form one
    run in ascending score; an entry's rank is its distance from the end of its run.
    """
    order = torch.argsort(score, stable=True)
    order = order[torch.argsort(feature[order], stable=True)]
    ends = torch.cumsum(torch.bincount(feature, minlength=n_dict), 0)
    rank = ends[feature[order]] - 1 - torch.arange(len(order))
    keep = rank < k
    return rank[keep], order[keep]


def _merge(old: Contexts, new: Contexts, k: int) -> Contexts:
    score = torch.cat([old.score, new.score])
    top, pick = score.topk(k, dim=0)
    pick3 = pick[..., None].expand(-1, -1, old.tokens.shape[-1])
    return Contexts(
        score=top, value=torch.cat([old.value, new.value]).gather(0, pick),
        tokens=torch.cat([old.tokens, new.tokens]).gather(0, pick3),
        acts=torch.cat([old.acts, new.acts]).gather(0, pick3),
        where=torch.cat([old.where, new.where]).gather(0, pick),
    )


class ReservoirContexts(TopContexts):
    """A uniform random sample (without replacement) of k firing tokens per feature.

    Each firing token gets an independent uniform key and the k largest keys are kept: the
    classic reservoir sample, in the same merge-the-top-k form as :class:`TopContexts`.
    """

    def __init__(self, n_dict: int, k: int, before: int, after: int, seed: int = 0) -> None:
        super().__init__(n_dict, k, before, after)
        self.generator = torch.Generator().manual_seed(seed)

    def scores(self, entries: Entries) -> torch.Tensor:
        return torch.rand(len(entries.value), generator=self.generator)


def quantile_groups(values: Sequence[float], n_groups: int, per_group: int) -> list[list[int]]:
    """Indices into ``values`` for samples from ``n_groups`` activation quantiles.

    The values are sorted ascending and cut into ``n_groups`` groups of (nearly) equal count;
    from each group ``per_group`` entries evenly spaced by rank are taken, the group's lowest
    and highest included. Groups are returned highest first, each highest first; an empty
    group (fewer values than groups) is left out.
    """
    order = sorted(range(len(values)), key=lambda i: float(values[i]))  # stable
    n = len(order)
    groups = []
    for g in reversed(range(n_groups)):
        lo, hi = (g * n) // n_groups, ((g + 1) * n) // n_groups
        if hi <= lo:
            continue
        take = min(per_group, hi - lo)
        step = (hi - 1 - lo) / (take - 1) if take > 1 else 0.0
        ranks = sorted({lo + round(i * step) for i in range(take)}, reverse=True)
        groups.append([order[r] for r in ranks])
    return groups
