"""The SAELens on-disk layout, so sae-kit SAEs load in SAELens and Neuronpedia tooling.

    sae-kit export --format saelens runs/.../blocks.6.hook_resid_pre out/   # cfg.json + weights
    sae-kit import --format saelens out/ back/                               # and the reverse

SAELens' "standard" SAE computes ``relu(x @ W_enc + b_enc) @ W_dec + b_dec`` with
``W_enc [d_in, d_sae]`` and ``W_dec [d_sae, d_in]``; sae-kit's ReLU SAE is the same with the
matrices transposed and the decoder columns renormalised in every forward pass. Export folds
that normalisation into ``W_dec``. Import accepts any decoder norms: a row of norm n becomes a
unit decoder column and its encoder row and bias are scaled by n (``relu(z) * n = relu(z * n)``
for n > 0), so the reconstruction is unchanged and only the codes are rescaled.

SAELens' "topk" SAE keeps the k largest pre-activations and ReLUs them; sae-kit's ``topk`` ReLUs
and keeps the k largest, the same codes. Scaling pre-activations by the decoder row norms changes
which k win, so import folds the norms only where SAELens itself ranks the scaled ones
(``rescale_acts_by_decoder_norm``); otherwise all rows must have one norm (up to the rounding of
the stored precision) and their mean is folded in as a single factor. Anything else is refused.

SAELens' "jumprelu" SAE computes ``relu(z) * (z > threshold)`` per latent; sae-kit's ``jumprelu``
is ``z * (z > theta)`` with theta > 0, the same codes. ``batchtopk`` and ``matryoshka`` are saved,
as SAELens saves its own for inference, as JumpReLU with their threshold theta for every latent.
Decoder norms fold into a JumpReLU SAE's threshold too (``n z > n theta`` iff ``z > theta``).
Importing such a file gives a ``jumprelu`` SAE, unless its ``sae_kit`` provenance says it was
exported from ``batchtopk``/``matryoshka`` and its thresholds are one value: that architecture
comes back, with its options.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.errors import SaeKitError, first_line
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.decoder_norms import fold_decoder_norms, fold_input_bias, one_norm_scale
from sae_kit.store.files import write_bytes_atomic
from sae_kit.store.jsonio import read_json
from sae_kit.store.sae_dir import load_sae_dir, save_sae
from sae_kit.store.saelens_transcoders import read_transcoder, transcoder_cfg
from sae_kit.store.tl_names import from_transformer_lens, to_transformer_lens
from sae_kit.version import __version__

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
# sae-kit architecture -> SAELens architecture computing the same function, and back.
ARCHITECTURES = {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu",
                 "batchtopk": "jumprelu", "matryoshka": "jumprelu"}
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
ACTIVATIONS = {"standard": "relu", "topk": "topk", "jumprelu": "relu"}
# Architectures saved as JumpReLU with one threshold for all latents (a scalar buffer).
ONE_THRESHOLD = ("batchtopk", "matryoshka")
# Why a TopK-ranked SAE's decoder rows must share one norm (see one_norm_scale).
_WHY_ONE_NORM = ("and rescale_acts_by_decoder_norm is false, so SAELens picks the top k before "
                 "scaling by them")
# TransformerLens must not centre the residual stream: sae-kit SAEs read raw HF activations.
TL_KWARGS = {"fold_ln": False, "center_writing_weights": False, "center_unembed": False}


def export_saelens(sae_dir: str | Path, out: str | Path) -> Path:
    """Write ``cfg.json`` + ``sae_weights.safetensors`` for one SAE directory into ``out``."""
    files = saelens_files(sae_dir)
    out = fresh_dir(out)
    for name, data in files.items():
        write_bytes_atomic(out / name, data)
    return out


def saelens_files(sae_dir: str | Path) -> dict[str, bytes]:
    """One SAE directory in SAELens' layout: ``{CFG: ..., WEIGHTS: ...}`` as bytes.

    ``sae-kit export`` writes them into a folder; ``sae-kit push`` uploads them beside sae-kit's
    own files, so ``SAE.from_pretrained(repo, hook_point)`` finds them.
    """
    import json

    from safetensors.torch import save

    sae, config = load_sae_dir(sae_dir)
    transcoder = transcoder_cfg(sae.name, config, sae.W_skip is not None)
    if sae.name not in ARCHITECTURES:
        raise SaeKitError(f"no SAELens equivalent for the {sae.name!r} architecture; SAELens "
                          f"export supports: {', '.join(ARCHITECTURES)}")
    hook = HookPoint.parse(config["hook_point"])
    hook_name = to_transformer_lens(hook)  # before anything is written
    with torch.no_grad():
        state = {
            "W_enc": sae.W_enc.T.contiguous(),
            "b_enc": sae.b_enc.clone(),
            "W_dec": sae.dict_elements.T.contiguous(),  # decoder normalisation folded in
            "b_dec": sae.b_dec.clone(),
        }
        if ARCHITECTURES[sae.name] == "jumprelu":  # a per-latent threshold, as SAELens reads it
            state["threshold"] = sae.threshold.detach().expand(sae.n_dict).clone()
        if sae.W_skip is not None:  # [d_out, d_in], added as x @ W_skip.T in both
            state["W_skip"] = sae.W_skip.detach().clone()
    weights = save({k: v.float().contiguous() for k, v in state.items()},
                   metadata={"format": "pt"})
    cfg = {**_cfg(config, hook, hook_name), **_arch_cfg(sae.name, dataclasses.asdict(sae.opts)),
           **transcoder}
    return {CFG: (json.dumps(cfg, indent=2, default=str) + "\n").encode(), WEIGHTS: weights}


def _arch_cfg(name: str, options: dict[str, Any]) -> dict[str, Any]:
    if name == "topk":  # k as SAELens 6 reads it (top level) and as pre-6 versions did (kwargs)
        return {"architecture": "topk", "k": options["k"], "activation_fn_str": "topk",
                "activation_fn_kwargs": {"k": options["k"]},
                "rescale_acts_by_decoder_norm": False}  # rows are unit norm already
    return {"architecture": ARCHITECTURES[name], "activation_fn_str": "relu",
            "activation_fn_kwargs": {}}


def _cfg(config: dict[str, Any], hook: HookPoint, hook_name: str) -> dict[str, Any]:
    # The flat (pre-6.0) layout: SAELens 6 converts it on load, older versions read it as is.
    return {
        "d_in": config["d_in"],
        "d_sae": config["n_dict"],
        "dtype": "float32",
        "device": "cpu",
        "model_name": config.get("model"),
        "hook_name": hook_name,
        "hook_layer": hook.layer,
        "hook_head_index": None,
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
    """Turn an SAELens SAE directory (standard, topk or jumprelu) into an sae-kit SAE directory."""
    sae, hook, extra, output = read_saelens(src)
    return save_sae(sae, hook, fresh_dir(out), extra, output=output)


def read_saelens(src: str | Path
                 ) -> tuple[SAE, HookPoint, dict[str, Any], HookPoint | None]:
    """An SAELens SAE directory as an sae-kit SAE (CPU, fp32), its hook point, provenance and
    (a transcoder) the hook point its output replaces."""
    src = Path(src)
    cfg = read_json(src / CFG)
    flat = {**(cfg.get("metadata") or {}), **cfg}  # SAELens 6 nests model/hook fields
    flat, output, skip = read_transcoder(flat)
    hook, arch, options = _check_importable(flat, src)
    d_in, d_sae = int(flat["d_in"]), int(flat["d_sae"])
    kit = cfg.get("sae_kit") or {}
    state, eps = _read_weights(src / WEIGHTS, d_in, d_sae, arch == "jumprelu", skip)
    if flat.get("apply_b_dec_to_input", True):  # SAELens' pre-6.0 default is True
        fold_input_bias(state)
    norms = scale = state["W_dec"].norm(dim=1)
    threshold = state.pop("threshold", None)
    if arch == "jumprelu":
        arch, options = _jumprelu_kind(kit, threshold, _one_norm(norms, src, eps))
    if arch in ("topk", *ONE_THRESHOLD) and not flat.get("rescale_acts_by_decoder_norm", False):
        # SAELens ranks the unscaled pre-activations: one factor for all keeps its top k
        scale = one_norm_scale(norms, eps, str(src), _WHY_ONE_NORM)
    sae = plugins.load("architectures", arch)(d_in, d_sae, **options)
    folded = fold_decoder_norms(state, norms, scale)
    if skip:  # the skip reads the input, not the codes: no decoder norm touches it
        sae.add_skip()
        folded["W_skip"] = state["W_skip"]
    if threshold is not None:  # n z > n theta iff z > theta; a dead latent keeps its theta
        theta = torch.where(scale > 0, threshold * scale, threshold)
        if arch == "jumprelu":
            folded["log_threshold"] = theta.log()
        else:
            folded["threshold"] = theta[0].clone()
    state_dict = sae.state_dict()
    sae.load_state_dict({**state_dict, **folded})  # buffers not in the file keep their start
    extra = {
        "model": kit.get("model", flat.get("model_name")), "revision": kit.get("revision"),
        "model_type": kit.get("model_type"), "loss": kit.get("loss"),
        "sparsity_coeff": kit.get("sparsity_coeff"), "dataset": flat.get("dataset_path"),
        "context": flat.get("context_size"), "tokens_trained": kit.get("tokens_trained"),
        "imported_from": {"format": "saelens", "path": str(src)},
    }
    return sae, hook, extra, output


def _jumprelu_kind(kit: dict[str, Any], threshold: torch.Tensor, one_norm: bool
                   ) -> tuple[str, dict[str, Any]]:
    """The architecture and options sae-kit exported (batchtopk/matryoshka need one threshold
    and one decoder norm for all latents, as sae-kit wrote them), else jumprelu's defaults."""
    arch, options = kit.get("architecture"), kit.get("options")
    one = threshold.min().item() == threshold.max().item() and one_norm
    if not isinstance(options, dict) or not (arch == "jumprelu" or arch in ONE_THRESHOLD and one):
        return "jumprelu", {}
    return arch, {k: v for k, v in options.items() if k in _option_names(arch)}


