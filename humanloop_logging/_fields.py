"""Which record attributes (or event-dict keys) the adapters read each feedback field from.

By default a field is read from the attribute of its own name: a record is feedback when it has
``data_id`` and ``type``. An application whose records already use those names for something else
renames them with ``fields=`` (``{"type": "feedback_type"}``); the mapping is checked once, at
construction, so that a mistake is a ``ConfigurationError`` naming the fix rather than feedback
that silently never matches, or records that match by accident.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping

from .exceptions import ConfigurationError

#: Feedback fields, and the record attribute / event-dict key each is read from by default.
FEEDBACK_FIELDS = ("data_id", "type", "value", "user", "created_at", "unset")

#: The attribute each field is read from, in FEEDBACK_FIELDS order.
FieldNames = tuple[str, str, str, str, str, str]

#: Attributes every ``LogRecord`` has: ``extra=`` cannot set them (``makeRecord`` refuses), and
#: each is on every record, so none can mark feedback.
LOG_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__
) | {"message", "asctime"}


def resolve_fields(fields: object, *, reserved: frozenset[str] = frozenset()) -> FieldNames:
    """The attribute or key each feedback field is read from, in FEEDBACK_FIELDS order.

    ``fields`` maps feedback fields to other names (``None``: every field its own name);
    ``reserved`` are names the adapter cannot read feedback from (a handler's LogRecord attributes).
    """
    if fields is None:
        return FEEDBACK_FIELDS
    if not isinstance(fields, Mapping):
        raise ConfigurationError(
            "fields must be a mapping of feedback field to the attribute it is read from, e.g. "
            f"{{'type': 'feedback_type'}}; got {type(fields).__name__}"
        )
    names = dict(zip(FEEDBACK_FIELDS, FEEDBACK_FIELDS))
    for feedback_field, name in fields.items():
        if feedback_field not in names:
            close = difflib.get_close_matches(str(feedback_field), FEEDBACK_FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(
                f"fields: {feedback_field!r} is not a feedback field{hint}; the keys of fields "
                f"are feedback fields ({', '.join(FEEDBACK_FIELDS)}), its values the names to "
                "read them from"
            )
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"fields[{feedback_field!r}] must be a non-empty string naming the attribute "
                f"to read {feedback_field} from; got {name!r}"
            )
        if name in reserved:
            raise ConfigurationError(
                f"fields[{feedback_field!r}] = {name!r}: every LogRecord has a {name!r} "
                "attribute of its own, which extra= cannot set; choose another name"
            )
        names[feedback_field] = name
    read_by: dict[str, str] = {}
    for feedback_field, name in names.items():
        if name in read_by:
            raise ConfigurationError(
                f"fields: {read_by[name]!r} and {feedback_field!r} would both be read from "
                f"{name!r}; give each its own name (renaming one field to another's name "
                "means renaming that one too)"
            )
        read_by[name] = feedback_field
    data_id, type_, value, user, created_at, unset = (names[name] for name in FEEDBACK_FIELDS)
    return data_id, type_, value, user, created_at, unset
