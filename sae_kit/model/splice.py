"""Run a frozen model with SAEs spliced into its residual stream.

Everything here is generic over model families: forward hooks on the adapter's decoder layers
read and replace the residual stream, and a hook on the unembedding stops the forward pass
before the full-vocabulary logits are built (losses compute them in chunks when they need them).

Running "from layer i" - the spliced pass of an e2e step, which starts from the activation the
clean pass already computed - temporarily swaps layers 0..i-1 for pass-throughs, so the
embedding runs (cheap) and every later layer gets the position embeddings, masks and rotary
tables the model itself computes. A pass-through returns what the real layers return (a tensor,
or a tuple in families that still use them), as learned from the first pass.

Several runs trained in one pass (one SAE per lambda, say) share a :class:`SharedClean`: the
clean pass of a batch runs once and every run's splice reads it, so a ``local`` step runs the
model once for all of them and an ``e2e`` step runs the layers before the SAE once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from sae_kit.architectures.base import SAE, SAEOutput
from sae_kit.errors import SaeKitError
from sae_kit.model.adapter import ModelAdapter
from sae_kit.model.hookpoints import HookPoint, Site
from sae_kit.model.lora import Lora, original
from sae_kit.model.sites import ModuleSite, locate


class _StopForward(Exception):
    """Raised from a hook once everything asked for has been seen."""


class _PassThrough(nn.Module):
    def __init__(self, as_tuple: bool) -> None:
        super().__init__()
        self.as_tuple = as_tuple  # some families' layers still return (hidden_states, ...)

    def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> object:
        return (hidden_states,) if self.as_tuple else hidden_states


@dataclass
class RunResult:
    acts: dict[Site, torch.Tensor] = field(default_factory=dict)
    """The activation at each captured site (``HookPoint.site``: a residual position, or a hook
    point inside a layer), as it was computed (before any SAE there)."""
    final_hidden: torch.Tensor | None = None
    """Normed last hidden states: the unembedding's input."""
    derived: dict[Any, Any] = field(default_factory=dict)
    """What losses compute from this pass and may reuse while the pass is shared by several runs
    (``SharedClean``): e.g. the chunked KL's clean output distribution. Freed with the pass."""


def _first_tensor(value: object) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value,index]


class ModelRunner:
    """One forward pass with captures, replacements and an optional start position."""

    def __init__(self, model: nn.Module, adapter: ModelAdapter) -> None:
        self.model = model
        self.adapter = adapter
        self.layers = adapter.layers(model)
        self.n_layers = len(self.layers)
        self.unembed = adapter.unembed(model)
        self.layer_returns_tuple: bool | None = None
        """Learned from the first layer call; until known, no layer is skipped."""
        self.sites: dict[HookPoint, ModuleSite] = {}
        """Hook points inside layers, located once."""

    def run(
        self,
        input_ids: torch.Tensor,
        *,
        capture: Iterable[Site] = (),
        replace: Mapping[Site, Callable[[torch.Tensor], torch.Tensor]] | None = None,
        start: tuple[int, torch.Tensor] | None = None,
        final_hidden: bool = True,
    ) -> RunResult:
        """Run the model on ``input_ids``.

        capture: sites (residual positions, or hook points inside layers) whose activation to
        record. replace: site -> function whose result replaces the activation there. start:
        (position, activation) to begin from instead of running the layers before it.
        final_hidden: record the unembedding's input; if False the pass stops once every site
        of interest has been seen.
        """
        replace = dict(replace or {})
        capture = set(capture)
        result = RunResult()
        points = capture | set(replace) | ({start[0]} if start else set())
        seen: set[Site] = set()

        def visit(site: Site, hidden: torch.Tensor) -> torch.Tensor:
            if start is not None and site == start[0]:
                hidden = start[1]
            if site in capture:
                result.acts[site] = hidden
            if site in replace:
                hidden = replace[site](hidden)
            seen.add(site)
            if not final_hidden and seen == points:
                raise _StopForward
            return hidden

        with contextlib.ExitStack() as stack:
            if start is not None and self.layer_returns_tuple is not None:
                stack.enter_context(self._skip_layers(start[0]))
            elif self.layer_returns_tuple is None:  # still correct: `visit` replaces at start
                stack.enter_context(self._learn_layer_output())
            for site in sorted(points, key=_site_order):
                stack.enter_context(self._hook(site, visit))
            if final_hidden:
                stack.enter_context(self._hook_unembed(result))
            with contextlib.suppress(_StopForward):
                self.model(input_ids=input_ids, use_cache=False)
        return result

    def _learn_layer_output(self):
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            self.layer_returns_tuple = isinstance(output, tuple)

        return _removing(self.layers[0].register_forward_hook(hook))

    @contextlib.contextmanager
    def _skip_layers(self, upto: int) -> Iterator[None]:
        originals = [self.layers[i] for i in range(upto)]
        try:
            for i in range(upto):
                self.layers[i] = _PassThrough(bool(self.layer_returns_tuple))
            yield
        finally:
            for i, layer in enumerate(originals):
                self.layers[i] = layer

    def _hook(self, site: Site, visit: Callable[[Site, torch.Tensor], torch.Tensor]):
        if isinstance(site, HookPoint):
            found = self.sites.get(site) or self.sites.setdefault(
                site, locate(self.model, self.adapter, site))
            if found.side == "input":
                return _replacing_input(found.module, site, visit)
            return _replacing_output(found.module, site, visit)
        if site < self.n_layers:
            return _replacing_input(self.layers[site], site, visit)
        return _replacing_output(self.layers[self.n_layers - 1], site, visit)

    def _hook_unembed(self, result: RunResult):
        def pre_hook(module: nn.Module, args: tuple):
            result.final_hidden = args[0]
            raise _StopForward

        return _removing(self.unembed.register_forward_pre_hook(pre_hook))


