"""The one SAE factory: one SAE per hook point, seeded, in the run's order.

Training (:func:`sae_kit.train.build.build_saes`) and analysis (the initial decoder that
``sae-kit compare`` measures drift from) both call it, so the SAEs a run starts from can be
rebuilt exactly from its record: the seed is set, then one SAE per name is made in order, before
anything else draws random numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE


def seeded_saes(architecture: str, options: Mapping[str, Any], widths: Mapping[str, int],
                n_dict: int, seed: int,
                device: torch.device | None = None) -> Iterator[tuple[str, SAE]]:
    """``(name, SAE)`` per hook-point name of ``widths`` (in its order, each SAE as wide as its
    activation), each drawn after ``torch.manual_seed(seed)``.

    A generator: a caller that wants one SAE stops at its name. The global RNG is left where
    the draws leave it, as training expects; a caller that must not disturb it saves and
    restores the state itself.
    """
    arch = plugins.load("architectures", architecture)
    torch.manual_seed(seed)
    for name, width in widths.items():
        sae = arch(width, n_dict, **options)
        yield name, sae if device is None else sae.to(device)
