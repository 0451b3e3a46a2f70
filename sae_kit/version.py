"""sae-kit's version, in a module of its own: code that records it (config.json, SAELens
cfg.json, Hub commits) imports this, not the ``sae_kit`` package, whose lazy names reach up into
``train`` and ``store`` and would close a circle."""

__version__ = "0.1.0"
