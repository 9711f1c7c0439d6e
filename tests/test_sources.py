"""Reading log files as ``humanloop-logging send`` does: held partial lines, gzip, and following a
file across what log shippers do to it (rename rotation, copytruncate, truncation), as plain code.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from humanloop_logging._sources import FileSource, Position, Source, open_source

NEEDLE = b'"data_id"'


def line(n: int, feedback: bool = True) -> bytes:
    if feedback:
        return b'{"data_id": "d-%d", "type": "rating", "value": "good"}\n' % n
    return b'{"event": "other %d"}\n' % n


def drain(source: Source, follow: bool = True) -> list[bytes]:
    """Everything the source has now (reads until one gives nothing)."""
    got: list[bytes] = []
    while True:
        read = source.read(follow)
        got.extend(text for _, _, text in read.lines)
        if not (read.lines or read.count or read.size) or source.done:
            return got


def ids(lines: list[bytes]) -> list[str]:
    return [text.split(b'"')[3].decode() for text in lines]


def test_only_needle_lines_are_handed_out_and_all_are_counted(tmp_path: Path) -> None:
    """Lines without the data_id key are counted, not returned; numbers and offsets stay exact."""
    path = tmp_path / "app.log"
    data = line(1) + line(2, False) + line(3, False) + line(4)
    path.write_bytes(data)
    source = open_source(str(path), NEEDLE, None)
    read = source.read()
    assert [number for number, _, _ in read.lines] == [1, 4]
    assert read.lines[1][1] == len(data)
    assert read.count == 4
    assert read.end.offset == len(data)
    assert read.end.line == 4


def test_a_partial_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    """A line being written is read once whole, never in two halves."""
    path = tmp_path / "app.log"
    whole = line(2)
    path.write_bytes(line(1) + whole[:20])
    source = FileSource(str(path), NEEDLE)
    assert ids(drain(source)) == ["d-1"]
    with path.open("ab") as out:
        out.write(whole[20:])
    assert ids(drain(source)) == ["d-2"]


def test_resume_from_a_position(tmp_path: Path) -> None:
    """A checkpoint's position starts the next read after the settled lines, numbers continued."""
    path = tmp_path / "app.log"
    path.write_bytes(line(1) + line(2))
    first = FileSource(str(path), NEEDLE)
    read = first.read()
    first.close()
    with path.open("ab") as out:
        out.write(line(3))
    again = FileSource(str(path), NEEDLE, read.end)
    resumed = again.read()
    assert ids([text for _, _, text in resumed.lines]) == ["d-3"]
    assert resumed.lines[0][0] == 3


def test_rename_rotation_reads_the_old_file_to_its_end_first(tmp_path: Path) -> None:
    """Lines written to the old file before the rotation are read before the new file's."""
    path = tmp_path / "app.log"
    path.write_bytes(line(1))
    source = FileSource(str(path), NEEDLE)
    assert ids(drain(source)) == ["d-1"]
    with path.open("ab") as out:
        out.write(line(2))
    os.rename(path, tmp_path / "app.log.1")
    assert drain(source) == [line(2).rstrip(b"\n")]  # the path is missing for a moment
    path.write_bytes(line(3))
    assert ids(drain(source)) == ["d-3"]


def test_copytruncate_and_truncation_start_again_at_the_top(tmp_path: Path) -> None:
    """A file that got shorter, or whose first bytes changed, is read again from the start."""
    path = tmp_path / "app.log"
    path.write_bytes(line(1) + line(2))
    source = FileSource(str(path), NEEDLE)
    assert ids(drain(source)) == ["d-1", "d-2"]
    shutil.copyfile(path, tmp_path / "app.log.1")
    with path.open("r+b") as out:
        out.truncate(0)
    path.write_bytes(line(3))
    assert ids(drain(source)) == ["d-3"]
    # Truncated and written past the old length before the next look: the head tells.
    with path.open("r+b") as out:
        out.truncate(0)
    path.write_bytes(line(40) + line(50) + line(60))
    assert ids(drain(source)) == ["d-40", "d-50", "d-60"]


def test_a_restart_finds_the_rotated_file_by_its_identity(tmp_path: Path) -> None:
    """Rotated while no one read it: the rest of the old file comes first, then the new one."""
    path = tmp_path / "app.log"
    path.write_bytes(line(1))
    first = FileSource(str(path), NEEDLE)
    end = first.read().end
    first.close()
    with path.open("ab") as out:
        out.write(line(2))
    os.rename(path, tmp_path / "app.log.1")
    path.write_bytes(line(3))
    source = FileSource(str(path), NEEDLE, end)
    assert ids(drain(source)) == ["d-2", "d-3"]
    assert any("rotated" in note for note in source.notes)


def test_a_reused_inode_is_not_the_checkpointed_file(tmp_path: Path) -> None:
    """Same path and inode but other first bytes: a new file, read from its start."""
    path = tmp_path / "app.log"
    path.write_bytes(line(1) + line(2))
    first = FileSource(str(path), NEEDLE)
    end = first.read().end
    first.close()
    with path.open("r+b") as out:  # same inode, new content, longer than the old offset
        out.truncate(0)
        out.write(line(7) + line(8) + line(9))
    source = FileSource(str(path), NEEDLE, end)
    assert ids(drain(source, follow=False)) == ["d-7", "d-8", "d-9"]


def test_gzip_resumes_and_its_last_line_needs_no_newline(tmp_path: Path) -> None:
    """A gzip file is read whole, its unterminated last line included, and resumes by offset."""
    path = tmp_path / "app.log.gz"
    with gzip.open(path, "wb") as out:
        out.write(line(1) + line(2, False) + line(3).rstrip(b"\n"))
    source = open_source(str(path), NEEDLE, None)
    assert ids(drain(source, follow=False)) == ["d-1", "d-3"]
    source.close()
    first = open_source(str(path), NEEDLE, None)
    end = first.read().end
    first.close()
    middle = Position(end.identity, len(line(1)), 1)
    again = open_source(str(path), NEEDLE, middle)
    assert ids(drain(again, follow=False)) == ["d-3"]
    again.close()
