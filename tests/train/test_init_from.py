"""`sae-kit train --init-from SOURCE`: every format starts from exactly the source's SAE.

Sources are built here: sae-kit runs by training one, SAELens directories by real ``sae_lens``
(skipped with a reason when it is absent), sparsify directories in sparsify's own layout
(``cfg.json`` + ``sae.safetensors`` with ``encoder.weight``, ``W_dec``, ``b_dec``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sae_kit.record.config import TrainConfig
from sae_kit.store.run_dir import RunDir
from sae_kit.store.start_from import read_start
from sae_kit.train.build import build_run
from tests.helpers import FAST, cli_train

pytestmark = pytest.mark.integration  # runs the sae-kit CLI and whole runs

D_MODEL, N_DICT, K = 32, 64, 6  # the tiny GPT-2's width; a dictionary of 2x
HOOK = "blocks.1.hook_resid_post"
_AT = FAST.index("--dict-ratio")
BASE = FAST[:_AT] + FAST[_AT + 2:]
"""FAST without --dict-ratio: the source sets the dictionary size."""


def train_from(model: Path, out: Path, source: Path, *extra: str):
    return cli_train(model, out, "--init-from", str(source), *extra, base=BASE)


def x_batch() -> torch.Tensor:
    return torch.randn(20, D_MODEL, generator=torch.Generator().manual_seed(3)) * 2


def tiny_config(model: Path, source: Path | str, out: Path, **kw) -> TrainConfig:
    settings = dict(model=str(model), dataset="pydoc", n_samples=8, batch_size=2, grad_accum=2,
                    context=32, device="cpu", init_from=str(source), output_dir=str(out))
    return TrainConfig(**{**settings, **kw})


def only_sae(run):
    assert len(run.saes) == 1
    return next(iter(run.saes.items()))


def saelens_source(path: Path, arch: str) -> Path:
    """A real SAELens SAE (non-zero biases, b_dec applied to the input) saved by SAELens."""
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(7)
    meta = SAEMetadata(hook_name=HOOK, model_name="tiny")
    if arch == "topk":
        cfg = sae_lens.TopKSAEConfig(d_in=D_MODEL, d_sae=N_DICT, k=K, dtype="float32",
                                     device="cpu", apply_b_dec_to_input=True, metadata=meta)
        theirs = sae_lens.TopKSAE(cfg)
    else:
        cfg = sae_lens.StandardSAEConfig(d_in=D_MODEL, d_sae=N_DICT, dtype="float32",
                                         device="cpu", apply_b_dec_to_input=True, metadata=meta)
        theirs = sae_lens.StandardSAE(cfg)
    with torch.no_grad():
        theirs.b_enc.normal_(0, 0.5)
        theirs.b_dec.normal_()
        theirs.W_dec.div_(theirs.W_dec.norm(dim=1, keepdim=True))  # unit rows: codes comparable
    theirs.save_model(str(path))
    return path


def sparsify_source(path: Path, name: str = "h.1") -> Path:
    """A sparsify TopK SAE directory, in the layout sparsify's save_to_disk writes."""
    g = torch.Generator().manual_seed(11)
    enc = torch.randn(N_DICT, D_MODEL, generator=g) / D_MODEL**0.5
    dec = enc.clone()
    dec = dec / dec.norm(dim=1, keepdim=True)  # normalize_decoder: True
    folder = path / name
    folder.mkdir(parents=True)
    save_file({"encoder.weight": enc, "encoder.bias": torch.randn(N_DICT, generator=g) * 0.1,
               "W_dec": dec, "b_dec": torch.randn(D_MODEL, generator=g)},
              str(folder / "sae.safetensors"))
    cfg = {"activation": "topk", "expansion_factor": 2, "normalize_decoder": True,
           "num_latents": 0, "k": K, "multi_topk": False, "skip_connection": False,
           "transcode": False, "d_in": D_MODEL}
    (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


def sparsify_codes(folder: Path, x: torch.Tensor) -> torch.Tensor:
    """sparsify's encode: top-k of relu(encoder(x - b_dec)), as a dense code vector."""
    w = load_file(str(folder / "sae.safetensors"))
    pre = torch.relu((x - w["b_dec"]) @ w["encoder.weight"].T + w["encoder.bias"])
    top = pre.topk(K, dim=-1)
    return torch.zeros_like(pre).scatter_(-1, top.indices, top.values)


@pytest.mark.parametrize("arch", ["standard", "topk"])
def test_a_saelens_source_starts_the_run_with_its_exact_codes(tiny_gpt2, tmp_path, arch):
    import sae_lens

    src = saelens_source(tmp_path / "sl", arch)
    theirs = sae_lens.SAE.load_from_disk(str(src), device="cpu")
    run = build_run(tiny_config(tiny_gpt2, src, tmp_path / "run"))
    hp, sae = only_sae(run)
    assert hp.name == HOOK and sae.name == {"standard": "relu", "topk": "topk"}[arch]
    assert sae.n_dict == N_DICT and (arch == "standard" or sae.opts.k == K)
    x = x_batch()
    with torch.no_grad():
        ours, expected = sae(x).codes, theirs.encode(x)
        assert torch.equal(ours != 0, expected != 0)  # the same latents fire
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(sae(x).output, theirs.decode(expected), rtol=1e-5, atol=1e-5)
    record = run.resolved.init_from
    assert record.format == "saelens" and record.source == str(src)
    digest = hashlib.sha256((src / "sae_weights.safetensors").read_bytes()).hexdigest()
    assert record.sha256 == {HOOK: digest}


def test_a_sparsify_source_starts_the_run_with_its_exact_codes(tiny_gpt2, tmp_path):
    folder = sparsify_source(tmp_path / "sp")
    run = build_run(tiny_config(tiny_gpt2, tmp_path / "sp", tmp_path / "run"))  # parent dir
    hp, sae = only_sae(run)
    assert (hp.name, sae.name, sae.opts.k) == (HOOK, "topk", K)  # h.1's output
    x = x_batch()
    with torch.no_grad():
        ours, expected = sae(x).codes, sparsify_codes(folder, x)
        assert torch.equal(ours != 0, expected != 0)
        torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
    assert run.resolved.init_from.format == "sparsify"
    single = build_run(tiny_config(tiny_gpt2, folder, tmp_path / "run2"))  # one SAE's folder
    assert torch.equal(only_sae(single)[1].W_enc, sae.W_enc)


def test_a_sae_kit_run_source_starts_bit_identical(tiny_gpt2, tmp_path):
    result = cli_train(tiny_gpt2, tmp_path / "local", "--loss", "local", "--layer", "1")
    assert result.exit_code == 0, result.output
    run = build_run(tiny_config(tiny_gpt2, tmp_path / "local", tmp_path / "run"))
    hp, sae = only_sae(run)
    stored = load_file(str(tmp_path / "local" / hp.name / "sae.safetensors"))
    assert all(torch.equal(sae.state_dict()[k], v) for k, v in stored.items())
    # the SAE directory itself is a source too
    one = build_run(tiny_config(tiny_gpt2, tmp_path / "local" / hp.name, tmp_path / "run2"))
    assert torch.equal(only_sae(one)[1].W_dec, sae.W_dec)


def test_a_kl_fine_tune_exports_back_to_saelens_with_its_new_weights(tiny_gpt2, tmp_path):
    import sae_lens
    from typer.testing import CliRunner

    from sae_kit.cli import app

    src = saelens_source(tmp_path / "sl", "standard")
    result = train_from(tiny_gpt2, tmp_path / "ft", src, "--loss", "kl+mse")
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "ft" / "config.json").read_text())
    assert config["init_from"] == str(src) and config["architecture"] == "relu"
    assert config["resolved"]["init_from"]["format"] == "saelens"
    sae_config = json.loads((tmp_path / "ft" / HOOK / "config.json").read_text())
    assert sae_config["init_from"]["sha256"] == config["resolved"]["init_from"]["sha256"]
    out = CliRunner().invoke(app, ["export", str(tmp_path / "ft" / HOOK), str(tmp_path / "back")])
    assert out.exit_code == 0, out.output
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "back"), device="cpu")
    original = sae_lens.SAE.load_from_disk(str(src), device="cpu")
    tuned = load_file(str(tmp_path / "ft" / HOOK / "sae.safetensors"))
    torch.testing.assert_close(loaded.W_enc.detach(), tuned["W_enc"].T)
    assert not torch.allclose(loaded.W_enc, original.W_enc)  # fine-tuned, not the source
    from sae_kit.store.sae_dir import load_sae_dir

    sae, _ = load_sae_dir(tmp_path / "ft" / HOOK)
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode(x), sae(x).codes, rtol=1e-5, atol=1e-5)


