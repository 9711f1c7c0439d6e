"""The ``settings-table`` directive: the settings table, generated from their declaration.

``humanloop_logging._config.settings_table()`` writes the table from the declared settings (name,
default, environment variable, meaning), so the page built from it can never disagree with the
code. In a Markdown page::

    ```{settings-table}
    ```
"""

from __future__ import annotations

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.typing import ExtensionMetadata

from humanloop_logging import _config
from humanloop_logging._config import settings_table


class SettingsTable(SphinxDirective):
    """Every declared setting as one row of a table, parsed as the page's own Markdown."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        container = nodes.container(classes=["settings-table"])
        source = self.get_source_info()[0]
        rows = StringList(settings_table().splitlines(), source=source)
        self.state.nested_parse(rows, self.content_offset, container)
        # The table changes whenever a setting does: rebuild the page then.
        self.env.note_dependency(str(_config.__file__))
        return list(container.children)


def setup(app: Sphinx) -> ExtensionMetadata:
    app.add_directive("settings-table", SettingsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
