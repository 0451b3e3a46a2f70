"""sae-kit: sparse autoencoders trained end to end (Braun et al. 2024)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sae_kit.architectures.base import SAE

__version__ = "0.1.0"
__all__ = ["TrainConfig", "load_sae", "train"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import sae_kit` stays light: `train` (sae_kit.train.api.train, through the
    # callable sae_kit.train package) and TrainConfig (sae_kit.record) import only their own
    # modules.
    if name == "TrainConfig":
        from sae_kit.record.config import TrainConfig

        return TrainConfig
    if name == "train":
        import sae_kit.train

        return sae_kit.train
    raise AttributeError(f"module 'sae_kit' has no attribute {name!r}")


def load_sae(source: Any, hook_point: str | None = None, *, revision: str | None = None,
             device: Any = "cpu") -> tuple[SAE, dict]:
    """Load one SAE from a local SAE directory, a run directory + hook point, or the Hub.

    ``sae, config = sae_kit.load_sae("alice/gpt2-e2e-saes", "blocks.6.hook_resid_pre")``; see
    :func:`sae_kit.store.sources.load_sae`. Imported lazily so ``import sae_kit`` stays light.
    """
    from sae_kit.store.sources import load_sae as _load_sae

    return _load_sae(source, hook_point, revision=revision, device=device)
