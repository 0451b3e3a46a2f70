"""L0 is counted one way everywhere: a code is active when it is non-zero, negative ones too."""

import torch

from sae_kit.architectures.codes import active, count_true
from sae_kit.architectures.sparse import mask_is_sparse
from sae_kit.eval.metrics import fired, l0
from sae_kit.losses.base import LossResult
from sae_kit.model.hookpoints import HookPoint
from sae_kit.train.stats import StepStats

# Two tokens, four codes; a third-party architecture's negative code is active too.
CODES = torch.tensor([[[0.0, -1.5, 2.0, 0.0], [0.0, 0.0, -0.1, 0.0]]])


def test_the_rule():
    assert active(CODES).tolist() == (CODES != 0).tolist()
    assert count_true(active(CODES)) == 3


def test_training_stats_and_eval_metrics_agree():
    stats = StepStats()
    stats.add(LossResult(loss=torch.tensor(0.0), codes={HookPoint(1): CODES}), n_tokens=2)
    row = stats.record()
    assert row["l0/blocks.1.hook_resid_pre"] == l0(CODES) == 1.5
    assert row["alive/blocks.1.hook_resid_pre"] == int(fired(CODES).sum()) == 2


def test_the_sparse_kernels_density_check_counts_negative_codes():
    values = torch.zeros(100)
    values[:3] = -1.0
    assert mask_is_sparse(active(values), 0.03)
    values[3] = -1.0
    assert not mask_is_sparse(active(values), 0.03)


def test_stats_from_the_kernels_list_equal_the_scan_of_every_code(monkeypatch):
    """An SAE whose sparse kernels listed its non-zero codes: the statistics read the list
    instead of scanning, with the same L0 and alive figures over several micro-batches."""
    from sae_kit.architectures import sparse
    from sae_kit.architectures.topk import TopKSAE

    monkeypatch.setitem(sparse.MAX_DENSITY, "cpu", 1.0)
    torch.manual_seed(0)
    sae = TopKSAE(8, 64, k=3)
    listed, scanned = StepStats(), StepStats()
    for seed in range(3):
        x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(seed))
        out = sae(x)
        assert out.active is not None
        hp = HookPoint(1)
        listed.add(LossResult(loss=torch.tensor(0.0), codes={hp: out.codes},
                              active={hp: out.active}), n_tokens=10)
        scanned.add(LossResult(loss=torch.tensor(0.0), codes={hp: out.codes}), n_tokens=10)
    got, want = listed.record(), scanned.record()
    got.pop("tokens_per_s"), want.pop("tokens_per_s")
    assert got == want
    assert 0 < want["alive/blocks.1.hook_resid_pre"] < 64
