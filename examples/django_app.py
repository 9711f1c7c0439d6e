"""Django: the feedback handler in ``LOGGING``, and a view that logs a rating.

The whole project is this one file (settings, URLs, the view and the WSGI application) so that it
reads at a glance; in a project of your own the ``LOGGING`` entry goes into ``settings.py`` as it
is. Set ``HUMANLOOP_API_KEY`` (or run ``humanloop-logging serve`` and set ``HUMANLOOP_BASE_URL`` to
the address it prints), then, from ``examples/``::

    python django_app.py runserver                     # development; Ctrl-C sends what is queued
    gunicorn -w 2 django_app:application               # production

and rate an answer: ``curl -X POST localhost:8000/feedback/data_abc -d rating=good``.
"""

from __future__ import annotations

import logging
import os
import sys

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

settings.configure(
    DEBUG=False,
    SECRET_KEY=os.environ.get("DJANGO_SECRET_KEY", "only-for-this-example"),
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    LOGGING={
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            # Reads HUMANLOOP_API_KEY and HUMANLOOP_BASE_URL; settings go here as keywords.
            "humanloop": {"()": "humanloop_logging.FeedbackHandler"},
        },
        "loggers": {
            # Feedback on a logger of its own at INFO: Django leaves the root logger at Python's
            # WARNING, which would drop logger.info(), and feedback is not for the console.
            "app.feedback": {"handlers": ["humanloop"], "level": "INFO", "propagate": False},
        },
    },
)

feedback_log = logging.getLogger("app.feedback")


@csrf_exempt  # an API endpoint; a form in your own templates would carry the CSRF token instead
@require_POST
def rate_answer(request: HttpRequest, data_id: str) -> JsonResponse:
    rating = request.POST.get("rating", "good")
    feedback_log.info(
        "user rated answer", extra={"data_id": data_id, "type": "rating", "value": rating}
    )
    return JsonResponse({"data_id": data_id, "rating": rating, "pid": os.getpid()})


urlpatterns = [path("feedback/<str:data_id>", rate_answer)]


if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
else:  # imported by a WSGI server: django_app:application
    from django.core.wsgi import get_wsgi_application

    application = get_wsgi_application()
