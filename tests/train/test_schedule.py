import pytest

from sae_kit.train.schedule import warmup_cosine


def test_warmup_is_linear_from_zero():
    values = [warmup_cosine(s, 100, 10, 0.1) for s in range(10)]
    assert values[0] == pytest.approx(0.1)
    assert values[9] == pytest.approx(1.0)
    assert all(b > a for a, b in zip(values, values[1:], strict=False))


def test_cosine_decays_to_the_floor():
    assert warmup_cosine(10, 110, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(60, 110, 10, 0.1) == pytest.approx(0.55)
    assert warmup_cosine(110, 110, 10, 0.1) == pytest.approx(0.1)


def test_warmup_starts_one_step_ahead_of_the_reference():
    # sae-kit: (step + 1) / warmup, so the first step already learns; the reference (e2e_sae)
    # uses step / warmup, whose first step has lr 0. Same peak, reached one step earlier.
    ours = [warmup_cosine(s, 100, 4, 0.1) for s in range(5)]
    assert ours == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    reference = [s / 4 for s in range(4)]
    assert [a - b for a, b in zip(ours[:4], reference, strict=True)] == pytest.approx([0.25] * 4)


def test_no_warmup_starts_at_the_peak():
    assert warmup_cosine(0, 10, 0, 0.1) == pytest.approx(1.0)
