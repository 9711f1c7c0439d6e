"""What the structlog processor tells the stdlib handler, so one event is never sent twice.

When structlog hands an event on to stdlib logging (``render_to_log_kwargs`` or
``ProcessorFormatter.wrap_for_formatter``), the processor has already shipped it, and the record
that stdlib logging makes of it carries the event's values: as attributes, or in the dict that is
its ``msg``. So the processor marks the event itself: its ``data_id`` (or, when that is not a
string, its ``type``) becomes an equal string, a ``Shipped``, that names the engines that shipped
it. A handler of one of those engines skips a record that carries it.

The mark lives and dies with the event. An event that a later processor drops, or that stdlib's
level discards, leaves nothing behind to hide a later record; a record copied by a
``QueueHandler`` and handled on a ``QueueListener`` thread still carries it. A string rather
than a key of its own, because renderers show every key of an event (``JSONRenderer``,
``ConsoleRenderer``, a stdlib formatter that prints extras), and show an equal string as the
string it equals.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any


class Shipped(str):
    """A string equal to an event's own, marking the event as shipped by the engines in ``by``.

    Copies are the mark itself, as a string's are; a pickle is the plain string, since an engine
    is only ever one process's.
    """

    by: tuple[object, ...]

    def __copy__(self) -> Shipped:
        return self

    def __deepcopy__(self, _memo: object) -> Shipped:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (str, (str.__str__(self),))


def mark(event_dict: MutableMapping[str, Any], keys: tuple[str, str], engine: object) -> None:
    """Mark the event as shipped by ``engine`` (an engine's ``mark``), on its first string field
    of ``keys`` (data_id's and type's names). An event with neither is refused wherever it goes,
    so it needs no mark."""
    for key in keys:
        value = event_dict[key]
        cls = value.__class__
        if cls is Shipped:
            by = (*value.by, engine)
        elif cls is str:
            by = (engine,)
        else:
            continue
        marked = Shipped(value)
        marked.by = by
        event_dict[key] = marked
        return


def shipped(data_id: Any, type_: Any, engine: object) -> bool:
    """Whether a record with these fields is an event that ``engine`` has already shipped."""
    for value in (data_id, type_):
        if value.__class__ is Shipped:
            return engine in value.by
    return False
