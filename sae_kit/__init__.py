"""sae-kit: sparse autoencoders trained end to end (Braun et al. 2024)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sae_kit.version import __version__

if TYPE_CHECKING:
    from sae_kit.architectures.base import SAE

__all__ = ["TrainConfig", "__version__", "load_sae", "train_saes"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import sae_kit` stays light: each name imports only its own module.
    if name == "TrainConfig":
        from sae_kit.record.config import TrainConfig

        return TrainConfig
    if name == "train_saes":
        from sae_kit.train.api import train_saes

        return train_saes
    raise AttributeError(f"module 'sae_kit' has no attribute {name!r}")


def load_sae(source: Any, hook_point: str | None = None, *, revision: str | None = None,
             device: Any = "cpu") -> tuple[SAE, dict]:
    """Load one SAE from a local SAE directory, a run directory + hook point, or the Hub.

    ``sae, config = sae_kit.load_sae("alice/gpt2-e2e-saes", "blocks.6.hook_resid_pre")``; see
    :func:`sae_kit.store.sources.load_sae`. Imported lazily so ``import sae_kit`` stays light.
    """
    from sae_kit.store.sources import load_sae as _load_sae

    return _load_sae(source, hook_point, revision=revision, device=device)
