"""Feature statistics, streaming top-k contexts and quantile sampling, checked by hand."""

import math

import pytest
import torch

from sae_kit.eval.analysis.stats import (
    FeatureStats,
    ReservoirContexts,
    TopContexts,
    hist_edges,
    quantile_groups,
)

# One row of 6 tokens, 3 features. Feature 0 fires on tokens 1, 3, 4; feature 1 on token 5
# only; feature 2 never (dead).
CODES = torch.tensor([[[0.0, 0, 0], [2, 0, 0], [0, 0, 0], [5, 0, 0], [1, 0, 0], [0, 7, 0]]])
IDS = torch.tensor([[10, 11, 12, 13, 14, 15]])


def test_density_mean_max_and_dead_by_hand():
    stats = FeatureStats(3)
    stats.add(CODES)
    assert stats.n_tokens == 6
    assert stats.count.tolist() == [3, 1, 0]
    assert stats.density.tolist() == pytest.approx([3 / 6, 1 / 6, 0.0])
    assert stats.log10_density[0] == pytest.approx(math.log10(0.5))
    assert stats.log10_density[2] == -math.inf
    assert stats.mean.tolist() == pytest.approx([(2 + 5 + 1) / 3, 7.0, 0.0])  # over firing tokens
    assert stats.max.tolist() == [5.0, 7.0, 0.0]
    assert stats.dead.tolist() == [False, False, True]


def test_histogram_counts_each_firing_value_in_its_log_bin():
    stats = FeatureStats(3)
    stats.add(CODES)
    edges = hist_edges()
    for feature, values in ((0, [2.0, 5.0, 1.0]), (1, [7.0]), (2, [])):
        expected = torch.zeros(len(edges) - 1, dtype=torch.long)
        for v in values:
            expected[int(((edges[:-1] <= v) & (v < edges[1:])).nonzero())] += 1
        assert torch.equal(stats.hist[feature], expected)
    assert int(stats.hist.sum()) == 4


def test_statistics_over_batches_equal_all_at_once():
    torch.manual_seed(0)
    codes = torch.relu(torch.randn(4, 16, 5) - 0.5)
    whole, parts = FeatureStats(5), FeatureStats(5)
    whole.add(codes)
    for i in range(4):
        parts.add(codes[i:i + 1])
    assert torch.equal(whole.count, parts.count) and torch.equal(whole.hist, parts.hist)
    assert torch.allclose(whole.mean, parts.mean) and torch.equal(whole.max, parts.max)


def test_top_contexts_by_hand():
    top = TopContexts(3, k=2, before=1, after=1)
    top.add(CODES, IDS)
    best = top.best
    # Feature 0: 5 at token 3, then 2 at token 1.
    assert best.value[:, 0].tolist() == [5.0, 2.0]
    assert best.tokens[0, 0].tolist() == [12, 13, 14]
    assert best.acts[0, 0].tolist() == [0.0, 5.0, 1.0]
    assert best.tokens[1, 0].tolist() == [10, 11, 12]
    # Feature 1 fired once, at the last token: the window runs off the end (-1, act 0), and
    # the second slot stays empty.
    assert best.valid[:, 1].tolist() == [True, False]
    assert best.tokens[0, 1].tolist() == [14, 15, -1] and best.acts[0, 1].tolist() == [0, 7, 0]
    assert best.valid[:, 2].tolist() == [False, False]  # dead: no context at all


def test_top_contexts_streamed_keep_the_global_top_k():
    torch.manual_seed(1)
    codes = torch.relu(torch.randn(6, 10, 4))
    ids = torch.arange(60).reshape(6, 10)
    top = TopContexts(4, k=3, before=2, after=0)
    for i in range(6):
        top.add(codes[i:i + 1], ids[i:i + 1])
    expected = codes.reshape(60, 4).topk(3, dim=0).values
    assert torch.equal(top.best.value, expected)
    # Each stored centre token is the id whose code is that value.
    for f in range(4):
        for slot in range(3):
            centre = int(top.best.tokens[slot, f, -1])
            assert codes.reshape(60, 4)[centre, f] == top.best.value[slot, f]
            assert int(top.best.where[slot, f]) == centre  # ids are the stream's places


def test_reservoir_holds_only_firing_tokens_and_all_of_them_when_few():
    sample = ReservoirContexts(3, k=5, before=0, after=0, seed=0)
    sample.add(CODES, IDS)
    got = sorted(int(t) for t in sample.best.tokens[sample.best.valid[:, 0], 0, 0])
    assert got == [11, 13, 14]  # fewer firing tokens than k: every one is kept
    assert sample.best.valid[:, 2].sum() == 0


def test_reservoir_is_a_uniform_sample():
    codes = torch.ones(1, 40, 1)  # one feature firing on 40 tokens; keep 4
    hits = torch.zeros(40)
    for seed in range(500):
        sample = ReservoirContexts(1, k=4, before=0, after=0, seed=seed)
        for i in range(0, 40, 8):  # streamed in 5 batches
            sample.add(codes[:, i:i + 8], torch.arange(i, i + 8)[None])
        hits[sample.best.tokens[:, 0, 0]] += 1
    # Each token is kept with probability 4/40: 50 times in 500 draws (binomial sd ~6.7).
    assert hits.sum() == 2000 and hits.min() > 25 and hits.max() < 80


def test_quantile_groups_by_hand():
    values = torch.tensor([5.0, 1, 12, 3, 7, 2, 11, 4, 9, 6, 10, 8])  # 1..12 shuffled
    groups = quantile_groups(values, n_groups=3, per_group=2)
    picked = [[float(values[i]) for i in g] for g in groups]
    # Sorted 1..12 in three groups of four; each group's highest and lowest, highest first.
    assert picked == [[12.0, 9.0], [8.0, 5.0], [4.0, 1.0]]


def test_quantile_groups_with_few_values():
    values = torch.tensor([3.0, 1.0])
    groups = quantile_groups(values, n_groups=4, per_group=3)
    assert [[float(values[i]) for i in g] for g in groups] == [[3.0], [1.0]]
    assert quantile_groups(torch.tensor([]), 4, 3) == []