def _site_order(site: Site) -> tuple[int, int, str]:
    """Hooks register in pass order (residual position, then the hook points inside a layer)."""
    if isinstance(site, HookPoint):
        return (site.layer, 1, site.name)
    return (site, 0, "")


def _replacing_input(module: nn.Module, site: Site, visit: Callable):
    """A pre-hook passing the module's first input (positional or ``hidden_states``) to visit."""

    def pre_hook(module: nn.Module, args: tuple, kwargs: dict):
        if args:
            return (visit(site, args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        key = "hidden_states" if "hidden_states" in kwargs else next(iter(kwargs))
        kwargs[key] = visit(site, kwargs[key])
        return args, kwargs

    return _removing(module.register_forward_pre_hook(pre_hook, with_kwargs=True))


def _replacing_output(module: nn.Module, site: Site, visit: Callable):
    """A hook passing the module's output (the first element of a tuple) to visit."""

    def post_hook(module: nn.Module, args: tuple, output: object):
        hidden = visit(site, _first_tensor(output))
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden

    return _removing(module.register_forward_hook(post_hook))


@contextlib.contextmanager
def _removing(handle: torch.utils.hooks.RemovableHandle) -> Iterator[None]:
    try:
        yield
    finally:
        handle.remove()


class SharedClean:
    """The clean pass of the current batch, computed once for every splice that shares it.

    A request the cached pass covers (its captures, and the final hidden states if asked for)
    returns the cached result; otherwise the pass runs again with the union of both requests.
    Hooks only read the stream, so a pass with more captures computes the same numbers.
    """

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.clear()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The scope of one batch (see ``Splice.batch``): at its end the pass and what losses
        derived from it (the KL's clean distribution, up to ``kl_cache_mb``) are freed, so none
        of it is held through the optimizer step or into the next batch's pass."""
        try:
            yield
        finally:
            self.clear()

    def clear(self) -> None:
        """Forget the cached pass (its tensors are freed once no graph holds them)."""
        self._input_ids: torch.Tensor | None = None
        self._capture: set[Site] = set()
        self._final_hidden = False
        self._result: RunResult | None = None

    def get(self, input_ids: torch.Tensor, capture: Iterable[Site], final_hidden: bool
            ) -> RunResult:
        capture = set(capture)
        same_batch = input_ids is self._input_ids
        if same_batch and capture <= self._capture and (self._final_hidden or not final_hidden):
            return self._result  # type: ignore[return-value]
        if same_batch:
            capture |= self._capture
            final_hidden = final_hidden or self._final_hidden
        self.clear()  # the pass this one replaces is freed first: one pass at peak, not two
        with torch.no_grad():
            result = self.runner.run(input_ids, capture=capture, final_hidden=final_hidden)
        self._input_ids, self._capture, self._final_hidden = input_ids, capture, final_hidden
        self._result = result
        return result


@dataclass
class SplicedRun(RunResult):
    """The pass with the SAEs in place; it reads like the clean one (``acts``, ``final_hidden``)
    and adds what each SAE took in and gave out."""

    sae_outputs: dict[HookPoint, SAEOutput] = field(default_factory=dict)
    sae_inputs: dict[HookPoint, torch.Tensor] = field(default_factory=dict)
    sae_targets: dict[HookPoint, torch.Tensor] = field(default_factory=dict)
    """What each SAE's output replaced: its input, or a transcoder's output hook point's
    activation as the model computed it from the same input."""


class Splice:
    """A frozen language model with SAEs at some hook points.

    ``clean`` runs the original model; ``spliced`` runs it with every SAE's output in place of
    its input, starting from the clean pass's residual at the first SAE (at its layer's input
    for a hook point inside a layer) when one is given.
    """

    def __init__(self, model: nn.Module, adapter: ModelAdapter, saes: Mapping[HookPoint, SAE],
                 outputs: Mapping[HookPoint, HookPoint] | None = None):
        self.runner = ModelRunner(model, adapter)
        self.shared: SharedClean | None = None
        self.saes = dict(sorted(saes.items()))
        self.outputs = {hp: (outputs or {}).get(hp, hp) for hp in self.saes}
        """Where each SAE's output goes: its own hook point, or a transcoder's output one."""
        used = [hp.site for hp in self.saes] + [o.site for hp, o in self.outputs.items()
                                                 if o != hp]
        twice = sorted({str(s) for s in used if used.count(s) > 1})
        if twice:
            raise SaeKitError(f"{', '.join(twice)} is read or replaced by two SAEs; give each "
                              "SAE (or transcoder end) its own hook point")
        self.n_layers = self.runner.n_layers
        self.first_position = min(hp.start_position for hp in self.saes)
        """Where the spliced pass starts: the residual at the first SAE (or its layer's input)."""
        self.lora: Lora | None = None
        """LoRA adapters on the model (``sae-kit train --lora``): off in the clean pass, on in
        the spliced one."""

    def share_clean(self, shared: SharedClean) -> None:
        """Read clean passes from ``shared`` (built on the same model) instead of running them."""
        self.shared = shared
        self.runner = shared.runner

    def batch(self) -> contextlib.AbstractContextManager[None]:
        """The scope of one batch for whoever runs several losses on it (a step of a group, a
        micro-batch): a clean pass shared with other splices (``SharedClean``, a clean cache)
        is computed once inside it and freed at its end. Nothing to do for a lone splice."""
        return self.shared.batch() if self.shared is not None else contextlib.nullcontext()

    @property
    def sae_sites(self) -> list[Site]:
        """Where each SAE reads (``HookPoint.site``): the keys of its activation in ``acts``."""
        return [hp.site for hp in self.saes]

    @property
    def target_sites(self) -> list[Site]:
        """Where each SAE's output goes (``sae_sites`` but for transcoders): the keys of the
        activation it is trained to match."""
        return [out.site for out in self.outputs.values()]

    def clean(
        self, input_ids: torch.Tensor, capture: Iterable[Site] = (), final_hidden: bool = True
    ) -> RunResult:
        with original(self.lora):
            if self.shared is not None:
                return self.shared.get(input_ids, capture, final_hidden)
            with torch.no_grad():
                return self.runner.run(input_ids, capture=capture, final_hidden=final_hidden)

    def spliced(
        self,
        input_ids: torch.Tensor,
        capture: Iterable[int] = (),
        clean: RunResult | None = None,
        final_hidden: bool = True,
    ) -> SplicedRun:
        outputs: dict[HookPoint, SAEOutput] = {}
        inputs: dict[HookPoint, torch.Tensor] = {}
        targets: dict[HookPoint, torch.Tensor] = {}

        def reading(hp: HookPoint, sae: SAE, write_here: bool) -> Callable:
            def apply(hidden: torch.Tensor) -> torch.Tensor:
                inputs[hp] = hidden
                outputs[hp] = sae(hidden.to(sae.W_enc.dtype))
                return writing(hp)(hidden) if write_here else hidden

            return apply

        def writing(hp: HookPoint) -> Callable:
            def apply(hidden: torch.Tensor) -> torch.Tensor:
                targets[hp] = hidden
                return outputs[hp].output.to(hidden.dtype)

            return apply

        replace: dict[Site, Callable[[torch.Tensor], torch.Tensor]] = {}
        for hp, sae in self.saes.items():
            out = self.outputs[hp]
            replace[hp.site] = reading(hp, sae, write_here=out == hp)
            if out != hp:  # a transcoder: its output replaces a later activation
                replace[out.site] = writing(hp)
        start = None
        # adapters before the first SAE change what reaches it: then the pass runs from the start
        adapted_before = self.lora is not None and self.lora.first_layer < self.first_position
        if clean is not None and self.first_position in clean.acts and not adapted_before:
            start = (self.first_position, clean.acts[self.first_position])
        run = self.runner.run(
            input_ids, capture=capture, replace=replace, start=start, final_hidden=final_hidden
        )
        return SplicedRun(acts=run.acts, final_hidden=run.final_hidden, derived=run.derived,
                          sae_outputs=outputs, sae_inputs=inputs, sae_targets=targets)

    @property
    def unembed(self) -> nn.Module:
        """The module mapping final hidden states to logits."""
        return self.runner.unembed

    def logits(self, final_hidden: torch.Tensor) -> torch.Tensor:
        """Full [..., vocab] logits; the e2e losses use the chunked KL instead."""
        return self.runner.unembed(final_hidden)
