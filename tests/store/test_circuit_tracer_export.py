"""`sae-kit export --format circuit-tracer`: a set of per-layer transcoders in the layout
circuit-tracer 0.5.0's loader reads, checked against that loader's code and, where circuit-tracer
is installed, loaded by it; what it cannot express is one line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sae_kit.architectures.batchtopk import BatchTopKSAE
from sae_kit.architectures.jumprelu import JumpReLUSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.cli import app
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.sae_dir import load_sae_dir, save_sae

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

D, N = 32, 64  # tiny_gpt2's width; one dictionary size for the whole set
PROBE = Path(__file__).with_name("circuit_tracer_probe.py")
# An interpreter with circuit-tracer installed: this one if it has it, else the venv named here.
CT_PYTHON = os.environ.get("SAE_KIT_CIRCUIT_TRACER_PYTHON") or (
    sys.executable if importlib.util.find_spec("circuit_tracer") else None)
WHY_SKIPPED = ("circuit-tracer is not installed here: it pins transformers<=4.57.3 and sae-kit "
               "needs >=5, so it lives in its own venv; set SAE_KIT_CIRCUIT_TRACER_PYTHON to that "
               "venv's python (docs/hub.md#circuit-tracer)")


def _train_run(model: Path, out: Path) -> Path:
    args = ["train", "--model", str(model), "--out", str(out), "--loss", "local",
            "--dataset", "pydoc", "--n-samples", "8", "--batch-size", "2", "--context", "16",
            "--dict-ratio", "2", "--device", "cpu", "--hook", "mlp_in", "--transcoder-output",
            "mlp_out", "--layer", "0", "--layer", "1", "--layer", "2", "--seed", "3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def run(tiny_gpt2, tmp_path_factory):
    """Three ReLU MLP transcoders, one per layer of tiny_gpt2, trained in one run."""
    return _train_run(tiny_gpt2, tmp_path_factory.mktemp("ct") / "run")


def _sae_dir(root: Path, layer: int, arch=JumpReLUSAE, skip=True, n=N, seed=0, **where) -> Path:
    """A transcoder directory with unequal decoder norms, a non-zero b_dec and (skip) W_skip."""
    torch.manual_seed(seed + layer)
    sae = arch(D, n)
    if skip:
        sae.add_skip()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 5.0, n))  # export must fold the norms in
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        if skip:
            sae.W_skip.normal_(0, 0.2)
    hook = where.get("hook", HookPoint(layer, "mlp_in"))
    output = where.get("output", HookPoint(layer, "mlp_out"))
    return save_sae(sae.eval(), hook, root / f"{hook.name}", {"model": "gpt2"}, output=output)


def _export(*args) -> CliRunner:
    return CliRunner().invoke(app, ["export", "--format", "circuit-tracer", *map(str, args)])


def _inputs(n_layers: int) -> torch.Tensor:
    return torch.randn(n_layers, 10, D, generator=torch.Generator().manual_seed(7)) * 3


def _circuit_tracer_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """What circuit-tracer computes from one file (transcoder/single_layer_transcoder.py:
    SingleLayerTranscoder.encode, .decode, compute_skip; activation_functions.py: JumpReLU)."""
    pre = x @ state["W_enc"].T + state["b_enc"]  # F.linear(x, W_enc, b_enc): no b_dec first
    threshold = state.get("activation_function.threshold")
    codes = pre.relu() if threshold is None else pre * (pre > threshold)
    out = codes @ state["W_dec"] + state["b_dec"]
    return out + x @ state["W_skip"].T if "W_skip" in state else out


def _check_layout(export: Path, n_layers: int, skip: bool, jumprelu: bool) -> None:
    """The files and keys circuit-tracer 0.5.0 reads: utils/caching.py load_transcoders_from_cache
    (config.yaml, then layer_*.safetensors by the number in the name), utils/hf_utils.py
    load_transcoders (model_kind, feature_input_hook, feature_output_hook) and
    transcoder/single_layer_transcoder.py load_relu_transcoder (the tensor names; the module's
    load_state_dict is strict, so no other key may be there; shapes as its __init__ makes them)."""
    yaml = pytest.importorskip("yaml", reason="PyYAML reads circuit-tracer's config.yaml")
    names = sorted(p.name for p in export.iterdir())
    assert names == sorted(["config.yaml", *(f"layer_{i}.safetensors" for i in range(n_layers))])
    config = yaml.safe_load((export / "config.yaml").read_text())
    assert config["model_kind"] == "transcoder_set"
    assert (config["feature_input_hook"], config["feature_output_hook"]) == \
        ("mlp.hook_in", "mlp.hook_out")
    shapes = {"W_enc": (N, D), "W_dec": (N, D), "b_enc": (N,), "b_dec": (D,)}
    if skip:
        shapes["W_skip"] = (D, D)
    if jumprelu:
        shapes["activation_function.threshold"] = (N,)
    for i in range(n_layers):
        with safe_open(str(export / f"layer_{i}.safetensors"), framework="pt") as f:
            stored = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype())
                      for k in f.keys()}  # noqa: SIM118
        assert stored == {k: (s, "F32") for k, s in shapes.items()}


def test_a_run_exports_as_one_set_that_computes_what_sae_kit_computes(run, tmp_path):
    result = _export(run, tmp_path / "ct")
    assert result.exit_code == 0, result.output
    assert "3 transcoders" in result.output
    _check_layout(tmp_path / "ct", 3, skip=False, jumprelu=False)
    x = _inputs(3)
    for i in range(3):
        sae, _ = load_sae_dir(run / HookPoint(i, "mlp_in").name)
        state = load_file(str(tmp_path / "ct" / f"layer_{i}.safetensors"))
        with torch.no_grad():
            torch.testing.assert_close(_circuit_tracer_forward(state, x[i]), sae(x[i]).output,
                                       rtol=1e-5, atol=1e-5)


def test_sae_dirs_of_skip_jumprelu_and_batchtopk_transcoders_export_as_one_set(tmp_path):
    dirs = [_sae_dir(tmp_path, 0), _sae_dir(tmp_path, 1, arch=BatchTopKSAE, k=4)]
    with torch.no_grad():  # a trained BatchTopK threshold; the start is 0
        sae, _ = load_sae_dir(dirs[1])
        sae.threshold.fill_(0.7)
        save_sae(sae, HookPoint(1, "mlp_in"), dirs[1], {"model": "gpt2"},
                 output=HookPoint(1, "mlp_out"))
    assert _export(*dirs, tmp_path / "ct").exit_code == 0
    _check_layout(tmp_path / "ct", 2, skip=True, jumprelu=True)
    x = _inputs(2)
    for i, d in enumerate(dirs):
        sae, _ = load_sae_dir(d)
        state = load_file(str(tmp_path / "ct" / f"layer_{i}.safetensors"))
        with torch.no_grad():
            torch.testing.assert_close(_circuit_tracer_forward(state, x[i]), sae(x[i]).output,
                                       rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(CT_PYTHON is None, reason=WHY_SKIPPED)
def test_circuit_tracers_own_loader_loads_the_export(run, tiny_gpt2, tmp_path):
    assert _export(run, tmp_path / "ct").exit_code == 0
    x = _inputs(3)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    probe = subprocess.run(
        [CT_PYTHON, str(PROBE), str(tmp_path / "ct"), str(tmp_path / "x.safetensors"),
         str(tmp_path / "got.safetensors"), str(tiny_gpt2)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ""})
    assert probe.returncode == 0, probe.stderr[-3000:]
    fields = json.loads(probe.stdout.strip().splitlines()[-1])
    assert fields["n_layers"] == 3 and fields["d_transcoder"] == N
    assert (fields["feature_input_hook"], fields["feature_output_hook"]) == \
        ("mlp.hook_in", "mlp.hook_out")
    assert fields["activations"] == ["relu"] * 3 and fields["skip_connection"] is False
    assert fields["model_name"] == str(tiny_gpt2)
    # its replacement model's hooks read what sae-kit's mlp_in/mlp_out read, and it traces
    assert fields["hook_vs_hf_max_abs"] < 1e-4 and fields["graph_nodes"] > 0
    got = load_file(str(tmp_path / "got.safetensors"))
    for i in range(3):
        sae, _ = load_sae_dir(run / HookPoint(i, "mlp_in").name)
        with torch.no_grad():
            want = sae(x[i])
        for how in ("eager", "lazy"):
            torch.testing.assert_close(got[f"{how}.forward.{i}"], want.output, rtol=1e-5,
                                       atol=1e-5)
            torch.testing.assert_close(got[f"{how}.encode.{i}"], want.codes, rtol=1e-5,
                                       atol=1e-5)


@pytest.mark.parametrize("make, message", [
    (lambda r: [_sae_dir(r, 0), _sae_dir(r, 1, arch=TopKSAE, k=4)],
     "'topk'; circuit-tracer's loader makes ReLU or JumpReLU codes only"),
    (lambda r: [_sae_dir(r, 0), _sae_dir(r, 1, skip=False)], "differ in skips"),
    (lambda r: [_sae_dir(r, 0), _sae_dir(r, 1, n=2 * N)], "differ in widths"),
    (lambda r: [_sae_dir(r, 0), _sae_dir(r, 1, hook=HookPoint(1, "attn_out"))],
     "differ in hook points (layer 0: mlp.hook_in -> mlp.hook_out, layer 1: "
     "hook_attn_out -> mlp.hook_out)"),
    (lambda r: [_sae_dir(r, 0), _sae_dir(r, 2)], "no transcoder at layer 1; circuit-tracer "
     "needs one at every layer 0..2"),
    (lambda r: [_sae_dir(r, 0, output=HookPoint(0, "resid_post"))],
     "writes blocks.0.hook_resid_post; circuit-tracer's transcoders replace the MLP"),
    (lambda r: [_sae_dir(r, 0, hook=HookPoint(0, "module", "transformer.h.0.mlp.c_fc"))],
     "reads transformer.h.0.mlp.c_fc, which circuit-tracer has no hook for"),
])
def test_what_circuit_tracer_cannot_load_is_one_line(tmp_path, make, message):
    result = _export(*make(tmp_path / "in"), tmp_path / "ct")
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "ct").exists()  # refused before anything is written


def test_a_plain_sae_and_missing_layers_of_a_run_are_one_line(run, tmp_path):
    from tests.helpers import make_sae_dir

    plain = _export(make_sae_dir(tmp_path / "sae", layer=0), tmp_path / "ct")
    assert plain.exit_code == 2 and "is no transcoder; circuit-tracer loads transcoders" in \
        plain.output
    one = _export(run / HookPoint(1, "mlp_in").name, tmp_path / "ct1")
    assert one.exit_code == 2, one.output
    assert "no transcoder at layers 0, 2; circuit-tracer needs one at every layer 0..2" in \
        one.output  # the run's record says the model has 3 layers
    twice = _export(run, run / HookPoint(1, "mlp_in").name, tmp_path / "ct2")
    assert twice.exit_code == 2 and "two transcoders at layer 1" in twice.output
    saelens = CliRunner().invoke(app, ["export", str(run), str(run), str(tmp_path / "sl")])
    assert saelens.exit_code == 2 and "the saelens layout takes one SAE or run" in \
        saelens.output
