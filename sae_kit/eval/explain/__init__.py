"""`sae-kit explain`: automated interpretability of a feature report's features.

``examples`` picks, from the report's data, the contexts shown to the explainer and the held-out
ones used for scoring (plus non-activating contexts from the run's held-out text);
``prompts`` renders the shipped templates; ``answers`` parses what the model said; ``scoring``
holds the pure statistics; ``calls`` runs the calls with a cache, bounded concurrency and a
count; ``pipeline`` puts it together and writes ``explanations.json`` into the report.
"""
