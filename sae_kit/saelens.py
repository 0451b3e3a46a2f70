"""The SAELens on-disk layout, so sae-kit SAEs load in SAELens and Neuronpedia tooling.

    sae-kit export --format saelens runs/.../blocks.6.hook_resid_pre out/   # cfg.json + weights
    sae-kit import --format saelens out/ back/                               # and the reverse

SAELens' "standard" SAE computes ``relu(x @ W_enc + b_enc) @ W_dec + b_dec`` with
``W_enc [d_in, d_sae]`` and ``W_dec [d_sae, d_in]``; sae-kit's ReLU SAE is the same with the
matrices transposed and the decoder columns renormalised in every forward pass. Export folds
that normalisation into ``W_dec``. Import accepts any decoder norms: a row of norm n becomes a
unit decoder column and its encoder row and bias are scaled by n (``relu(z) * n = relu(z * n)``
for n > 0), so the reconstruction is unchanged and only the codes are rescaled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from sae_kit import __version__, plugins
from sae_kit.errors import SaeKitError
from sae_kit.hookpoints import HookPoint
from sae_kit.sae_io import load_sae as load_sae_dir
from sae_kit.sae_io import read_json, save_sae, write_json_atomic

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
# sae-kit architecture -> SAELens architecture computing the same function.
ARCHITECTURES = {"relu": "standard"}
# TransformerLens must not centre the residual stream: sae-kit SAEs read raw HF activations.
TL_KWARGS = {"fold_ln": False, "center_writing_weights": False, "center_unembed": False}


def export_saelens(sae_dir: str | Path, out: str | Path) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` for one SAE directory into ``out``."""
    from safetensors.torch import save_file

    sae, config = load_sae_dir(sae_dir)
    if sae.name not in ARCHITECTURES:
        raise SaeKitError(f"no SAELens equivalent for the {sae.name!r} architecture; SAELens "
                          f"export supports: {', '.join(ARCHITECTURES)}")
    hook = HookPoint.parse(config["hook_point"])
    with torch.no_grad():
        state = {
            "W_enc": sae.W_enc.T.contiguous(),
            "b_enc": sae.b_enc.clone(),
            "W_dec": sae.dict_elements.T.contiguous(),  # decoder normalisation folded in
            "b_dec": sae.b_dec.clone(),
        }
    out = _fresh_dir(out)
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(out / WEIGHTS),
              metadata={"format": "pt"})
    write_json_atomic(out / CFG, _cfg(config, hook, ARCHITECTURES[sae.name]))
    return out


def _cfg(config: dict[str, Any], hook: HookPoint, architecture: str) -> dict[str, Any]:
    # The flat (pre-6.0) layout: SAELens 6 converts it on load, older versions read it as is.
    return {
        "architecture": architecture,
        "d_in": config["d_in"],
        "d_sae": config["n_dict"],
        "dtype": "float32",
        "device": "cpu",
        "model_name": config.get("model"),
        "hook_name": hook.name,
        "hook_layer": hook.layer,
        "hook_head_index": None,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": False,
        "finetuning_scaling_factor": False,
        "normalize_activations": "none",
        "context_size": config.get("context"),
        "dataset_path": config.get("dataset"),
        "dataset_trust_remote_code": False,
        "prepend_bos": False,  # sae-kit windows carry no BOS token (docs/conventions.md)
        "sae_lens_training_version": None,
        "model_from_pretrained_kwargs": {**TL_KWARGS, **_revision(config)},
        "neuronpedia_id": None,
        "sae_kit": {**config, "sae_kit_version": __version__},  # provenance; SAELens ignores it
    }


def _revision(config: dict[str, Any]) -> dict[str, Any]:
    return {"revision": config["revision"]} if config.get("revision") else {}


