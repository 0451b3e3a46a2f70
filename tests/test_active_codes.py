"""L0 is counted one way everywhere: a code is active when it is non-zero, negative ones too."""

import torch

from sae_kit.architectures.codes import active, count_active
from sae_kit.architectures.sparse import is_sparse_enough
from sae_kit.eval.metrics import fired, l0
from sae_kit.losses.base import LossResult
from sae_kit.model.hookpoints import HookPoint
from sae_kit.train.stats import StepStats

# Two tokens, four codes; a third-party architecture's negative code is active too.
CODES = torch.tensor([[[0.0, -1.5, 2.0, 0.0], [0.0, 0.0, -0.1, 0.0]]])


def test_the_rule():
    assert active(CODES).tolist() == (CODES != 0).tolist()
    assert count_active(CODES) == 3


def test_training_stats_and_eval_metrics_agree():
    stats = StepStats()
    stats.add(LossResult(loss=torch.tensor(0.0), codes={HookPoint(1): CODES}), n_tokens=2)
    row = stats.record()
    assert row["l0/blocks.1.hook_resid_pre"] == l0(CODES) == 1.5
    assert row["alive/blocks.1.hook_resid_pre"] == int(fired(CODES).sum()) == 2


def test_the_sparse_kernels_density_check_counts_negative_codes():
    values = torch.zeros(100)
    values[:3] = -1.0
    assert is_sparse_enough(values, 0.03)
    values[3] = -1.0
    assert not is_sparse_enough(values, 0.03)
