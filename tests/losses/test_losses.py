"""Each loss against a hand computation on a tiny GPT-2."""

import pytest
import torch
import torch.nn.functional as F

from sae_kit import plugins
from sae_kit.architectures.relu import ReluSAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import Splice


@pytest.fixture(scope="module")
def loaded(tiny_gpt2):
    return load_model(str(tiny_gpt2))


@pytest.fixture()
def setup(loaded):
    torch.manual_seed(0)
    sae = ReluSAE(32, 64)
    ids = torch.randint(0, 512, (2, 12))
    return Splice(loaded.model, loaded.adapter, {HookPoint(1): sae}), sae, ids


def _reference_spliced_logits(loaded, sae, ids, layer=1, capture=()):
    """Plain HF forward with a pre-hook that swaps in the SAE output; independent of Splice."""
    acts = {}

    def replace(module, args):
        return (sae(args[0]).output, *args[1:])

    layers = loaded.adapter.layers(loaded.model)
    handles = [layers[layer].register_forward_pre_hook(replace)]
    for p in capture:
        handles.append(layers[p - 1].register_forward_hook(
            lambda m, a, out, p=p: acts.__setitem__(p, out)))
    try:
        logits = loaded.model(ids).logits
    finally:
        for h in handles:
            h.remove()
    return logits, acts


def test_local_loss_is_mse_plus_sparsity(loaded, setup):
    splice, sae, ids = setup
    loss = plugins.load("losses", "local")(sparsity_coeff=0.3)
    result = loss(splice, ids)
    with torch.no_grad():
        x = loaded.model(ids, output_hidden_states=True).hidden_states[1]
    out = sae(x)
    expected = F.mse_loss(out.output, x) + 0.3 * out.codes.abs().sum(-1).mean() / 32
    torch.testing.assert_close(result.loss, expected)


def test_e2e_loss_is_kl_original_to_spliced_plus_sparsity(loaded, setup):
    splice, sae, ids = setup
    result = plugins.load("losses", "e2e")(sparsity_coeff=0.3)(splice, ids)
    with torch.no_grad():
        clean = loaded.model(ids).logits
    spliced, _ = _reference_spliced_logits(loaded, sae, ids)
    log_p, log_q = F.log_softmax(clean, -1), F.log_softmax(spliced, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    codes = result.codes[HookPoint(1)]
    torch.testing.assert_close(result.terms["kl"], kl.detach())
    torch.testing.assert_close(result.loss, kl + 0.3 * codes.abs().sum(-1).mean() / 32)


def test_e2e_ds_loss_adds_downstream_mse(loaded, setup):
    splice, sae, ids = setup
    loss = plugins.load("losses", "e2e+ds")(sparsity_coeff=0.3, ds_coeff="2.0", downstream="all")
    result = loss(splice, ids)
    with torch.no_grad():
        clean_out = loaded.model(ids, output_hidden_states=True)
    spliced, acts = _reference_spliced_logits(loaded, sae, ids, capture=[2, 3])
    # downstream positions after resid_pre.1: outputs of layers 1 and 2 (positions 2, 3)
    mse = (F.mse_loss(acts[2], clean_out.hidden_states[2])
           + F.mse_loss(acts[3], _pre_norm_last(loaded, ids))) / 2
    log_p, log_q = F.log_softmax(clean_out.logits, -1), F.log_softmax(spliced, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    sparsity = 0.3 * result.codes[HookPoint(1)].abs().sum(-1).mean() / 32
    torch.testing.assert_close(result.terms["ds_mse"], mse.detach())
    torch.testing.assert_close(result.loss, 0.5 * kl + 2.0 * mse + sparsity)


def test_e2e_ds_default_leaves_out_the_last_layer_s_output(loaded, setup):
    splice, sae, ids = setup  # 3 layers, the SAE at resid_pre.1
    result = plugins.load("losses", "e2e+ds")(sparsity_coeff=0.3, ds_coeff="2.0")(splice, ids)
    with torch.no_grad():
        clean_out = loaded.model(ids, output_hidden_states=True)
    spliced, acts = _reference_spliced_logits(loaded, sae, ids, capture=[2])
    mse = F.mse_loss(acts[2], clean_out.hidden_states[2])  # the output of layer 1 only
    log_p, log_q = F.log_softmax(clean_out.logits, -1), F.log_softmax(spliced, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    sparsity = 0.3 * result.codes[HookPoint(1)].abs().sum(-1).mean() / 32
    torch.testing.assert_close(result.terms["ds_mse"], mse.detach())
    torch.testing.assert_close(result.loss, 0.5 * kl + 2.0 * mse + sparsity)


@pytest.mark.parametrize(("downstream", "positions"), [
    ("paper", list(range(7, 12))),  # blocks.7..11.hook_resid_pre: the reference's 5 terms
    ("all", list(range(7, 13))),    # and the last layer's output: 6 terms
    ("8,10", [9, 11]),
])
def test_e2e_ds_layers_for_an_sae_at_layer_6_of_12(downstream, positions):
    loss = plugins.load("losses", "e2e+ds")(sparsity_coeff=1.0, downstream=downstream)
    assert loss.positions(6, 12) == positions


def _pre_norm_last(loaded, ids):
    out = {}
    layers = loaded.adapter.layers(loaded.model)
    h = layers[-1].register_forward_hook(lambda m, a, o: out.__setitem__("x", o))
    with torch.no_grad():
        loaded.model(ids)
    h.remove()
    return out["x"]


def test_e2e_gradients_reach_only_the_sae(loaded, setup):
    splice, sae, ids = setup
    result = plugins.load("losses", "e2e")(sparsity_coeff=0.1)(splice, ids)
    result.loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sae.parameters())
    assert all(p.grad is None for p in loaded.model.parameters())


def test_unknown_loss_option_is_one_clear_error():
    with pytest.raises(SaeKitError, match="unknown option 'beta'.*ds_coeff"):
        plugins.load("losses", "e2e+ds")(sparsity_coeff=1.0, beta="2")
    with pytest.raises(SaeKitError, match="must be a float"):
        plugins.load("losses", "e2e+ds")(sparsity_coeff=1.0, ds_coeff="lots")