def _option_names(arch: str) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(plugins.load("architectures", arch).Options)}


def _one_norm(norms: torch.Tensor, src: Path, eps: float) -> bool:
    try:
        one_norm_scale(norms, eps, str(src), _WHY_ONE_NORM)
    except SaeKitError:
        return False
    return True


def _check_importable(flat: dict[str, Any], src: Path) -> tuple[HookPoint, str, dict[str, Any]]:
    """The hook point, sae-kit architecture and its options, or one line listing every problem."""
    problems = []
    arch = flat.get("architecture", "standard")
    act = flat.get("activation_fn_str", flat.get("activation_fn"))
    if arch == "standard" and act == "topk":  # how SAELens before 6.0 wrote a TopK SAE
        arch = "topk"
    options: dict[str, Any] = {}
    if arch not in FROM_SAELENS:
        problems.append(f"architecture {arch!r} (only {', '.join(map(repr, FROM_SAELENS))} "
                        "import)")
    elif act not in (None, ACTIVATIONS[arch]):
        problems.append(f"activation {act!r} for architecture {arch!r}")
    if arch == "topk":
        k = flat.get("k", (flat.get("activation_fn_kwargs") or {}).get("k"))
        if isinstance(k, int) and not isinstance(k, bool):
            options["k"] = k
        else:
            problems.append("missing k" if k is None else f"k {k!r} (want a whole number)")
    if flat.get("normalize_activations") not in (None, False, "none"):
        problems.append(f"normalize_activations {flat['normalize_activations']!r}")
    if flat.get("reshape_activations", "none") != "none":
        problems.append(f"reshape_activations {flat['reshape_activations']!r}")
    missing = [k for k in ("d_in", "d_sae", "hook_name") if flat.get(k) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if problems:
        raise SaeKitError(f"cannot import {str(src)!r}: {'; '.join(problems)}")
    return from_transformer_lens(str(flat["hook_name"])), FROM_SAELENS[arch], options


def _read_weights(path: Path, d_in: int, d_sae: int, jumprelu: bool = False,
                  skip: bool = False) -> tuple[dict[str, torch.Tensor], float]:
    """The weights as float32, and the machine epsilon of the precision they were stored in."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.exists():
        raise SaeKitError(f"{str(path)!r} is missing")
    try:
        stored = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise SaeKitError(f"{str(path)!r} is corrupt ({first_line(exc)})") from None
    if not all(v.is_floating_point() for v in stored.values()):
        raise SaeKitError(f"{str(path)!r} holds non-float tensors; SAE weights are floats")
    eps = max((torch.finfo(v.dtype).eps for v in stored.values()), default=0.0)
    state = {k: v.float() for k, v in stored.items()}
    scaling = state.pop("scaling_factor", None)
    if scaling is not None and not torch.allclose(scaling, torch.ones_like(scaling)):
        raise SaeKitError(f"{str(path)!r} has a finetuning scaling factor; sae-kit cannot "
                          "represent it")
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if jumprelu:
        shapes["threshold"] = (d_sae,)
    if skip:
        shapes["W_skip"] = (d_in, d_in)
    wrong = [f"{k} {tuple(state[k].shape) if k in state else 'missing'} (want {shape})"
             for k, shape in shapes.items() if k not in state or tuple(state[k].shape) != shape]
    if wrong:
        raise SaeKitError(f"{str(path)!r} does not match its cfg.json: {', '.join(wrong)}")
    if jumprelu and not (state["threshold"] > 0).all():
        low = state["threshold"].min().item()
        raise SaeKitError(f"{str(path)!r} has a JumpReLU threshold of {low:.4g}; sae-kit's "
                          "jumprelu needs every threshold above 0")
    return state, eps


def fresh_dir(out: str | Path) -> Path:
    """Create ``out``, or accept it empty; anything else is one line (nothing is overwritten)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SaeKitError(f"{str(out)!r} already exists and is not empty; choose a new directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SaeKitError(f"cannot create {str(out)!r} ({exc.strerror or exc}); choose a "
                          "writable place") from None
    return out
