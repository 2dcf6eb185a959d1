"""The first real error in a launch's stderr, not the echoes it leaves in the other processes.

When one rank of a multi-process launch fails, stderr holds several tracebacks, and the last
lines are the least useful: the peers fail in their next collective ("Connection closed by
peer": a consequence), torchrun's agent raises ChildFailedError and prints its Failures/Root
Cause box, and a launch stopped by accel-run (a time limit, Ctrl-C) ends in the agent's
SignalException. `first_error` picks, in that order: the traceback of the rank torchrun names as
the root cause, the first other traceback or fatal line that is not a consequence, the root
cause's rank and exit code (a rank killed or exited without a traceback), and finally the last
lines that are not consequences. Pure text in, text out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_LINE_CHARS = 400  # one line of a log can be a megabyte (a tensor printed): keep its start

_PREFIX = re.compile(r"^\[(?:rank|default)(\d+)\]:\s?")
_GLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ ")
_TRACEBACK = "Traceback (most recent call last):"
_CHAINED = (
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)
_FATAL = re.compile(
    r"^(?:Fatal Python error|terminate called after throwing|accel-run worker:|Segmentation fault"
    r"|(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception)(?::|$))"
)
# What a failure elsewhere leaves behind: peers losing their connection, the launcher reporting
# its children, a stop by signal. Matched in a traceback's exception line or a fatal line.
CONSEQUENCES = (
    "SignalException",
    "ChildFailedError",
    "CalledProcessError",  # accelerate's one-process launcher reporting its child's exit
    "KeyboardInterrupt",
    "Connection closed by peer",
    "Connection reset by peer",
    "remote worker",  # gloo: "typically caused by a remote worker crashing"
    "remote process exited",  # NCCL
    "NCCL communicator was aborted",
)
_ROOT_RANK = re.compile(r"^\s*rank\s*:\s*(\d+)")
_ROOT_FACTS = re.compile(r"^\s*(?:rank|exitcode)\s*:")
_BOX_TRACEBACK = re.compile(r"^\s*traceback\s*:\s*Traceback \(most recent call last\):")


@dataclass(frozen=True)
class _Line:
    text: str  # as written, rank prefix included
    body: str  # without the rank prefix
    rank: int | None


@dataclass(frozen=True)
class _Block:
    """A traceback or a fatal line with its continuation: indices into the lines, and who wrote it."""

    indices: tuple[int, ...]
    rank: int | None
    last: str  # the exception (or fatal) line's body

    @property
    def consequence(self) -> bool:
        return any(marker in self.last for marker in CONSEQUENCES)


def error_line(excerpt: str) -> str:
    """The exception line of an excerpt ('OSError: [Errno 28] No space left on device'), or ''."""
    for line in reversed(excerpt.splitlines()):
        text = _PREFIX.sub("", line).strip()
        if _FATAL.match(text) and not any(c in text for c in CONSEQUENCES):
            return text[:MAX_LINE_CHARS]
    return ""


def first_error(text: str, lines: int = 20) -> str:
    """The failing rank's first real error in a launch's stderr (at most `lines` lines), else its last lines."""
    parsed = [_parse(line) for line in text.splitlines()]
    summary, root_rank, root_facts, root_traceback = _elastic_summary(parsed)
    blocks = _blocks(parsed, skip=summary)
    real = [b for b in blocks if not b.consequence]
    chosen = next((b for b in real if root_rank is not None and b.rank == root_rank), None) or (
        real[0] if real else None
    )
    if chosen is not None:
        return _bounded([parsed[i].text for i in chosen.indices], lines)
    if root_traceback:
        return _bounded(root_traceback, lines)
    noise = summary | {i for b in blocks for i in b.indices} | {i for i, line in enumerate(parsed) if _is_log(line)}
    rest = [line.text for i, line in enumerate(parsed) if i not in noise and line.body.strip()]
    if root_facts:
        return _bounded(rest[len(rest) - max(0, lines - len(root_facts)) :] + root_facts, lines)
    # Only consequences (a launch stopped by a signal): their exception lines say what happened.
    kept = rest or [parsed[b.indices[-1]].text for b in blocks] or [line.text for line in parsed if line.body.strip()]
    return _bounded(kept[-lines:], lines)


def _parse(line: str) -> _Line:
    line = line if len(line) <= MAX_LINE_CHARS else line[:MAX_LINE_CHARS] + " [...]"
    match = _PREFIX.match(line)
    if match:
        return _Line(line, line[match.end() :], int(match[1]))
    return _Line(line, line, None)


def _is_log(line: _Line) -> bool:
    """torch's glog-style lines (W1128 06:11:01.454000 3271 ...): the agent's own narration."""
    return bool(_GLOG.match(line.body))


def _elastic_summary(parsed: list[_Line]) -> tuple[set[int], int | None, list[str], list[str]]:
    """torchrun's failure box: its line indices, the root-cause rank, that rank's rank/exit code lines, and
    the traceback the box holds (a forked rank's error is only there: its own stderr printed none)."""
    summary: set[int] = set()
    root_rank: int | None = None
    root_facts: list[str] = []
    root_traceback: list[str] = []
    index = 0
    while index < len(parsed):
        is_rule = re.fullmatch(r"=+", parsed[index].body.strip()) is not None
        if is_rule and index + 1 < len(parsed) and parsed[index + 1].body.rstrip().endswith(" FAILED"):
            end = index + 1
            while end < len(parsed) and not (end > index + 1 and re.fullmatch(r"=+", parsed[end].body.strip())):
                end += 1
            box = range(index, min(end + 1, len(parsed)))
            summary.update(box)
            in_root = in_traceback = False
            for i in box:
                body = parsed[i].body
                traceback_at = _BOX_TRACEBACK.match(body)
                if body.startswith("Root Cause"):
                    in_root, root_facts = True, [body.rstrip()]
                elif in_root and traceback_at and not root_traceback:
                    in_traceback, root_traceback = True, [_TRACEBACK]
                elif in_traceback and body.strip() and not re.fullmatch(r"=+", body.strip()):
                    root_traceback.append(body.rstrip())
                elif in_root and _ROOT_FACTS.match(body):
                    root_facts.append(body.rstrip())
                    match = _ROOT_RANK.match(body)
                    if match and root_rank is None:
                        root_rank = int(match[1])
            index = end
        index += 1
    return summary, root_rank, root_facts, _dedented(root_traceback)


def _dedented(lines: list[str]) -> list[str]:
    """The box's traceback lines without the box's indentation (the header line stays as it is)."""
    if len(lines) < 2:
        return []
    indent = min(len(line) - len(line.lstrip()) for line in lines[1:])
    return [lines[0], *(line[indent:] for line in lines[1:])]


def _blocks(parsed: list[_Line], skip: set[int]) -> list[_Block]:
    """Every traceback (followed per rank, across interleaved lines) and every fatal line, in order."""
    blocks: list[_Block] = []
    taken: set[int] = set(skip)
    for start, line in enumerate(parsed):
        if start in taken:
            continue
        if line.body.strip() == _TRACEBACK:
            block = _traceback(parsed, start, taken)
        elif _FATAL.match(line.body):
            block = _fatal(parsed, start, taken)
        else:
            continue
        taken.update(block.indices)
        blocks.append(block)
    return blocks


def _traceback(parsed: list[_Line], start: int, taken: set[int]) -> _Block:
    """From 'Traceback (most recent call last):' to its exception line, chained exceptions included."""
    rank = parsed[start].rank
    indices, last = [start], ""
    ended = False
    for i in range(start + 1, len(parsed)):
        line = parsed[i]
        if i in taken or line.rank != rank or _is_log(line):
            continue  # another process's line interleaved with this one
        body = line.body
        if not ended:
            indices.append(i)
            if body and not body[0].isspace() and body.strip() != _TRACEBACK and body.strip() not in _CHAINED:
                last, ended = body, True
        elif body.strip() in _CHAINED:
            indices.append(i)
            ended = False
        elif not body.strip() and _chain_follows(parsed, i, rank):
            indices.append(i)
        elif body[:1].isspace():
            indices.append(i)  # a message over several lines
        else:
            break
    return _Block(tuple(indices), rank, last)


def _chain_follows(parsed: list[_Line], index: int, rank: int | None) -> bool:
    """Whether a blank line sits between two chained exceptions of the same process."""
    for line in parsed[index + 1 : index + 3]:
        if line.rank == rank and line.body.strip():
            return line.body.strip() in _CHAINED
    return False


def _fatal(parsed: list[_Line], start: int, taken: set[int]) -> _Block:
    """A fatal line printed without a traceback, and the indented lines that continue it."""
    rank = parsed[start].rank
    indices = [start]
    for i in range(start + 1, len(parsed)):
        line = parsed[i]
        if i in taken or line.rank != rank or not line.body[:1].isspace():
            break
        indices.append(i)
    return _Block(tuple(indices), rank, parsed[start].body)


def _bounded(kept: list[str], lines: int) -> str:
    """At most `lines` lines: the first (what it is) and the last (where and why), the middle elided."""
    if len(kept) > lines:
        head = max(1, lines // 4)
        tail = lines - head - 1
        kept = [*kept[:head], f"[... {len(kept) - head - tail} lines left out ...]", *kept[len(kept) - tail :]]
    return "\n".join(kept)
