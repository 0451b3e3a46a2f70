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
