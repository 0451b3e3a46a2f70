"""Find a decoder layer's attention or MLP module by its name, for adapters that do not say.

Hugging Face names them consistently across most decoder families (``attn``, ``self_attn``,
``attention``; ``mlp``, ``feed_forward``), so one rule serves every adapter that does not
override :meth:`ModelAdapter.attention` / :meth:`ModelAdapter.mlp`. Exactly one child must
match; otherwise one line says what was found and how to mend it.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from sae_kit.errors import SaeKitError

_WORDS = {"attention": ("attn", "attention"), "mlp": ("mlp", "ffn", "feed_forward", "feedforward")}


def find_sublayer(layer: nn.Module, part: Literal["attention", "mlp"], who: str) -> nn.Module:
    """The one direct child of ``layer`` whose attribute or class name names ``part``."""
    words = _WORDS[part]
    found = [(name, child) for name, child in layer.named_children()
             if any(w in name.lower() or w in type(child).__name__.lower() for w in words)
             and not isinstance(child, (nn.Dropout, nn.LayerNorm))
             and "norm" not in type(child).__name__.lower()]
    if len(found) == 1:
        return found[0][1]
    children = ", ".join(name for name, _ in layer.named_children()) or "none"
    raise SaeKitError(
        f"cannot tell where the {part} lives in layer {who}: {len(found)} of its children "
        f"({children}) look like one, not exactly 1; name it with `{part}()` in the model "
        "adapter (docs/writing-plugins.md), or give the module's path as the hook point"
    )