def test_read_start_names_every_sae_of_a_run(tmp_path):
    from tests.helpers import make_sae_dir

    make_sae_dir(tmp_path / "run", layer=1)
    make_sae_dir(tmp_path / "run", layer=2)
    start = read_start(str(tmp_path / "run"))
    assert [hp.name for hp in start.saes] == ["blocks.1.hook_resid_pre", "blocks.2.hook_resid_pre"]
    assert start.format == "sae-kit"


@pytest.mark.parametrize(("extra", "message"), [
    (["--architecture", "topk"], "contradicts --architecture topk (the source is relu)"),
    (["--dict-ratio", "8"], "contradicts --dict-ratio 8 (the source has 64 elements of width "
                            "32: ratio 2)"),
    (["--hook-point", "blocks.2.hook_resid_pre"], "has no SAE at blocks.2.hook_resid_pre; it "
                                                  "has blocks.1.hook_resid_post"),
])
def test_settings_that_contradict_the_source_are_one_line(tiny_gpt2, tmp_path, extra, message):
    src = saelens_source(tmp_path / "sl", "standard")
    result = train_from(tiny_gpt2, tmp_path / "run", src, *extra)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "run").exists()


def test_a_topk_source_refuses_another_k(tiny_gpt2, tmp_path):
    folder = sparsify_source(tmp_path / "sp")
    result = train_from(tiny_gpt2, tmp_path / "run", folder, "--arch-option", "k=9")
    assert result.exit_code == 2
    assert "contradicts --arch-option k=9 (the source has 6)" in " ".join(result.stderr.split())


