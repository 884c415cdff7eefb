"""RB_STREAM_REPLICAS: every stream of the layout gets the configured number of copies."""

import pytest

from rb_common.bus import Names
from rb_common.settings import Settings


def test_default_is_one_copy() -> None:
    assert Settings().stream_replicas == 1
    assert {config.num_replicas for config in Names().streams()} == {1}


def test_replicas_apply_to_every_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RB_STREAM_REPLICAS", "3")
    settings = Settings()
    names = Names(settings.namespace, settings.stream_replicas)
    assert {config.num_replicas for config in names.streams()} == {3}


@pytest.mark.parametrize("value", [0, 6])
def test_out_of_range_is_refused(value: int) -> None:
    with pytest.raises(ValueError):
        Names("rb", value)
