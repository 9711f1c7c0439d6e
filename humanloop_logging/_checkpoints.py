"""The state file of ``humanloop-logging send``: per input, how far its lines are settled.

One JSON object, keyed by the input's absolute path: the identity of the file that was being read
(device, inode and a hash of its first bytes, so a rotated file or a reused inode is recognised)
and the byte offset and number of the last line whose fate is settled (sent, rejected, or not
feedback). It is replaced whole, through a temporary file and ``os.replace``, so a reader (or a
``kill -9`` halfway through a save) sees the old state or the new one, never a mix.

A save survives the process dying at once. Surviving the machine losing power needs an
``fsync``, which costs milliseconds; it is done at most once a second (and at the end), so a power
cut costs at most the last second's progress (sent again), never a line.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Optional

from ._sources import Identity, Position

__all__ = ["Checkpoints", "default_state_path"]

_VERSION = 1
#: Seconds between fsyncs of the state file.
SYNC_EVERY = 1.0


def default_state_path(spool_path: Optional[str]) -> str:
    """Beside the spool when one is configured; else the user's state directory (XDG)."""
    if spool_path:
        return spool_path + ".send-state.json"
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(base, "humanloop-logging", "send-state.json")


class Checkpoints:
    """The state file, read once, saved after every settled chunk."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self._inputs: dict[str, dict[str, Any]] = {}
        self._synced = 0.0
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as exc:
            raise ValueError(f"the state file {self.path} cannot be read ({exc}); move it away "
                             "to start over") from None  # fmt: skip
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise ValueError(f"the state file {self.path} is not one this version writes; move "
                             "it away to start over")  # fmt: skip
        inputs = data.get("inputs")
        if isinstance(inputs, dict):
            self._inputs = {str(key): value for key, value in inputs.items()}

    def get(self, key: str) -> Optional[Position]:
        entry = self._inputs.get(key)
        if not isinstance(entry, dict):
            return None
        try:
            identity = entry.get("identity")
            return Position(
                Identity.from_json(identity) if isinstance(identity, dict) else None,
                int(entry["offset"]),
                int(entry["line"]),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def set(self, key: str, position: Position) -> None:
        self._inputs[key] = {
            "identity": None if position.identity is None else position.identity.to_json(),
            "offset": position.offset,
            "line": position.line,
            "saved_at": time.time(),
        }

    def save(self, *, sync: bool = False) -> None:
        """Write the state atomically; fsync it when ``sync`` or a second has passed."""
        now = time.monotonic()
        sync = sync or now - self._synced >= SYNC_EVERY
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        data = json.dumps({"version": _VERSION, "inputs": self._inputs}, sort_keys=True)
        # One send holds the state file's lock, so a fixed name for the new version is safe.
        temporary = self.path + ".new"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(handle, data.encode("utf-8"))
            if sync:
                os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temporary, self.path)
        if sync:
            self._synced = now
            try:
                fd = os.open(directory, os.O_RDONLY)
            except OSError:
                return
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
