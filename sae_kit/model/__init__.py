"""The model side: loading a causal LM, hook points, splicing SAEs in, and model adapters.

``loading`` loads a Hugging Face causal LM (Hub id, local directory or the built-in model) and
picks its adapter through the ``sae_kit.models`` plugin group; ``adapter`` is the interface a
model-family plugin implements and ``generic_adapter`` the fallback found by introspection;
``hookpoints`` names residual-stream positions and does their layer arithmetic; ``splice`` runs
the model with SAEs replacing activations. May import ``sae_kit.errors``, ``sae_kit.plugins``,
``sae_kit.builtin``, ``sae_kit.network`` and ``sae_kit.architectures``; never ``train``,
``eval``, ``store`` or ``cli``, and never a model family by name.
"""
