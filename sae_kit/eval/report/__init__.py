"""The static HTML feature report of `sae-kit features`: Jinja2 templates, shipped JS and CSS.

:mod:`.render` writes it from :class:`sae_kit.eval.analysis.features.FeatureData` (the view
reads the data, never the reverse; :mod:`sae_kit.eval.feature_report` runs the pipeline).
"""
