"""``transformers``: a local Hugging Face chat model, in this process.

    sae-kit explain RUN_DIR --backend transformers --model Qwen/Qwen2.5-0.5B-Instruct

The model is loaded with ``from_pretrained`` (a local directory, or a Hub id through the Hub
cache) and answers greedily. Prompts go through the tokenizer's chat template where it has one,
else as ``role: text`` lines. Logprobs come from the generation scores, so simulation scoring
works with this backend too. One call at a time: the model is not shared between threads.
"""

from __future__ import annotations

from typing import Any

from sae_kit.errors import first_line
from sae_kit.explainers.base import (
    BadAnswer,
    Completion,
    EndpointError,
    Explainer,
    ExplainerSettings,
    Messages,
    TokenLogprob,
)


class TransformersExplainer(Explainer):
    name = "transformers"
    max_concurrency = 1

    def __init__(self, settings: ExplainerSettings) -> None:
        super().__init__(settings)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(settings.model)
            self._model = AutoModelForCausalLM.from_pretrained(settings.model)
        except (OSError, ValueError) as exc:
            raise EndpointError(f"cannot load explainer model {settings.model!r}: "
                                f"{first_line(exc)}"
                                ) from None
        self._model.to(torch.device(settings.device)).eval()
        self._torch = torch

    def identity(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.settings.model}

    def _prompt(self, messages: Messages) -> str:
        if getattr(self._tokenizer, "chat_template", None):
            return self._tokenizer.apply_chat_template(messages, tokenize=False,
                                                       add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def complete(self, messages: Messages, *, max_tokens: int, logprobs: int = 0) -> Completion:
        torch, tok = self._torch, self._tokenizer
        ids = tok(self._prompt(messages), return_tensors="pt").input_ids.to(self._model.device)
        limit = getattr(self._model.config, "max_position_embeddings", None) or getattr(
            self._model.config, "n_positions", None)
        if limit and ids.shape[1] + max_tokens > limit:
            raise BadAnswer(f"the prompt ({ids.shape[1]} tokens) and the answer ({max_tokens}) "
                            f"do not fit the explainer model's {limit} positions")
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        with torch.no_grad():
            out = self._model.generate(ids, max_new_tokens=max_tokens, do_sample=False,
                                       output_scores=bool(logprobs), return_dict_in_generate=True,
                                       pad_token_id=pad, attention_mask=torch.ones_like(ids))
        new = out.sequences[0, ids.shape[1]:].tolist()
        ended = tok.eos_token_id is not None and tok.eos_token_id in new
        if ended:
            new = new[:new.index(tok.eos_token_id)]
        text = tok.decode(new, skip_special_tokens=True)
        lps = None
        if logprobs:
            lps = []
            for step, token_id in enumerate(new):
                logp = torch.log_softmax(out.scores[step][0].float(), dim=-1)
                values, alts = logp.topk(logprobs)
                top = {tok.decode([a]): float(v) for a, v in zip(alts.tolist(), values.tolist(),
                                                                 strict=True)}
                lps.append(TokenLogprob(tok.decode([token_id]), top))
        return Completion(text=text, logprobs=lps, truncated=not ended and len(new) >= max_tokens)
