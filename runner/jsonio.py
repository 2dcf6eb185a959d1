"""Crash-safe JSON files: written to a temporary file in the same folder, then renamed over the target."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from runner.errors import machine_error


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: result files are readable by the usual tools


def finite(data: Any) -> Any:
    """JSON has no NaN or infinity: non-finite floats become null (a diverged loss, an unbounded ratio)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {key: finite(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [finite(value) for value in data]
    return data


def write_text_atomic(path: str | Path, text: str, *, durable: bool = True) -> None:
    """Write a file so a reader (or a crash) sees the old content or the new one, never half of one.

    `durable` also flushes it to disk before the rename (results); progress files skip that, as
    an fsync on the training's hot path would stall every rank. The rename replaces whatever was at
    `path` (a symbolic link too): nothing is ever written through a link.
    """
    # surrogateescape: a path that is not valid UTF-8 (a folder name in another encoding) is
    # written back as the bytes it was read from
    write_bytes_atomic(path, text.encode("utf-8", errors="surrogateescape"), durable=durable)


def write_bytes_atomic(path: str | Path, data: bytes, *, durable: bool = True) -> None:
    """write_text_atomic for bytes (a plot, a copy of a damaged file)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise machine_error(exc, "writing", target) from None
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), _FILE_MODE)
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise machine_error(exc, "writing", target) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, *, durable: bool = True) -> None:
    """JSON (non-finite numbers as null) written like write_text_atomic."""
    write_text_atomic(path, json.dumps(finite(data), indent=2, allow_nan=False, default=str) + "\n", durable=durable)


class TooDeep(ValueError):
    """JSON nested deeper than Python's parser can follow (its recursion limit): damaged, like a truncated file."""


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; a file nested too deeply raises TooDeep, a ValueError like any other unreadable JSON."""
    with open(path, encoding="utf-8") as handle:
        try:
            return json.load(handle)
        except RecursionError:
            raise TooDeep("JSON nested deeper than Python's parser can follow") from None
