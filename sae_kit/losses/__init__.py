"""Training objectives. Each is a plugin in the ``sae_kit.losses`` entry-point group.

``base`` is the interface (``Loss``, ``LossResult``); ``local``, ``e2e`` and ``e2e_ds`` the
first-party objectives; ``terms`` the terms they share (the output KL and its options, the
SAEs' sparsity); ``kl`` and ``chunked_kl`` the KL itself. May import ``model``,
``architectures`` and the top-level kernel modules; never ``train``, ``eval``, ``store`` or
``cli``.
"""

from sae_kit.losses.base import Loss, LossResult

__all__ = ["Loss", "LossResult"]
