"""Each evaluation metric against values computed by hand on small tensors."""

import math

import pytest
import torch

from sae_kit.eval.metrics import (
    TokenMean,
    VarianceSums,
    ce_loss,
    explained_variance_e2e_sae,
    fired,
    l0,
)
from tests.oracles import alive_fraction, downstream_mse, explained_variance, mse


def test_l0_is_mean_nonzero_count_per_token():
    codes = torch.tensor([[[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0]],
                          [[0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.1]]])
    # nonzero per token: 2, 1, 0, 2 -> mean 5/4
    assert l0(codes) == pytest.approx(1.25)


def test_alive_counts_elements_that_fired_on_any_token():
    codes = torch.tensor([[0.0, 1.5, 0.0, 2.0], [0.0, 0.0, 0.0, 3.0], [0.0, 0.2, 0.0, 0.0]])
    mask = fired(codes)
    assert mask.tolist() == [False, True, False, True]
    assert int(mask.sum()) == 2 and alive_fraction(mask) == pytest.approx(0.5)


def test_ce_loss_is_next_token_cross_entropy_skipping_the_last_position():
    input_ids = torch.tensor([0, 1, 1])
    logits = torch.tensor([[0.0, 0.0],            # predicts token 1 with p = 1/2
                           [math.log(3), 0.0],    # predicts token 1 with p = 1/4
                           [100.0, -100.0]])      # last position: no target, ignored
    assert ce_loss(logits, input_ids) == pytest.approx((math.log(2) + math.log(4)) / 2)


def test_ce_loss_keeps_rows_apart():
    # Two rows of two tokens: each row's last position must not predict the next row's first.
    input_ids = torch.tensor([[0, 1], [1, 0]])
    logits = torch.tensor([[[0.0, math.log(3)], [-50.0, 50.0]],
                           [[math.log(3), 0.0], [50.0, -50.0]]])
    expected = (math.log(4 / 3) + math.log(4 / 3)) / 2  # p = 3/4 for both real targets
    assert ce_loss(logits, input_ids) == pytest.approx(expected)


def test_mse_and_explained_variance_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 2.0]])
    x_hat = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    # squared errors: 0, 1, 1, 0 -> sum 2, element mean 0.5
    assert mse(x, x_hat) == pytest.approx(0.5)
    # mean over tokens (2, 1); sum ||x - mean||^2 = (1 + 1) + (1 + 1) = 4
    assert explained_variance(x, x_hat) == pytest.approx(1 - 2 / 4)
    assert explained_variance(x, x) == 1.0


def test_predicting_the_token_mean_explains_no_variance():
    x = torch.tensor([[0.0, 5.0], [2.0, 5.0]])
    x_hat = torch.tensor([[1.0, 5.0], [1.0, 5.0]])  # predicts the mean: EV 0
    assert explained_variance(x, x_hat) == pytest.approx(0.0)


def test_e2e_sae_explained_variance_by_hand_is_negative_where_ours_is_positive():
    x = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    # The reference's target is x_hat: mean (0.5, 0), so each token's ||x_hat - mean||^2 = 0.25.
    # Per token: 1 - 1 / 0.25 = -3 and 1 - 0 / 0.25 = 1; their mean is -1.
    per_token = explained_variance_e2e_sae(x, x_hat)
    assert per_token.tolist() == pytest.approx([-3.0, 1.0])
    assert float(per_token.mean()) == pytest.approx(-1.0)
    # sae-kit's: mean of x is (1, 0), sum ||x - mean||^2 = 2, residual 1 -> 1 - 1/2.
    assert explained_variance(x, x_hat) == pytest.approx(0.5)


def test_e2e_sae_explained_variance_uses_the_batch_mean_of_the_output():
    # Swapping the arguments changes it (the target is the second one), and the mean is over
    # every token given, whatever the leading shape.
    x = torch.tensor([[[1.0, 0.0], [3.0, 2.0]]])
    x_hat = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    # x_hat mean (1.5, 1.5): spreads 0.25 + 0.25 = 0.5 each; residuals 1 and 1 -> 1 - 2 = -1.
    assert explained_variance_e2e_sae(x, x_hat).tolist() == pytest.approx([-1.0, -1.0])
    # With x as the target: x mean (2, 1): spreads 2 and 2 -> 1 - 1/2 each.
    assert explained_variance_e2e_sae(x_hat, x).tolist() == pytest.approx([0.5, 0.5])


def test_downstream_mse_is_per_position():
    clean = {3: torch.zeros(2, 2), 2: torch.ones(1, 2)}
    spliced = {3: torch.tensor([[1.0, 1.0], [1.0, 3.0]]), 2: torch.ones(1, 2)}
    # position 3: (1 + 1 + 1 + 9) / 4 = 3; position 2: 0
    assert downstream_mse(clean, spliced) == {2: 0.0, 3: 3.0}


def test_token_mean_weights_batches_by_token_count():
    mean = TokenMean()
    mean.add(1.0, 3)
    mean.add(5.0, 1)
    assert mean.value == pytest.approx(2.0)  # (3 * 1 + 5) / 4, not (1 + 5) / 2


def test_variance_sums_match_all_tokens_at_once_not_an_average_of_batches():
    first, second = torch.tensor([[0.0], [2.0]]), torch.tensor([[10.0], [12.0]])
    sums = VarianceSums()
    sums.add(first, first + 1)
    sums.add(second, second + 1)
    # global mean 6: sum (x - 6)^2 = 36 + 16 + 16 + 36 = 104; errors 1 each -> 4
    assert sums.explained_variance == pytest.approx(1 - 4 / 104)
    assert sums.mse == pytest.approx(1.0)
    # Each batch alone has variance 2 and error 2 (EV 0): averaging per batch would give 0.


def test_variance_sums_over_uneven_batches_equal_the_pure_functions():
    torch.manual_seed(0)
    x = torch.randn(3, 7, 5) * 3 + 10  # a large mean, as in an un-centred residual stream
    x_hat = x + 0.5 * torch.randn_like(x)
    sums = VarianceSums()
    flat, flat_hat = x.reshape(-1, 5), x_hat.reshape(-1, 5)
    for start, stop in [(0, 1), (1, 9), (9, 21)]:
        sums.add(flat[start:stop], flat_hat[start:stop])
    assert sums.explained_variance == pytest.approx(explained_variance(x, x_hat), rel=1e-9)
    assert sums.mse == pytest.approx(mse(x, x_hat), rel=1e-9)
