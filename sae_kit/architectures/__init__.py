"""SAE architectures. Each is a plugin in the ``sae_kit.architectures`` entry-point group.

``base`` is the interface (``SAE``, ``SAEOutput``); ``relu`` and ``topk`` the first-party
architectures; ``decoder`` and ``sparse`` the unit-norm decoder and the sparse kernels;
``factory`` the one seeded SAE factory (training and analysis both call it); ``codes`` the one
rule for when a code is active (L0). May import the top-level kernel modules
only; never ``model``, ``losses``, ``train``, ``eval``, ``store`` or ``cli``.
"""

from sae_kit.architectures.base import SAE, SAEOutput

__all__ = ["SAE", "SAEOutput"]
