"""The clean pass several splices share: computed once per batch, never two at once in memory."""

import weakref

import pytest
import torch

from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import ModelRunner, SharedClean, Splice
from tests.helpers import identity_sae


@pytest.fixture(scope="module")
def loaded(tiny_gpt2):
    return load_model(str(tiny_gpt2))


def _batches(n):
    gen = torch.Generator().manual_seed(3)
    return [torch.randint(0, 512, (2, 8), generator=gen) for _ in range(n)]


def _counting(runner):
    """The runner's passes, as (the captured sites, whether the final hidden states were)."""
    passes = []
    real = runner.run

    def run(input_ids, **kw):
        passes.append((set(kw.get("capture", ())), kw.get("final_hidden", True)))
        return real(input_ids, **kw)

    runner.run = run
    return passes


def test_a_stale_batch_is_freed_before_the_next_pass_runs(loaded):
    shared = SharedClean(ModelRunner(loaded.model, loaded.adapter))
    first, second = _batches(2)
    result = shared.get(first, [1], True)
    result.derived["kl"] = torch.ones(4)  # what a loss keeps beside the pass (the KL cache)
    stale = weakref.ref(result.derived["kl"])
    del result
    alive_during_pass = []
    real = shared.runner.run
    shared.runner.run = lambda ids, **kw: alive_during_pass.append(stale() is not None) \
        or real(ids, **kw)
    shared.get(second, [1], True)
    assert alive_during_pass == [False]  # one batch's pass in memory at a time, not two


def test_inside_a_batch_the_pass_runs_once_and_is_freed_at_the_end(loaded):
    runner = ModelRunner(loaded.model, loaded.adapter)
    shared = SharedClean(runner)
    splices = [Splice(loaded.model, loaded.adapter, {HookPoint(1): identity_sae(32, 8)})
               for _ in range(3)]
    for splice in splices:
        splice.share_clean(shared)
    passes = _counting(runner)
    (ids,) = _batches(1)
    with splices[0].batch():
        results = [s.clean(ids, capture=[1]) for s in splices]
        assert all(r is results[0] for r in results)
        freed = weakref.ref(results[0])
        del results
        assert freed() is not None  # still held for the next reader of this batch
    assert passes == [({1}, True)]
    assert freed() is None  # the scope's end frees it


def test_a_wider_request_on_the_same_batch_runs_once_with_both(loaded):
    runner = ModelRunner(loaded.model, loaded.adapter)
    shared = SharedClean(runner)
    passes = _counting(runner)
    (ids,) = _batches(1)
    shared.get(ids, [1], False)
    both = shared.get(ids, [2], False)
    assert set(both.acts) == {1, 2}
    assert shared.get(ids, [1, 2], False) is both
    assert passes == [({1}, False), ({1, 2}, False)]


def test_a_lone_splice_caches_nothing_in_its_batch(loaded):
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(1): identity_sae(32, 8)})
    passes = _counting(splice.runner)
    (ids,) = _batches(1)
    with splice.batch():
        first, second = splice.clean(ids, capture=[1]), splice.clean(ids, capture=[1])
    assert first is not second and len(passes) == 2  # no cache: each call runs the model
    torch.testing.assert_close(first.acts[1], second.acts[1], rtol=0, atol=0)
