"""examples/fastapi_app.py without its ``FeedbackMiddleware`` line: the quickstart as users
had it before, with the same handler and route (imported from examples/fastapi_app.py)."""

from __future__ import annotations

import os

from fastapi import FastAPI
from fastapi_app import rate_answer

app = FastAPI()
app.add_api_route("/answers/{data_id}/rating", rate_answer, methods=["POST"])


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]))
