"""A compiled spec: ``Program`` holds its rules per event type and binds their generated functions.

Two targets are bound here, a store and CloudWatch's observations; replay binds its third, a
worker's partial state, from ``rules_by_event`` (``log_exporter.replay.target``).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Final

from log_exporter.spec.codegen import Apply, Observe, Pairs, observation_function, store_function
from log_exporter.spec.model import MetricSpec, Rule, Spec
from log_exporter.spec.reader import EventReader
from log_exporter.spec.typed import TypedEvents, read_paths, rule_paths
from log_exporter.store import Store

__all__ = ["ANY_EVENT", "Program", "compile_spec"]

# The key, in ``rules_by_event`` and the bound functions, of the rules without ``events``: what
# an event whose type no rule names (or that has none) gets. No event type is empty, so "" is
# free; an event whose type is "" gets exactly these rules, as any unnamed type does.
ANY_EVENT: Final = ""


class Program:
    """A compiled spec: ``bind`` builds the hot path into a store; ``observers`` CloudWatch's."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.reader = EventReader(spec.input)
        by_event: dict[str, list[tuple[MetricSpec, Rule]]] = {}
        named = {et for m in spec.metrics for r in m.rules for et in r.events or ()}
        anywhere = any(r.events is None for m in spec.metrics for r in m.rules)
        for m in spec.metrics:
            for r in m.rules:
                # A rule without ``events`` joins every event type's rules, in spec order.
                for et in r.events if r.events is not None else (*named, ANY_EVENT):
                    by_event.setdefault(et, []).append((m, r))
        if anywhere:
            by_event.setdefault(ANY_EVENT, [])
        self._by_event = {et: tuple(pairs) for et, pairs in by_event.items()}
        self._observers: dict[str, Observe] | None = None

    @property
    def event_types(self) -> frozenset[str]:
        """The event types named by some rule's ``events``."""
        return frozenset(self._by_event) - {ANY_EVENT}

    @property
    def rules_by_event(self) -> Mapping[str, Pairs]:
        """Event type -> the (metric, rule) pairs it feeds, in spec order: what a target binds."""
        return self._by_event

    @functools.cached_property
    def typed(self) -> TypedEvents:
        """The spec's typed events: what the pipeline decodes lines into (``bind(typed=True)``)."""
        by_type = None
        if ANY_EVENT not in self._by_event:
            # Every type a function reads is named: each can decode into its own Struct.
            timestamp = self.spec.input.timestamp_field
            by_type = {et: [timestamp, *rule_paths(p)] for et, p in self._by_event.items()}
        return TypedEvents(read_paths(self.spec), self.spec.input, by_type)

    def bind(
        self, store: Store, *, exemplars: bool = True, typed: bool = False
    ) -> dict[str, Apply]:
        """Event type -> one function that applies such an event to ``store``'s metric state;
        under ``ANY_EVENT``, the function for events of any other type (or none), if some rule
        has no ``events``.

        The functions hold the store's state objects: after ``store.reconfigure`` bind again.
        ``exemplars=False`` keeps none (replay writes none) and still counts the skipped ones.
        ``typed=True``: the functions apply ``self.typed``'s events (the pipeline's), not dicts.
        Raises ValueError if the store does not hold this spec's metrics.
        """
        for m in self.spec.metrics:
            state = store.states.get(m.name)
            if (
                state is None
                or not state.definition.same_shape(m.definition)
                or state.definition.native != m.definition.native
            ):
                raise ValueError(f"store has no metric {m.name!r} of this shape; reconfigure it")
        fields = self.typed.fields if typed else None
        return {
            et: store_function(
                et, pairs, store, exemplars=exemplars, spec_input=self.spec.input, fields=fields
            )
            for et, pairs in self._by_event.items()
        }

    def observers(self) -> dict[str, Observe]:
        """Event type -> one function giving the CloudWatch observations such an event causes.

        Only the event types feeding a metric with a ``cloudwatch`` table have one. The
        observations follow the spec's order and are not capped (the shipper caps them); an
        invalid value gives none and is not counted (the store counts it). Generated on first
        use, since only the CloudWatch shipper needs them, then kept.
        """
        if self._observers is None:
            self._observers = {
                et: fn
                for et, pairs in self._by_event.items()
                if (fn := observation_function(et, pairs)) is not None
            }
        return self._observers


def compile_spec(spec: Spec) -> Program:
    """Compile a validated spec into a ``Program``."""
    return Program(spec)