def test_bad_sources_are_one_line(tiny_gpt2, tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "weights.bin").write_text("x")
    result = train_from(tiny_gpt2, tmp_path / "run", tmp_path / "junk")
    assert result.exit_code == 2
    line = " ".join(result.stderr.split())
    assert "is none of the formats sae-kit reads" in line
    assert "cfg.json + sae_weights.safetensors" in line and "cfg.json + sae.safetensors" in line

    wide = tmp_path / "wide"
    sparsify_source(wide)
    cfg = json.loads((wide / "h.1" / "cfg.json").read_text())
    w = load_file(str(wide / "h.1" / "sae.safetensors"))
    w = {"encoder.weight": torch.randn(N_DICT, 48), "encoder.bias": w["encoder.bias"],
         "W_dec": torch.nn.functional.normalize(torch.randn(N_DICT, 48), dim=1),
         "b_dec": torch.zeros(48)}
    save_file(w, str(wide / "h.1" / "sae.safetensors"))
    (wide / "h.1" / "cfg.json").write_text(json.dumps({**cfg, "d_in": 48}))
    result = train_from(tiny_gpt2, tmp_path / "run", wide)
    assert result.exit_code == 2
    assert "has SAEs of width 48, but" in result.stderr and "d_model 32" in result.stderr

    (wide / "h.1" / "cfg.json").write_text(json.dumps({**cfg, "d_in": 48, "transcode": True}))
    result = train_from(tiny_gpt2, tmp_path / "run", wide)
    assert result.exit_code == 2 and "transcode is true" in result.stderr


