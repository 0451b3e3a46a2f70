"""Per-feature importance: attribution against independent gradients and a hand-derived case,
exact ablation against a manual forward with the code zeroed, both conventions, the summary."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sae_kit.architectures.relu import ReluSAE
from sae_kit.errors import SaeKitError
from sae_kit.eval.analysis.attribution import (
    CONVENTIONS,
    METRICS,
    WindowMetrics,
    code_attributions,
    cumulative_share,
    exact_ablation_deltas,
    model_input,
    spearman,
    top_shares,
    window_metrics,
)
from sae_kit.eval.analysis.importance import choose_exact

LAYER = 1


@pytest.fixture(scope="module")
def setting(tiny_gpt2):
    """The tiny GPT-2, a ReLU SAE at blocks.1 whose codes are sparse, and two windows."""
    from sae_kit.model.loading import load_model
    from sae_kit.model.splice import ModelRunner

    loaded = load_model(str(tiny_gpt2), device=torch.device("cpu"))
    torch.manual_seed(0)
    sae = ReluSAE(32, 48)
    sae.requires_grad_(False)
    runner = ModelRunner(loaded.model, loaded.adapter)
    input_ids = torch.randint(0, 512, (3, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = runner.run(input_ids, capture=[LAYER])
        x = clean.acts[LAYER]
        pre = (x @ sae.W_enc.T).reshape(-1, 48)
        sae.W_enc.mul_(40)  # the random model's stream is small: codes large enough to matter
        rarity = torch.linspace(0.6, 0.99, 48)  # feature j fires on ~(1 - rarity[j]) of tokens
        sae.b_enc.copy_(-40 * torch.stack([pre[:, j].quantile(q) for j, q in enumerate(rarity)]))
    return {"loaded": loaded, "sae": sae, "runner": runner, "ids": input_ids, "x": x,
            "codes": sae.encode(x), "clean_hidden": clean.final_hidden,
            "forward": lambda ids, h: runner.run(ids, start=(LAYER, h)).final_hidden,
            "unembed": loaded.adapter.unembed(loaded.model)}


def _hf_metrics(setting, h: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL and CE summed over each window, by plain Hugging Face forward with a replacing hook."""
    model = setting["loaded"].model
    with torch.no_grad():
        clean_logits = model(input_ids=ids).logits
    handle = model.transformer.h[LAYER].register_forward_pre_hook(lambda m, args: (h, *args[1:]))
    try:
        logits = model(input_ids=ids).logits
    finally:
        handle.remove()
    log_p, log_q = F.log_softmax(clean_logits, -1), F.log_softmax(logits, -1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).sum(-1)
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none").sum(-1)
    return kl, ce


def _attributions(setting, convention, measure=None):
    s = setting
    return code_attributions(s["sae"], s["codes"], s["x"], convention, s["forward"], s["ids"],
                             s["clean_hidden"], s["unembed"], measure)


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_attribution_is_minus_code_times_independent_gradient(setting, convention):
    s = setting
    leaf = s["codes"].clone().requires_grad_(True)
    x_hat = s["sae"].decode(leaf)
    h = x_hat if convention == "spliced" else x_hat + (s["x"] - x_hat).detach()
    kl, ce = _hf_metrics(s, h, s["ids"])
    expected = {m: -(s["codes"] * torch.autograd.grad(v.sum(), leaf, retain_graph=True)[0])
                for m, v in (("kl", kl), ("ce", ce))}
    got, metrics = _attributions(s, convention)
    assert s["codes"].ne(0).any() and s["codes"].eq(0).any()
    for m in METRICS:
        assert got[m].shape == s["codes"].shape
        assert torch.allclose(got[m], expected[m], atol=1e-6, rtol=1e-4), m
        assert torch.all(got[m][s["codes"] == 0] == 0)  # no code, no attribution
    assert torch.allclose(metrics.kl, kl.double(), atol=1e-5)
    assert torch.allclose(metrics.ce, ce.double(), rtol=1e-5)


def test_with_error_kl_attribution_vanishes_at_the_clean_model(setting):
    """The documented caveat: with the error term the model is the original, KL's minimum."""
    spliced, spliced_metrics = _attributions(setting, "spliced")
    with_error, metrics = _attributions(setting, "with_error")
    assert float(metrics.kl.abs().max()) < 1e-5 < float(spliced_metrics.kl.min())  # fp32 noise
    assert float(with_error["kl"].abs().max()) < 1e-4 * float(spliced["kl"].abs().max())
    assert float(with_error["ce"].abs().max()) > 1e-3  # CE has no minimum there


