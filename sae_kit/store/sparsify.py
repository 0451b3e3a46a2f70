"""EleutherAI sparsify's SAE directories, read as sae-kit SAEs (``sae-kit train --init-from``).

sparsify saves one directory per hook point, named after the module it hooked (``layers.6``,
``h.6``, ``gpt_neox.layers.6``): ``cfg.json`` (its ``SparseCoderConfig`` fields plus ``d_in``)
and ``sae.safetensors`` (``encoder.weight [num_latents, d_in]``, ``encoder.bias``,
``W_dec [num_latents, d_in]``, ``b_dec``). Its SAE is TopK over ``relu(encoder(x - b_dec))``
and decodes with ``W_dec``'s rows plus ``b_dec``: sae-kit's ``topk`` with ``b_dec`` folded into
the encoder bias and the (unit, by default) row norms into the encoder. A module's output is the
residual stream after that layer, so ``layers.6`` is ``blocks.6.hook_resid_post``.

Transcoders, skip connections, n-gram lookups and groupmax activations have no sae-kit
equivalent: they are refused, each by name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.decoder_norms import fold_decoder_norms, fold_input_bias, one_norm_scale
from sae_kit.store.jsonio import read_json

CFG = "cfg.json"
WEIGHTS = "sae.safetensors"
_LAYER_MODULE = re.compile(r"^(?:.+\.)?(?:layers|h)\.(\d+)$")
# Options that change what the SAE computes in ways sae-kit's topk cannot.
_UNSUPPORTED = ("transcode", "skip_connection", "embed_skip", "gram_lookup")


def is_sparsify_dir(path: Path) -> bool:
    """sparsify writes cfg.json + sae.safetensors; SAELens names its weights differently."""
    return (path / CFG).is_file() and (path / WEIGHTS).is_file()


def hook_point_of(module: str) -> HookPoint | None:
    """The residual-stream hook point a sparsify module name reads (its output), if any."""
    match = _LAYER_MODULE.match(module)
    return HookPoint(int(match.group(1)), "resid_post") if match else None


def read_sparsify(src: str | Path, hook_point: HookPoint | None = None
                  ) -> tuple[SAE, HookPoint, dict[str, Any]]:
    """One sparsify SAE directory as an sae-kit ``topk`` SAE (CPU, fp32), its hook point
    (from the directory's name, or ``hook_point``) and provenance."""
    src = Path(src)
    cfg = read_json(src / CFG)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("d_in"), int):
        raise SaeKitError(f"{str(src / CFG)!r} is not a sparsify cfg.json (no whole-number d_in)")
    hook = hook_point or hook_point_of(src.name)
    problems = [f"{name} is true" for name in _UNSUPPORTED if cfg.get(name)]
    if cfg.get("activation", "topk") != "topk":
        problems.append(f"activation {cfg['activation']!r} (only topk imports)")
    if hook is None:
        problems.append(f"its directory name {src.name!r} is no layer output (layers.N or h.N); "
                        "name the hook point with --hook-point")
    if problems:
        raise SaeKitError(f"cannot use sparsify SAE {str(src)!r}: {'; '.join(problems)}")
    d_in = cfg["d_in"]
    state, eps = _read_weights(src / WEIGHTS, d_in)
    n_dict = state["W_dec"].shape[0]
    k = cfg.get("k", 32)
    fold_input_bias(state)  # sparsify encodes x - b_dec
    norms = state["W_dec"].norm(dim=1)
    scale = one_norm_scale(norms, eps, str(src), "and sparsify picks the top k before any "
                           "scaling by them")
    sae = plugins.load("architectures", "topk")(d_in, n_dict, k=k)
    sae.load_state_dict(fold_decoder_norms(state, norms, scale))
    return sae, hook, {"imported_from": {"format": "sparsify", "path": str(src)}}


def _read_weights(path: Path, d_in: int) -> tuple[dict[str, torch.Tensor], float]:
    """The weights in SAELens' layout (W_enc [d_in, d_sae]) as float32, and their precision."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        stored = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise SaeKitError(f"{str(path)!r} is corrupt ({first_line(exc)})") from None
    need = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
    missing = [k for k in need if k not in stored]
    if missing:
        raise SaeKitError(f"{str(path)!r} lacks {', '.join(missing)}: not a sparsify SAE "
                          "(a decoder-less one cannot be fine-tuned)")
    eps = max(torch.finfo(stored[k].dtype).eps for k in need)
    enc, dec = stored["encoder.weight"].float(), stored["W_dec"].float()
    n_dict = enc.shape[0]
    shapes = {"encoder.weight": (n_dict, d_in), "encoder.bias": (n_dict,),
              "W_dec": (n_dict, d_in), "b_dec": (d_in,)}
    wrong = [f"{k} {tuple(stored[k].shape)} (want {shape})" for k, shape in shapes.items()
             if tuple(stored[k].shape) != shape]
    if wrong:
        raise SaeKitError(f"{str(path)!r} does not match its cfg.json (d_in {d_in}): "
                          f"{', '.join(wrong)}")
    return {"W_enc": enc.T.contiguous(), "b_enc": stored["encoder.bias"].float(),
            "W_dec": dec, "b_dec": stored["b_dec"].float()}, eps
