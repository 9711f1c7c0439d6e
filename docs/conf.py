"""Sphinx configuration of the humanloop-logging documentation (Markdown pages through MyST).

Build it strictly, as CI does: ``python -m sphinx -W --keep-going -n -b html docs docs/_build/html``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).parent
# The checkout's own package (not an installed copy), and the local extensions.
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]

from humanloop_logging import __version__  # noqa: E402

project = "humanloop-logging"
author = "humanloop-logging contributors"
copyright = "humanloop-logging contributors"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "settings_table",
]

source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]

myst_enable_extensions = ["colon_fence", "deflist"]
# [text](page.md#a-heading) links to a heading by its slug, down to ###.
myst_heading_anchors = 3

html_theme = "furo"
html_title = f"humanloop-logging {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "signature"

# Types from the standard library and from other packages in the signatures, which no inventory
# here can resolve: intersphinx would need the network. Every name of this project resolves.
nitpick_ignore_regex = [
    ("py:class", r"collections\.abc\.\w+"),
]
nitpick_ignore = [
    ("py:class", "os.PathLike"),
    ("py:class", "logging.LogRecord"),
    ("py:class", "tenacity.RetryCallState"),
    # prometheus_client's and OpenTelemetry's types in the metrics signatures (optional extras).
    ("py:class", "PrometheusMetric"),
    ("py:class", "CollectorRegistry"),
    ("py:class", "MeterProvider"),
]

# Wide tables wrap their code cells (docs/_static/tables.css).
html_static_path = ["_static"]
html_css_files = ["tables.css"]
