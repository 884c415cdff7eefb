"""StepMap: an execution's steps by id, as a persistent map.

The fold makes a new state per event and must not change the old one. With a plain dict that
meant copying every step per event: O(steps) per event, quadratic over a large runbook. A
StepMap shares structure with the map it was made from (a HAMT, `immutables.Map`), so setting
one step costs O(log steps) and the old map stays as it was.

It iterates in insertion order, as the dict it replaces did (the recorder, the CLI and the
expression context list steps in that order); that order changes only when steps are added
(a for_each's sub-steps) or dropped (an operator's retry), which rebuild it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, overload

import immutables

if TYPE_CHECKING:
    from rb_engine.coordinator.state import StepState


class StepMap(Mapping[str, "StepState"]):
    __slots__ = ("_keys", "_map")

    def __init__(self, items: Mapping[str, StepState] | Iterable[tuple[str, StepState]] = ()) -> None:
        values = dict(items)
        self._map: immutables.Map[str, StepState] = immutables.Map(values)
        self._keys: tuple[str, ...] = tuple(values)

    @classmethod
    def _made(cls, values: immutables.Map[str, StepState], keys: tuple[str, ...]) -> StepMap:
        new = object.__new__(cls)
        new._map = values
        new._keys = keys
        return new

    def __getitem__(self, step_id: str) -> StepState:
        return self._map[step_id]

    def __contains__(self, step_id: object) -> bool:
        return step_id in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def get(self, step_id: str, /) -> StepState | None: ...
    @overload
    def get(self, step_id: str, default: Any, /) -> Any: ...
    def get(self, step_id: str, default: Any = None) -> Any:
        return self._map.get(step_id, default)

    def set(self, step_id: str, step: StepState) -> StepMap:
        """A map with `step` under `step_id` (added last if it is new); this one is unchanged."""
        keys = self._keys if step_id in self._map else (*self._keys, step_id)
        return StepMap._made(self._map.set(step_id, step), keys)

    def updated(self, steps: Mapping[str, StepState]) -> StepMap:
        """A map with every step of `steps` set (new ones added last, in their order)."""
        values = self._map.mutate()
        added = []
        for step_id, step in steps.items():
            if step_id not in values:
                added.append(step_id)
            values[step_id] = step
        return StepMap._made(values.finish(), (*self._keys, *added))

    def __repr__(self) -> str:
        return f"StepMap({dict(self)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (StepMap, (dict(self),))
