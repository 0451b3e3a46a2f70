"""SAE architectures. Each is a plugin in the ``sae_kit.architectures`` entry-point group."""

from sae_kit.architectures.base import SAE, SAEOutput

__all__ = ["SAE", "SAEOutput"]
