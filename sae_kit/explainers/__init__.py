"""Explainer backends: plugins in the ``sae_kit.explainers`` entry-point group.

`sae-kit explain` asks a language model to explain features and to score explanations. A backend
turns chat messages into a :class:`~sae_kit.explainers.base.Completion`: ``openai`` speaks the
chat-completions protocol over HTTP (any compatible server: vLLM, llama.cpp, Ollama, hosted
APIs), ``transformers`` runs a local Hugging Face chat model in-process. ``base`` is the
interface. May import the top-level kernel modules only; never ``train``, ``eval`` or ``cli``.
"""
