"""`--init-from` accepts every architecture sae-kit has, and takes lambda from the source.

Each source is an SAE directory built here with biases, unequal decoder norms and thresholds
that matter; the run must start with its exact weights and buffers (thresholds, AuxK counters),
compute its codes, and keep its k through a kl+mse fine-tune.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sae_kit import plugins
from sae_kit.model.hookpoints import HookPoint
from sae_kit.record.config import TrainConfig
from sae_kit.store.sae_dir import load_sae_dir, save_sae
from sae_kit.train.build import build_run
from sae_kit.train.loop import fit
from tests.helpers import FAST, cli_train

pytestmark = pytest.mark.integration  # runs the sae-kit CLI and whole runs

D_MODEL, N_DICT = 32, 64  # the tiny GPT-2's width; a dictionary of 2x
HOOK = "blocks.1.hook_resid_post"
ARCHS = [
    pytest.param("relu", {}, id="relu"),
    pytest.param("topk", {"k": 6}, id="topk"),
    pytest.param("batchtopk", {"k": 6, "threshold_lr": 0.2}, id="batchtopk"),
    pytest.param("jumprelu", {"bandwidth": 0.1}, id="jumprelu"),
    pytest.param("matryoshka", {"k": 6, "prefixes": "16,32", "auxk": True}, id="matryoshka"),
]
_AT = FAST.index("--dict-ratio")
BASE = FAST[:_AT] + FAST[_AT + 2:]
"""FAST without --dict-ratio: the source sets the dictionary size."""


def source(root: Path, arch: str, options: dict, sparsity_coeff: float | None = 0.7) -> Path:
    torch.manual_seed(5)
    sae = plugins.load("architectures", arch)(D_MODEL, N_DICT, **options)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.5, 2.0, N_DICT))
        sae.b_enc.normal_(0, 0.5)
        sae.b_dec.normal_()
        if hasattr(sae, "log_threshold"):  # jumprelu: one theta per latent
            sae.log_threshold.copy_(torch.linspace(-3.0, 0.0, N_DICT))
        elif isinstance(getattr(sae, "threshold", None), torch.Tensor):  # batchtopk family
            sae.threshold.fill_(0.4)
    extra = {"model": "tiny", "revision": None, "loss": "local", "dataset": "pydoc",
             "context": 32, "tokens_trained": 256,
             "sparsity_coeff": sparsity_coeff if sae.penalised else None}
    return save_sae(sae, HookPoint.parse(HOOK), root / HOOK, extra)


def config(model: Path, src: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(model=str(model), dataset="pydoc", n_samples=8, batch_size=2, grad_accum=2,
                    context=32, device="cpu", init_from=str(src), output_dir=str(out),
                    loss="kl+mse", loss_options={"balance_steps": 1})
    return TrainConfig(**{**settings, **kw})


@pytest.mark.parametrize(("arch", "options"), ARCHS)
def test_every_architecture_starts_exactly_and_fine_tunes(tiny_gpt2, tmp_path, arch, options):
    src = source(tmp_path / "src", arch, options)
    theirs, _ = load_sae_dir(src)
    run = build_run(config(tiny_gpt2, src, tmp_path / "run"))
    (hp, sae), = run.saes.items()
    assert (hp.name, sae.name) == (HOOK, arch) and sae.opts == theirs.opts
    mine, ref = sae.state_dict(), theirs.state_dict()
    assert mine.keys() == ref.keys()  # buffers too: thresholds, AuxK's dead counters
    assert all(torch.equal(mine[k], ref[k]) for k in ref), arch
    x = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(2)) * 2
    sae.eval()
    with torch.no_grad():
        ours, expected = sae(x).codes, theirs(x).codes
    assert 0 < (expected != 0).float().mean() < 0.9  # thresholds and biases are in play
    assert torch.equal(ours, expected)

    sae.train()
    fit(run)
    tuned, tuned_config = load_sae_dir(tmp_path / "run" / HOOK)
    assert tuned.name == arch and tuned.opts == theirs.opts  # k unchanged
    assert not torch.equal(tuned.W_enc, theirs.W_enc)  # it did train
    assert tuned_config["init_from"]["format"] == "sae-kit"


def test_lambda_left_out_is_the_sources_and_a_given_one_wins(tiny_gpt2, tmp_path):
    src = source(tmp_path / "src", "relu", {}, sparsity_coeff=0.7)
    run = build_run(config(tiny_gpt2, src, tmp_path / "a"))
    assert run.config.sparsity_coeff == 0.7 and run.loss.sparsity_coeff == 0.7  # trained with it
    given = build_run(config(tiny_gpt2, src, tmp_path / "b", sparsity_coeff=3.0))
    assert given.config.sparsity_coeff == 3.0 and given.loss.sparsity_coeff == 3.0
    unrecorded = source(tmp_path / "src2", "relu", {}, sparsity_coeff=None)
    assert build_run(config(tiny_gpt2, unrecorded, tmp_path / "c")).config.sparsity_coeff == (
        TrainConfig.sparsity_coeff)


def test_lambda_with_a_topk_source_is_one_line(tiny_gpt2, tmp_path):
    src = source(tmp_path / "src", "topk", {"k": 6})
    result = cli_train(tiny_gpt2, tmp_path / "run", "--init-from", str(src), "--lambda", "2",
                       base=BASE)
    assert result.exit_code == 2, result.output
    assert ("contradicts --lambda 2 (the source is topk: it has no sparsity penalty, its k sets "
            "L0)") in " ".join(result.stderr.split())
    assert not (tmp_path / "run").exists()


def test_a_jumprelu_sae_saelens_saved_starts_with_its_exact_codes(tiny_gpt2, tmp_path):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(3)
    theirs = JumpReLUSAE(JumpReLUSAEConfig(
        d_in=D_MODEL, d_sae=N_DICT, dtype="float32", device="cpu", apply_b_dec_to_input=True,
        metadata=SAEMetadata(hook_name=HOOK, model_name="tiny")))
    with torch.no_grad():
        theirs.b_enc.normal_(0, 0.5)
        theirs.b_dec.normal_()
        theirs.W_dec.div_(theirs.W_dec.norm(dim=1, keepdim=True))  # unit rows: codes comparable
        theirs.threshold.copy_(torch.linspace(0.01, 0.5, N_DICT))
    theirs.save_model(str(tmp_path / "sl"))
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    run = build_run(config(tiny_gpt2, tmp_path / "sl", tmp_path / "run"))
    (_, sae), = run.saes.items()
    assert sae.name == "jumprelu"
    x = torch.randn(40, D_MODEL, generator=torch.Generator().manual_seed(4)) * 2
    with torch.no_grad():
        ours, expected = sae(x).codes, loaded.encode(x)
        assert 0 < (expected != 0).float().mean() < 0.9
        assert torch.equal(ours != 0, expected != 0)  # the same latents fire
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x).output, loaded.decode(expected), rtol=1e-5, atol=1e-5)
    assert run.resolved.init_from.format == "saelens"
