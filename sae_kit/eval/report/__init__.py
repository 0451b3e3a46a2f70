"""The static HTML feature report of `sae-kit features`: Jinja2 templates, shipped JS and CSS.

:mod:`.render` writes it from :class:`sae_kit.eval.analysis.features.FeatureData`.
"""
