"""Test helpers for users of humanloop-logging: a local stand-in for the Humanloop feedback API.

:class:`FakeHumanloop` is a real HTTP/1.1 server on 127.0.0.1 that answers ``POST /v4/feedback``
as the service does (same validation, same 200/401/422 bodies) and records what it was sent, so
tests exercise the real transport, retries and threads instead of mocks. Faults can be injected to
test how a client copes with outages, resets, slow answers, a rate limit and rejected datapoints::

    from humanloop_logging.testing import FakeHumanloop

    with FakeHumanloop() as fake:
        configure_my_app(base_url=fake.base_url, api_key=fake.api_key)
        fake.fail_next(2, 503, retry_after=0.1)
        do_something_that_logs_feedback()
        assert fake.wait_for_items(1)
        assert fake.received[0]["type"] == "rating"

Under pytest the ``fake_humanloop`` fixture (see :mod:`humanloop_logging.pytest_plugin`) gives a
started instance. This package uses the standard library only and never imports pytest.
"""

from __future__ import annotations

from ._errors import ErrorLog
from ._fake import FakeHumanloop
from ._faults import RETRY_AFTER_FORMS
from ._recorded import RecordedRequest
from ._service import FEEDBACK_PATH, FLAVOURS

__all__ = [
    "FEEDBACK_PATH",
    "FLAVOURS",
    "RETRY_AFTER_FORMS",
    "ErrorLog",
    "FakeHumanloop",
    "RecordedRequest",
]
