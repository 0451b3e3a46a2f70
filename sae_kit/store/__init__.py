"""Storage: SAE and run directories on disk, the Hugging Face Hub, model cards and SAELens.

``run_dir`` names a run directory's files (``RunDir``); ``jsonio`` holds the JSON helpers
(neither imports torch); ``staging`` builds an output directory beside its place and moves it
in whole; ``sae_dir`` saves and loads one SAE directory (``sae.safetensors`` +
``config.json``); ``sources`` decides where an SAE comes from (local directory, run + hook point,
Hub); ``hub`` pushes and pulls; ``model_card`` writes the Hub README; ``saelens`` converts to and
from SAELens's format; ``circuit_tracer`` writes per-layer transcoders as one circuit-tracer
transcoder set. May import ``record``, ``model.hookpoints``, ``architectures`` and the top-level
kernel modules; never ``train``, ``eval`` or ``cli``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sae_kit.exports import lazy_exports

if TYPE_CHECKING:
    from sae_kit.store.jsonio import read_json, write_json_atomic
    from sae_kit.store.run_dir import RunDir
    from sae_kit.store.sae_dir import load_run, save_sae
    from sae_kit.store.sources import load_sae, resolve_sae_source

__all__ = [  # what the package offers; each name imported from its module on first use
    "load_run", "load_sae", "read_json", "resolve_sae_source", "RunDir", "save_sae",
    "write_json_atomic",
]
_NAMES = {
    "RunDir": "run_dir",
    "read_json": "jsonio",
    "write_json_atomic": "jsonio",
    "save_sae": "sae_dir",
    "load_run": "sae_dir",
    "load_sae": "sources",
    "resolve_sae_source": "sources",
}
__getattr__, __dir__ = lazy_exports(__name__, _NAMES)