@pytest.mark.parametrize("arch,options", [
    ("topk", {"k": 6}), ("batchtopk", {"k": 6}),
    ("jumprelu", {"init_threshold": 0.05}), ("matryoshka", {"k": 6, "prefixes": "8,24"}),
])
def test_attribution_of_every_architecture_is_minus_code_times_gradient(setting, arch, options):
    """Codes from any architecture: the attribution only needs decode to be differentiable."""
    from sae_kit import plugins

    torch.manual_seed(0)
    sae = plugins.load("architectures", arch)(32, 48, **options).eval().requires_grad_(False)
    s = dict(setting, sae=sae)
    with torch.no_grad():
        sae.W_enc.mul_(40)
        s["codes"] = sae.encode(s["x"])
    assert s["codes"].ne(0).any()
    leaf = s["codes"].clone().requires_grad_(True)
    kl, ce = _hf_metrics(s, sae.decode(leaf), s["ids"])
    got, _ = _attributions(s, "spliced")
    for m, v in (("kl", kl), ("ce", ce)):
        expected = -(s["codes"] * torch.autograd.grad(v.sum(), leaf, retain_graph=True)[0])
        assert torch.allclose(got[m], expected, atol=1e-6, rtol=1e-4), m


class _Linear(nn.Module):
    """A linear downstream map h -> h @ A (one matrix, no bias)."""

    def __init__(self, a: torch.Tensor) -> None:
        super().__init__()
        self.a = a

    def forward(self, ids, h):
        return h @ self.a


def _linear_measure(w: dict[str, torch.Tensor]):
    """Metrics linear in the final hidden states: sum_t w . hidden_t."""

    def measure(hidden, clean_hidden, ids, unembed, want_grad):
        sums = {m: (hidden * w[m]).sum((1, 2)).double() for m in METRICS}
        out = WindowMetrics(sums["kl"], sums["ce"], torch.zeros(len(hidden)).double())
        if want_grad:
            out.grads = {m: w[m].expand_as(hidden).clone() for m in METRICS}
        return out

    return measure


def test_hand_derived_linear_case_where_first_order_is_exact():
    torch.manual_seed(3)
    sae = ReluSAE(6, 10).double().requires_grad_(False)
    x = torch.randn(2, 5, 6, dtype=torch.float64)
    codes = sae.encode(x)
    a = torch.randn(6, 4, dtype=torch.float64)
    w = {"kl": torch.randn(4, dtype=torch.float64), "ce": torch.randn(4, dtype=torch.float64)}
    measure, forward, ids = _linear_measure(w), _Linear(a), torch.zeros(2, 5, dtype=torch.long)
    d = sae.dict_elements  # unit columns: x-hat = d @ c + b_dec
    for convention in CONVENTIONS:
        got, base = code_attributions(sae, codes, x, convention, forward, ids, x, nn.Identity(),
                                      measure)
        for m in METRICS:
            # M = sum_t w . (A^T h_t), dM/dc_i(t) = d_i . A w, so -c_i(t) d_i . A w.
            assert torch.allclose(got[m], -codes * (d.T @ a @ w[m]), atol=1e-12)
        features = torch.arange(10)
        exact = exact_ablation_deltas(sae, codes, x, convention, forward, ids, x, nn.Identity(),
                                      base, features, 3, measure)
        for m in METRICS:  # linear: zeroing every token's code changes M by the sum, exactly
            assert torch.allclose(exact[m], got[m].sum((0, 1)), atol=1e-10)


def _manual_zeroed(setting, convention, feature):
    """Per window, the change of KL and CE when ``feature``'s code is zeroed, by hand."""
    s = setting
    zeroed = s["codes"].clone()
    zeroed[..., feature] = 0
    err = 0 if convention == "spliced" else s["x"] - s["sae"].decode(s["codes"])
    with torch.no_grad():
        kl0, ce0 = _hf_metrics(s, model_input(s["sae"], s["codes"], s["x"], convention), s["ids"])
        kl1, ce1 = _hf_metrics(s, s["sae"].decode(zeroed) + err, s["ids"])
    return {"kl": float((kl1 - kl0).sum()), "ce": float((ce1 - ce0).sum())}


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_exact_ablation_equals_a_manual_forward_with_the_code_zeroed(setting, convention):
    s = setting
    firing = s["codes"].ne(0).any(1)  # [windows, features]
    some = [f for f in range(48) if 0 < int(firing[:, f].sum()) < len(firing)][:3]
    every = [f for f in range(48) if bool(firing[:, f].all())][:2]
    features = torch.tensor(some + every)
    assert len(some) and len(every)  # pairs from some windows, and from every window
    with torch.no_grad():
        h = model_input(s["sae"], s["codes"], s["x"], convention)
        base = window_metrics(s["forward"](s["ids"], h), s["clean_hidden"], s["ids"],
                              s["unembed"])
    results = [exact_ablation_deltas(s["sae"], s["codes"], s["x"], convention, s["forward"],
                                     s["ids"], s["clean_hidden"], s["unembed"], base, features,
                                     rows) for rows in (1, 4)]
    for slot, feature in enumerate(features.tolist()):
        manual = _manual_zeroed(s, convention, feature)
        for m in METRICS:
            for deltas in results:  # one pair per forward, or several windows' pairs in one
                fp32 = 1e-6 * float(getattr(base, m).abs().sum())  # rounding of the summed metric
                assert float(deltas[m][slot]) == pytest.approx(manual[m], rel=1e-4,
                                                                abs=fp32 + 1e-7)
    assert any(abs(float(results[0]["kl"][i])) > 1e-5 for i in range(len(features)))


