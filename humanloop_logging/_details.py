"""Read a FastAPI 422 ``detail`` list: which items of a batch were refused, and why.

The Humanloop service is a FastAPI app whose request body is
``Union[List[FeedbackRequest], FeedbackRequest]``, so the ``loc`` of a 422 entry depends on the
pydantic behind it:

* pydantic v1 (the v4 era): ``["body", 3, "data_id"]``; a bad value is listed once per member of
  the field's union, all at the same ``loc``; and the other branch of the body's union adds an
  entry for the whole body, ``["body"]`` ("value is not a valid dict").
* pydantic v2: a union tag comes before the index, ``["body", "list[FeedbackRequest]", 3,
  "data_id"]``; a field that is itself a union adds the member's tag after the field,
  ``[..., "value", "list[str]", 1]`` or ``[..., "value", "float"]``; and the other branch adds
  ``["body", "FeedbackRequest"]``, whose ``input`` echoes the whole request.

:func:`item_errors` turns any of these into ``{item_index: [(field, message), ...]}`` with the tags
stripped (``"value[1]"`` for an element of a list value), the other branch ignored, and the
entries one union lists per member merged into one. :func:`body_errors` keeps what names no item
(a body that is not JSON, not an array, or missing). :func:`describe` and :func:`format_rejection`
make the readable text. Pure functions on plain data; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional

__all__ = ["body_errors", "describe", "format_rejection", "item_errors", "merge_messages"]

#: Error types of a body that did not parse as JSON; their ``loc`` ends in a character offset.
_JSON_ERROR_TYPES = frozenset({"json_invalid", "value_error.jsondecode"})
#: pydantic v1's entry for the object branch of the body's union when the body is an array.
_V1_OTHER_BRANCH_TYPES = frozenset({"type_error.dict"})


def _is_index(segment: Any) -> bool:
    return type(segment) is int


def _message(entry: Mapping[str, Any]) -> str:
    msg = entry.get("msg")
    if isinstance(msg, str) and msg:
        return msg
    kind = entry.get("type")
    return str(kind) if kind else "invalid"


def _locate(entry: Mapping[str, Any], n: int, single: bool) -> Optional[tuple[int, str]]:
    """(item index, field) for an entry about one item of an n-item array, else None."""
    loc = entry.get("loc")
    if not isinstance(loc, (list, tuple)) or not loc or loc[0] != "body":
        return None
    if entry.get("type") in _JSON_ERROR_TYPES:
        return None
    rest = list(loc[1:])
    if single:
        # One object was sent: its fields come straight after "body" (after the object branch's
        # tag on pydantic 2); entries of the array branch are the other branch here.
        if rest and rest[0] == "FeedbackRequest":
            rest.pop(0)
        if not rest or not isinstance(rest[0], str) or rest[0].startswith("list["):
            return None
        rest.insert(0, 0)
    # v2: the list branch's tag ("list[FeedbackRequest]") comes before the index. Any other string
    # here is the object branch ("FeedbackRequest") or a field of a single-object body: not an
    # item of the array that was sent.
    while rest and isinstance(rest[0], str):
        if not rest[0].startswith("list["):
            return None
        rest.pop(0)
    if not rest or not _is_index(rest[0]) or not 0 <= rest[0] < n:
        return None
    index = rest.pop(0)
    field = ""
    for segment in rest:
        if _is_index(segment):
            field += f"[{segment}]"
        elif isinstance(segment, str) and not field:
            field = segment
        # Any later string is a union member's tag ("str", "list[str]", "str-enum[...]"): the
        # FeedbackRequest fields are flat, so no later string names a nested field.
    return index, field


def merge_messages(messages: Sequence[str]) -> str:
    """One message for a field listed once per union member.

    Duplicates go; messages that differ only in their last word share the rest ("Input should be
    a valid boolean, number or string"); the groups left are joined with "; ".
    """
    groups: dict[str, list[str]] = {}
    for message in dict.fromkeys(message for message in messages if message):
        head, _, tail = message.rpartition(" ")
        if " " in head:
            groups.setdefault(head, []).append(tail)
        else:  # too short to share a phrase: a group of its own
            groups.setdefault(message, [])
    if not groups:
        return "invalid"
    return "; ".join(
        f"{head} {_or_list(tails)}" if tails else head for head, tails in groups.items()
    )


def _or_list(parts: Sequence[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " or " + parts[-1]


def item_errors(detail: Any, n: int, *, single: bool = False) -> dict[int, list[tuple[str, str]]]:
    """``{item_index: [(field, message), ...]}`` for the items of an ``n``-item array a 422 names.

    ``detail`` is the ``detail`` member of the 422 body as parsed from JSON, in any pydantic v1 or
    v2 shape. Items come in index order; fields in the order the service first named them; an
    error about an item as a whole (not an object, say) has the field ``""``. Entries that name no
    item of the array (the object branch of the body's union, a JSON error, a missing body) are not
    here: see :func:`body_errors`. Anything that is not a list of error objects gives ``{}``.

    ``single=True`` reads the answer to one object sent on its own (not an array): its fields are
    reported as item 0, and ``n`` is ignored.
    """
    if single:
        n = 1
    if not isinstance(detail, list):
        return {}
    found: dict[int, dict[str, list[str]]] = {}
    for entry in detail:
        if not isinstance(entry, Mapping):
            continue
        place = _locate(entry, n, single)
        if place is None:
            continue
        index, field = place
        found.setdefault(index, {}).setdefault(field, []).append(_message(entry))
    return {
        index: [(field, merge_messages(messages)) for field, messages in found[index].items()]
        for index in sorted(found)
    }


def body_errors(detail: Any, n: int, *, single: bool = False) -> list[str]:
    """Messages of the entries about the request as a whole, for a request that named no item.

    When :func:`item_errors` finds items, the whole-body entries are only the other branch of the
    body's union answering too, and this returns ``[]``. Otherwise it returns the messages of the
    entries that name no item (a JSON error with its position, a missing or non-array body), or the
    ``detail`` itself when it is a plain string (``{"detail": "Not Found"}``).
    """
    if isinstance(detail, str):
        return [detail] if detail else []
    if not isinstance(detail, list) or item_errors(detail, n, single=single):
        return []
    messages: list[str] = []
    for entry in detail:
        if not isinstance(entry, Mapping):
            continue
        loc = entry.get("loc")
        message = _message(entry)
        if entry.get("type") in _JSON_ERROR_TYPES and isinstance(loc, (list, tuple)):
            ctx = entry.get("ctx")
            # Current FastAPI puts the reason in ctx.error, FastAPI 0.99 in ctx.msg.
            reason = (ctx.get("error") or ctx.get("msg")) if isinstance(ctx, dict) else None
            position = loc[-1] if loc and _is_index(loc[-1]) else None
            message = f"body is not valid JSON: {reason or message}"
            if position is not None:
                message += f" (at character {position})"
        elif isinstance(loc, (list, tuple)) and (
            "FeedbackRequest" in loc or entry.get("type") in _V1_OTHER_BRANCH_TYPES
        ):
            continue  # the object branch: the client sends arrays
        messages.append(message)
    return list(dict.fromkeys(messages))


def describe(fields: Sequence[tuple[str, str]]) -> str:
    """One item's problems on one line: ``data_id: Input should be a valid string; value: ...``."""
    return "; ".join(f"{field}: {message}" if field else message for field, message in fields)


def format_rejection(
    per_item: Mapping[int, Sequence[tuple[str, str]]],
    label: Optional[Callable[[int], str]] = None,
) -> str:
    """One line per refused item, ``item 3 (data_id='d'): value: Field required``.

    ``label(index)`` names an item (the default is ``item <index>``); no status code and no JSON.
    """
    lines = []
    for index in sorted(per_item):
        name = label(index) if label is not None else f"item {index}"
        lines.append(f"{name}: {describe(per_item[index])}")
    return "\n".join(lines)
