"""Loads a `sae-kit export --format circuit-tracer` directory with circuit-tracer's own code.

    python tests/store/circuit_tracer_probe.py EXPORT_DIR INPUTS.safetensors RESULT.safetensors \
        [HF_MODEL]

Runs in any interpreter where circuit-tracer is installed (it pins transformers<=4.57.3, sae-kit
needs >=5, so usually another venv): imports nothing from sae-kit. Writes each layer's
``forward`` and ``encode`` of the inputs, eagerly and lazily loaded, and prints the set's
fields as JSON. With HF_MODEL (a GPT-2 directory) it also builds circuit-tracer's
TransformerLens replacement model on those weights, checks its ``mlp.hook_in``/``mlp.hook_out``
activations against Hugging Face's MLP input and output, and traces an attribution graph.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from circuit_tracer.utils.caching import load_transcoders_from_cache
from safetensors.torch import load_file, save_file


def _load(export: Path, lazy: bool):
    # The local-directory entry point: reads config.yaml, globs layer_*.safetensors.
    return load_transcoders_from_cache(export.name, cache_dir=export.parent,
                                       device=torch.device("cpu"), dtype=torch.float32,
                                       lazy_encoder=lazy, lazy_decoder=lazy)


def _tokenizer(hf_dir: str):
    """The model's tokenizer for transformers 4.57: transformers 5 saved a class name 4.57 lacks
    (TokenizersBackend), and TransformerLens reloads it by path, so a copy names the fast one."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer

    copy = Path(tempfile.mkdtemp(prefix="ct-tokenizer-"))
    for name in ("tokenizer.json", "special_tokens_map.json"):
        if (Path(hf_dir) / name).exists():
            shutil.copy(Path(hf_dir) / name, copy / name)
    config = json.loads((Path(hf_dir) / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    return AutoTokenizer.from_pretrained(copy)


def _replacement_model(transcoders, hf_dir: str) -> dict:
    from circuit_tracer import ReplacementModel, attribute
    from transformer_lens import HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights
    from transformers import GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(hf_dir).eval()
    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, n_heads=c.n_head, d_head=c.n_embd // c.n_head,
        d_mlp=4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn="gelu_new",
        normalization_type="LN", device="cpu")
    model = ReplacementModel.from_config(cfg, transcoders, tokenizer=_tokenizer(hf_dir))
    # circuit-tracer wrapped each MLP and the unembedding (old_mlp, old_unembed): every weight
    # converted from Hugging Face must land
    weights = {k.replace(".mlp.", ".mlp.old_mlp.").replace("unembed.", "unembed.old_unembed."): v
               for k, v in convert_gpt2_weights(hf, cfg).items()}
    unexpected = model.load_state_dict(weights, strict=False).unexpected_keys
    assert not unexpected, unexpected
    # Starts with the special token (id 0 here), which circuit-tracer would otherwise prepend;
    # its search for one skips id 0 (filter(None, ...)) and finds none in this tokenizer.
    ids = torch.tensor([[0, *range(5, 13)]])
    seen: dict[str, torch.Tensor] = {}
    hooks = [(f"blocks.{i}.{name}", lambda a, hook: seen.__setitem__(hook.name, a))
             for i in range(c.n_layer)
             for name in (transcoders.feature_input_hook, transcoders.feature_output_hook)]
    with torch.no_grad():
        model.run_with_hooks(ids, fwd_hooks=hooks)
    hf_acts: dict[str, torch.Tensor] = {}
    handles = [m.register_forward_hook(lambda mod, inp, out, i=i: hf_acts.update(
        {f"in{i}": inp[0], f"out{i}": out})) for i, m in enumerate(b.mlp for b in hf.transformer.h)]
    with torch.no_grad():
        hf(ids)
    for h in handles:
        h.remove()
    worst = max(max((seen[f"blocks.{i}.{transcoders.feature_input_hook}"] - hf_acts[f"in{i}"])
                    .abs().max().item(),
                    (seen[f"blocks.{i}.{transcoders.feature_output_hook}"] - hf_acts[f"out{i}"])
                    .abs().max().item()) for i in range(c.n_layer))
    graph = attribute(ids[0], model, max_n_logits=3, batch_size=16)
    return {"hook_vs_hf_max_abs": worst, "graph_nodes": int(graph.adjacency_matrix.shape[0]),
            "graph_active_features": int(graph.active_features.shape[0])}


def _name(activation) -> str:
    return getattr(activation, "__name__", type(activation).__name__)  # F.relu or JumpReLU


def main(export: str, inputs: str, result: str, hf_dir: str | None = None) -> None:
    x = load_file(inputs)["x"]
    out, fields = {}, {}
    for lazy in (False, True):
        transcoders, config = _load(Path(export), lazy)
        for i, t in enumerate(transcoders):
            with torch.no_grad():
                out[f"{'lazy' if lazy else 'eager'}.forward.{i}"] = t(x[i]).contiguous()
                out[f"{'lazy' if lazy else 'eager'}.encode.{i}"] = t.encode(x[i]).contiguous()
        fields = {"n_layers": transcoders.n_layers, "d_transcoder": transcoders.d_transcoder,
                  "feature_input_hook": transcoders.feature_input_hook,
                  "feature_output_hook": transcoders.feature_output_hook,
                  "skip_connection": transcoders.skip_connection,
                  "model_name": config.get("model_name"),
                  "activations": [_name(t.activation_function) for t in transcoders]}
    if hf_dir:
        fields.update(_replacement_model(transcoders, hf_dir))
    save_file(out, result)
    print(json.dumps(fields))


if __name__ == "__main__":
    main(*sys.argv[1:])