def test_no_gradient_through_the_decoder_is_one_clear_error(setting):
    class Detached(ReluSAE):
        name = "detached"

        def decode(self, codes):
            return super().decode(codes).detach()

    s = dict(setting)
    sae = Detached(32, 48)
    s["sae"], s["codes"] = sae, sae.encode(s["x"]).detach()
    with pytest.raises(SaeKitError, match="no gradient with respect to its codes"):
        _attributions(s, "spliced")


def test_summary_shares_on_a_constructed_example():
    importance = torch.tensor([40.0, 20.0] + [4.0] * 8 + [0.5] * 40 + [0.0] * 150)
    total = 40 + 20 + 32 + 20
    shares = top_shares(importance)  # 200 features: top 1% = 2, top 10% = 20
    assert shares["top_1pct"] == pytest.approx(60 / total)
    assert shares["top_10pct"] == pytest.approx((60 + 32 + 10 * 0.5) / total)
    assert top_shares(torch.zeros(5))["top_1pct"] is None
    assert top_shares(torch.tensor([1.0, 3.0]))["top_1pct"] == pytest.approx(0.75)  # >= 1 feature
    curve = cumulative_share(importance[torch.randperm(200)])
    assert curve[1] == pytest.approx(60 / total) and curve[-1] == pytest.approx(1.0)
    assert torch.all(curve[1:] >= curve[:-1])


def test_spearman():
    a = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(a, torch.tensor([1.0, 3.0, 2.0, 4.0])) == pytest.approx(0.8)
    assert spearman(a, -a ** 3) == pytest.approx(-1.0)
    ties = spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([5.0, 5.0, 9.0]))
    assert ties == pytest.approx(math.sqrt(3) / 2)  # ranks (1.5, 1.5, 3) vs (1, 2, 3)
    assert spearman(a, torch.ones(4)) is None and spearman(a[:2], a[:2]) is None


def test_choose_exact_takes_the_top_and_random_features_that_fire():
    importance = torch.tensor([0.1, 5.0, 0.0, 3.0, 0.2, 0.0, 0.3])
    count = torch.tensor([1, 4, 0, 2, 1, 0, 3])
    features, is_top = choose_exact(importance, count, 2, 10, seed=0)
    assert features[:2].tolist() == [1, 3] and is_top.tolist() == [True, True, False, False,
                                                                      False]
    assert sorted(features[2:].tolist()) == [0, 4, 6]  # never the features that never fired
    again, _ = choose_exact(importance, count, 2, 2, seed=0)
    assert again.tolist() == choose_exact(importance, count, 2, 2, seed=0)[0].tolist()


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_single_token_removal_changes_only_later_positions(setting, convention):
    """Per-context effect: one code zeroed at one token, against a plain HF forward."""
    from sae_kit.eval.analysis.context_effects import ContextEffects, single_token_deltas

    s = setting
    window, position = 1, 5
    feature = int(s["codes"][window, position].nonzero()[0])
    zeroed = s["codes"].clone()
    zeroed[window, position, feature] = 0
    err = 0 if convention == "spliced" else s["x"] - s["sae"].decode(s["codes"])
    model = s["loaded"].model
    with torch.no_grad():
        clean = F.log_softmax(model(input_ids=s["ids"]).logits, -1)
    per_position = []
    for h in (model_input(s["sae"], s["codes"], s["x"], convention),
              s["sae"].decode(zeroed) + err):
        handle = model.transformer.h[LAYER].register_forward_pre_hook(
            lambda m, args, h=h: (h, *args[1:]))
        try:
            with torch.no_grad():
                log_q = F.log_softmax(model(input_ids=s["ids"]).logits, -1)
        finally:
            handle.remove()
        per_position.append((clean.exp() * (clean - log_q)).sum(-1)[window])
    manual = (per_position[1] - per_position[0]).double()
    targets = torch.tensor([[window, position, feature]])
    got = single_token_deltas(s["sae"], s["codes"], s["x"], convention, s["forward"], s["ids"],
                              s["clean_hidden"], s["unembed"], targets, 2)[0]
    assert torch.allclose(got, manual, atol=2e-6)
    assert torch.all(got[:position] == 0)  # causal: nothing before the token moves
    assert float(got[position:].abs().max()) > 1e-5

    # The accumulator over two batches: the centre and 2 after, then the rest of the window.
    where = torch.tensor([[window * 12 + position], [-1]])
    effects = ContextEffects(where, torch.tensor([feature]), seq=12, after=2)
    for rows in (slice(0, 1), slice(1, 3)):
        effects.add(s["sae"], s["codes"][rows], s["x"][rows], s["forward"], s["ids"][rows],
                    s["clean_hidden"][rows], s["unembed"], 4)
    assert torch.allclose(effects.near[convention][0, 0], got[position:position + 3])
    assert float(effects.rest[convention][0, 0]) == pytest.approx(float(got[position + 3:].sum()))
    assert torch.isnan(effects.near[convention][1, 0]).all()  # an empty slot stays empty