def test_an_unknown_architecture_in_the_source_is_named(tiny_gpt2, tmp_path):
    from tests.helpers import make_sae_dir

    sae_dir = make_sae_dir(tmp_path / "run")
    config = json.loads((sae_dir / "config.json").read_text())
    (sae_dir / "config.json").write_text(json.dumps({**config, "architecture": "gated"}))
    result = train_from(tiny_gpt2, tmp_path / "out", sae_dir)
    assert result.exit_code == 2 and "gated" in result.stderr
    assert "Traceback" not in result.output


def _fine_tune_config(model: Path, source: Path, out: Path) -> TrainConfig:
    # 6 steps of 2 micro-batches; balanced over the first 2, then lambda adapts (a tight band)
    return tiny_config(model, source, out, loss="kl+mse", n_samples=24, save_every=1,
                       keep_checkpoints=10, seed=4, log_every=1,
                       loss_options={"balance_steps": 2, "l0_rate": 0.5, "l0_tolerance": 0.001})


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_fine_tune_resumes_exactly_even_if_its_source_changed(tiny_gpt2, tmp_path):
    from sae_kit.train.loop import fit
    from sae_kit.train.resume import resume

    src = saelens_source(tmp_path / "sl", "standard")
    reference = tmp_path / "reference"
    fit(build_run(_fine_tune_config(tiny_gpt2, src, reference)))

    out = tmp_path / "run"
    run = build_run(_fine_tune_config(tiny_gpt2, src, out))
    # stopped after step 3: the balance is set, lambda adapts
    run.resolved = dataclasses.replace(run.resolved, total_steps=3)
    fit(run)
    started = RunDir(out).read().resolved.init_from
    weights = load_file(str(src / "sae_weights.safetensors"))
    save_file({k: v + 1 for k, v in weights.items()}, str(src / "sae_weights.safetensors"))
    warnings: list[str] = []
    resumed, state = resume(out, warn=warnings.append)
    assert state.step == 3
    fit(resumed, start=state)

    assert len(warnings) == 1 and "has changed since this run started" in warnings[0]
    assert RunDir(out).read().resolved.init_from == started
    mine, theirs = (load_file(str(d / HOOK / "sae.safetensors")) for d in (out, reference))
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    rows, ref_rows = _rows(out), _rows(reference)
    assert [r["step"] for r in rows] == list(range(1, 7))
    for key in ("loss", "kl", "kl_scale", "lambda"):
        assert [r[key] for r in rows] == [r[key] for r in ref_rows], key
    assert len({r["lambda"] for r in rows}) > 1  # lambda did adapt across the resume


@pytest.mark.slow
def test_a_hub_id_is_a_source_through_the_pull_path(tiny_gpt2, tmp_path):
    from tests.fake_hub import FakeHub
    from tests.helpers import HUB_TOKEN, hub_cli

    folder = sparsify_source(tmp_path / "sp")
    files = {f"h.1/{p.name}": p.read_bytes() for p in folder.iterdir()}
    out = tmp_path / "run"
    with FakeHub(HUB_TOKEN, lifetime=120) as hub:
        hub.seed("bob/sparsify-saes", files)
        result = hub_cli(["train", "--model", str(tiny_gpt2), "--out", str(out), *BASE,
                          "--init-from", "bob/sparsify-saes/h.1", "--loss", "kl+mse"],
                         tmp_path / "hf-home", hub.url)
    assert result.returncode == 0, result.stderr
    record = RunDir(out).read().resolved.init_from
    assert record.source == "bob/sparsify-saes/h.1" and record.format == "sparsify"
    digest = hashlib.sha256(files["h.1/sae.safetensors"]).hexdigest()
    assert record.sha256 == {HOOK: digest}
    assert (out / HOOK / "sae.safetensors").is_file()
