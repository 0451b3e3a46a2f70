"""Training objectives. Each is a plugin in the ``sae_kit.losses`` entry-point group."""

from sae_kit.losses.base import Loss, LossResult

__all__ = ["Loss", "LossResult"]
