"""Looking at what an SAE learned: feature statistics, dashboards, dictionary geometry.

- :mod:`.stats` - streaming per-feature statistics (density, mean, max, activation histogram),
  top-k and reservoir contexts whose memory does not grow with the number of tokens, quantile
  sampling; pure tensor code.
- :mod:`.geometry` - max cosine similarity within and across dictionaries, permutation tests,
  the activation analysis (‖â‖/‖a‖, cos(â, a) per position).
- :mod:`.directions` - what a decoder direction does: output tokens through the unembedding,
  nearest features; a dictionary's initial decoder, recomputed from the run's seed.
- :mod:`.source`, :mod:`.collect`, :mod:`.tokens` - the SAE to analyse, one streaming pass of
  the model over text, tokens as visible text.
- :mod:`.attribution` - per-feature functional importance on one batch: -c * dM/dc for KL and
  CE under both conventions, exact ablation, Spearman, concentration shares; pure tensor code.
- :mod:`.features` - the data of `sae-kit features` (the report, its view, reads it;
  :mod:`sae_kit.eval.feature_report` composes the two); :mod:`.compare` (+ :mod:`.plots`) and
  :mod:`.importance` (+ :mod:`.importance_values`, :mod:`.importance_files`,
  :mod:`.importance_plot`, :mod:`.context_effects`) - the `sae-kit compare` and
  `sae-kit importance` pipelines.

May import sae_kit.model, .store, .data and .eval.metrics, never .train (the initial decoder
comes from :func:`sae_kit.architectures.factory.seeded_saes`, the factory training calls too)
and never the report (its view); imported by the CLI, :mod:`sae_kit.eval.report`,
:mod:`sae_kit.eval.feature_report` and :mod:`sae_kit.eval.explain`.
"""
