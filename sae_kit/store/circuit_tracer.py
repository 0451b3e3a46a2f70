"""Per-layer transcoders in circuit-tracer's layout, so its ``ReplacementModel`` traces with them.

    sae-kit export --format circuit-tracer runs/gpt2-tc/ ct/   # config.yaml + layer_L.safetensors

Matched against circuit-tracer 0.5.0's own loader. A transcoder set is a directory with
``config.yaml`` (``model_kind: transcoder_set``, ``feature_input_hook``,
``feature_output_hook``, ``model_name``) and ``layer_{L}.safetensors`` for every layer L from 0
(``utils/caching.py`` ``load_transcoders_from_cache`` globs these names; on the Hub
``utils/hf_utils.py`` ``resolve_transcoder_paths`` does). Each file is read by
``transcoder/single_layer_transcoder.py`` ``load_relu_transcoder`` into a
``SingleLayerTranscoder``: ``W_enc`` [d_transcoder, d_model] (sae-kit's ``W_enc`` as is),
``W_dec`` [d_transcoder, d_model] (sae-kit's decoder with its column normalisation folded in,
transposed), ``b_enc``, ``b_dec``, optional ``W_skip`` [d_model, d_model] added as
``x @ W_skip.T`` (sae-kit's skip exactly) and optional ``activation_function.threshold``, which
makes the code JumpReLU ``z * (z > threshold)``; without it the code is ``relu(z)``. Neither
subtracts ``b_dec`` from the input, nor does sae-kit. ``load_state_dict`` is strict: no other key.

What it cannot express is refused in one line before anything is written: an SAE that is no
transcoder, ``topk`` (the loader makes only ReLU or JumpReLU codes), a hook point TransformerLens
has no name for, a transcoder writing anywhere but the MLP output of its own layer (the
replacement model swaps out MLPs), different hook points, widths or skips across layers (the
config names one pair of hooks; ``TranscoderSet`` asserts one d_transcoder and reads the skip
from layer 0), and a missing layer (the set must cover layers 0..n_layers - 1). ``batchtopk`` and
``matryoshka`` are written as JumpReLU with their threshold, as SAELens saves them for inference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.files import save_tensors
from sae_kit.store.jsonio import read_json
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import CONFIG as SAE_CONFIG
from sae_kit.store.sae_dir import WEIGHTS, load_sae_dir, output_hook_point, sae_dirs
from sae_kit.store.saelens import fresh_dir
from sae_kit.store.staging import staged_dir
from sae_kit.version import __version__

CONFIG = "config.yaml"
LAYER_FILE = "layer_{}.safetensors"
CODES = {"relu": "relu", "jumprelu": "jumprelu", "batchtopk": "jumprelu",
         "matryoshka": "jumprelu"}
"""sae-kit architecture -> the code circuit-tracer's loader gives it (jumprelu: a threshold)."""
# Hook names relative to ``blocks.L`` in circuit-tracer's TransformerLens replacement model:
# it wraps each block's MLP in a module with ``hook_in`` (the MLP's input, the normed residual
# since it loads TransformerLens with fold_ln=False) and ``hook_out`` (the MLP's output).
INPUT_HOOKS = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out",
               "mlp_in": "mlp.hook_in"}
OUTPUT_HOOK = "mlp.hook_out"


def sources_transcoders(sources: list[Path]) -> tuple[dict[int, Path], int | None]:
    """The SAE directories of run directories and SAE directories, by layer, and the model's
    layer count where a run record says it."""
    by_layer: dict[int, Path] = {}
    n_layers = None
    for source in sources:
        one = (source / WEIGHTS).is_file()  # an SAE directory (its config.json is its own)
        run = RunDir(source.parent if one else source)
        if run.is_run():  # a run's record says how many layers the set must cover
            n_layers = run.read().resolved.n_layers
        dirs = [source] if one else list(sae_dirs(source).values())
        for d in dirs:
            layer = HookPoint.parse(str(read_json(d / SAE_CONFIG)["hook_point"])).layer
            if layer in by_layer:
                raise SaeKitError(f"two transcoders at layer {layer} ({str(by_layer[layer])!r} "
                                  f"and {str(d)!r}); circuit-tracer takes one per layer")
            by_layer[layer] = d
    return dict(sorted(by_layer.items())), n_layers


def export_circuit_tracer(sources: list[Path], out: Path) -> Path:
    """Write the transcoders of ``sources`` (run or SAE directories) as one transcoder set."""
    by_layer, n_layers = sources_transcoders(sources)
    configs = {layer: read_json(d / SAE_CONFIG) for layer, d in by_layer.items()}
    hooks = _check_set(configs, n_layers)
    model = next(iter(configs.values())).get("model")
    fresh_dir(out)  # new or empty, as for the saelens layout: nothing is overwritten
    with staged_dir(out, "circuit-tracer export", last=CONFIG) as tmp:
        for layer, d in by_layer.items():  # one layer in memory at a time
            _save_layer(d, tmp / LAYER_FILE.format(layer))
        (tmp / CONFIG).write_text(_config_yaml(hooks, model, configs))
    return out