def import_saelens(src: str | Path, out: str | Path) -> Path:
    """Turn an SAELens SAE directory (standard architecture) into an sae-kit SAE directory."""
    src = Path(src)
    cfg = read_json(src / CFG)
    flat = {**(cfg.get("metadata") or {}), **cfg}  # SAELens 6 nests model/hook fields
    hook = _check_importable(flat, src)
    state = _read_weights(src / WEIGHTS, int(flat["d_in"]), int(flat["d_sae"]))
    W_enc, b_enc, W_dec, b_dec = (state[k] for k in ("W_enc", "b_enc", "W_dec", "b_dec"))
    if flat.get("apply_b_dec_to_input", True):  # SAELens' pre-6.0 default is True
        b_enc = b_enc - b_dec @ W_enc  # (x - b_dec) @ W_enc + b_enc, folded into the bias
    norms = W_dec.norm(dim=1)
    dead = norms == 0  # a zero decoder row never contributes: keep its codes at zero
    scale = torch.where(dead, torch.zeros_like(norms), norms)
    unit = torch.where(dead[:, None], torch.eye(1, W_dec.shape[1]).expand_as(W_dec),
                       W_dec / norms.clamp_min(1e-30)[:, None])
    sae = plugins.load("architectures", "relu")(int(flat["d_in"]), int(flat["d_sae"]))
    sae.load_state_dict({"W_enc": (W_enc * scale).T.contiguous(), "b_enc": b_enc * scale,
                         "W_dec": unit.T.contiguous(), "b_dec": b_dec})
    kit = cfg.get("sae_kit") or {}
    extra = {
        "model": kit.get("model", flat.get("model_name")), "revision": kit.get("revision"),
        "model_type": kit.get("model_type"), "loss": kit.get("loss"),
        "sparsity_coeff": kit.get("sparsity_coeff"), "dataset": flat.get("dataset_path"),
        "context": flat.get("context_size"), "tokens_trained": kit.get("tokens_trained"),
        "imported_from": {"format": "saelens", "path": str(src)},
    }
    return save_sae(sae, hook, _fresh_dir(out), extra)


def _check_importable(flat: dict[str, Any], src: Path) -> HookPoint:
    problems = []
    if flat.get("architecture", "standard") != "standard":
        problems.append(f"architecture {flat['architecture']!r} (only 'standard' imports)")
    act = flat.get("activation_fn_str", flat.get("activation_fn", "relu"))
    if act != "relu":
        problems.append(f"activation {act!r} (only relu imports)")
    if flat.get("normalize_activations") not in (None, False, "none"):
        problems.append(f"normalize_activations {flat['normalize_activations']!r}")
    if flat.get("reshape_activations", "none") != "none":
        problems.append(f"reshape_activations {flat['reshape_activations']!r}")
    missing = [k for k in ("d_in", "d_sae", "hook_name") if flat.get(k) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if problems:
        raise SaeKitError(f"cannot import {str(src)!r}: {'; '.join(problems)}")
    return HookPoint.parse(str(flat["hook_name"]))


def _read_weights(path: Path, d_in: int, d_sae: int) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise SaeKitError(f"{str(path)!r} is missing")
    try:
        state = {k: v.float() for k, v in load_file(str(path)).items()}
    except (SafetensorError, OSError) as exc:
        raise SaeKitError(f"{str(path)!r} is corrupt ({str(exc).splitlines()[0]})") from None
    scaling = state.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise SaeKitError(f"{str(path)!r} has a finetuning scaling factor; sae-kit cannot "
                          "represent it")
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    wrong = [f"{k} {tuple(state[k].shape) if k in state else 'missing'} (want {shape})"
             for k, shape in shapes.items() if k not in state or tuple(state[k].shape) != shape]
    if wrong:
        raise SaeKitError(f"{str(path)!r} does not match its cfg.json: {', '.join(wrong)}")
    return state


def _fresh_dir(out: str | Path) -> Path:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SaeKitError(f"{str(out)!r} already exists and is not empty; choose a new directory")
    out.mkdir(parents=True, exist_ok=True)
    return out
