"""Storage: SAE and run directories on disk, the Hugging Face Hub, model cards and SAELens.

``run_dir`` names a run directory's files (``RunDir``); ``jsonio`` holds the JSON helpers
(neither imports torch); ``sae_dir`` saves and loads one SAE directory (``sae.safetensors`` +
``config.json``); ``sources`` decides where an SAE comes from (local directory, run + hook point,
Hub); ``hub`` pushes and pulls; ``model_card`` writes the Hub README; ``saelens`` converts to and
from SAELens's format. May import ``model.hookpoints``, ``architectures`` and the top-level
kernel modules; never ``train``, ``eval`` or ``cli``.
"""