def _check_set(configs: dict[int, dict[str, Any]], n_layers: int | None) -> tuple[str, str]:
    """The set's (feature_input_hook, feature_output_hook), or one line saying what is wrong."""
    hooks = {layer: _hooks(layer, c) for layer, c in configs.items()}
    per_layer = {"hook points": {i: " -> ".join(h) for i, h in hooks.items()},
                 "widths": {i: c["n_dict"] for i, c in configs.items()},
                 "skips": {i: bool(c.get("skip")) for i, c in configs.items()},
                 "models": {i: c.get("model") for i, c in configs.items()}}
    for what, seen in per_layer.items():
        if len(set(map(str, seen.values()))) > 1:
            listed = ", ".join(f"layer {layer}: {v}" for layer, v in seen.items())
            raise SaeKitError(f"these transcoders differ in {what} ({listed}); circuit-tracer "
                              "loads a set with one of each")
    want = n_layers if n_layers is not None else max(configs) + 1
    missing = [layer for layer in range(want) if layer not in configs]
    if missing:
        raise SaeKitError(f"no transcoder at layer{'s' if len(missing) > 1 else ''} "
                          f"{', '.join(map(str, missing))}; circuit-tracer needs one at every "
                          f"layer 0..{want - 1} (train them with one run, --hook at each layer)")
    return next(iter(hooks.values()))


def _hooks(layer: int, config: dict[str, Any]) -> tuple[str, str]:
    source = f"the SAE at {config['hook_point']}"
    if not config.get("output_hook_point"):
        raise SaeKitError(f"{source} is no transcoder; circuit-tracer loads transcoders (train "
                          "with --hook mlp_in --transcoder-output mlp_out)")
    arch = config["architecture"]
    if arch not in CODES:
        raise SaeKitError(f"{source} is {arch!r}; circuit-tracer's loader makes ReLU or JumpReLU "
                          f"codes only, so it exports from: {', '.join(CODES)}")
    hook, output = HookPoint.parse(str(config["hook_point"])), output_hook_point(config)
    if hook.kind not in INPUT_HOOKS:
        raise SaeKitError(f"{source} reads {hook.name}, which circuit-tracer has no hook for; it "
                          f"reads {', '.join(f'blocks.L.hook_{k}' for k in INPUT_HOOKS)}")
    if (output.kind, output.layer) != ("mlp_out", layer):
        raise SaeKitError(f"{source} writes {output.name}; circuit-tracer's transcoders replace "
                          f"the MLP of their own layer (blocks.{layer}.hook_mlp_out)")
    return INPUT_HOOKS[hook.kind], OUTPUT_HOOK


def circuit_tracer_state(sae_dir: Path) -> dict[str, torch.Tensor]:
    """One transcoder's tensors under the names ``load_relu_transcoder`` reads."""
    sae, config = load_sae_dir(sae_dir)
    with torch.no_grad():
        state = {"W_enc": sae.W_enc, "W_dec": sae.dict_elements.T, "b_enc": sae.b_enc,
                 "b_dec": sae.b_dec}
        if CODES[config["architecture"]] == "jumprelu":
            state["activation_function.threshold"] = sae.threshold.detach().expand(sae.n_dict)
        if sae.W_skip is not None:
            state["W_skip"] = sae.W_skip
        return {k: v.detach().float().contiguous().clone() for k, v in state.items()}


def _save_layer(sae_dir: Path, path: Path) -> None:
    save_tensors(circuit_tracer_state(sae_dir), path, metadata={"format": "pt"})


def _config_yaml(hooks: tuple[str, str], model: Any, configs: dict[int, dict[str, Any]]) -> str:
    # JSON strings are YAML scalars, so no YAML library is needed to write one safely.
    fields = {"model_kind": "transcoder_set", "feature_input_hook": hooks[0],
              "feature_output_hook": hooks[1]}
    if isinstance(model, str):
        fields["model_name"] = model
    lines = [f"# circuit-tracer transcoder set written by sae-kit {__version__}; raw Hugging "
             "Face activations (TransformerLens with fold_ln=False reads the same)"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in fields.items()]
    lines.append("sae_kit_hook_points:")  # provenance; circuit-tracer reads the keys above
    lines += [f"  {layer}: {json.dumps(str(c['hook_point']))}" for layer, c in configs.items()]
    return "\n".join(lines) + "\n"
