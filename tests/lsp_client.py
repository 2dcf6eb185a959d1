"""A minimal Language Server Protocol client over stdio, enough to drive yaml-language-server and `accel-run lsp`.

Messages are JSON-RPC with `Content-Length` headers. A reader thread queues what the server sends;
requests the server makes of the client (its configuration, capability registrations) are answered
here, and `publishDiagnostics` notifications are kept per document.
"""

from __future__ import annotations

import json
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

Message = dict[str, Any]


def _read_message(stream: BinaryIO) -> Message | None:
    """One message from the server, or None when its output closed."""
    length = None
    while True:
        line = stream.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None:
        return None
    body: Message = json.loads(stream.read(length).decode("utf-8"))
    return body


class LanguageServer:
    """A language server started as a child process and spoken to over its stdin and stdout."""

    def __init__(self, argv: Sequence[str], settings: dict[str, Any], root: Path) -> None:
        self.settings = settings
        self.stderr = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server never blocks on it
        self.process = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr)
        self.inbox: queue.Queue[Message | None] = queue.Queue()
        self.diagnostics: dict[str, list[Message]] = {}
        self.published_versions: dict[str, int | None] = {}  # the document version each publication is for
        self.next_id = 0
        self.versions: dict[str, int] = {}
        threading.Thread(target=self._pump, daemon=True).start()
        self.request(
            "initialize",
            {
                "processId": None,
                "rootUri": root.as_uri(),
                "capabilities": {
                    "textDocument": {
                        "completion": {"completionItem": {"snippetSupport": False}},
                        "hover": {"contentFormat": ["markdown", "plaintext"]},
                        "publishDiagnostics": {},
                    },
                    "workspace": {"configuration": True},
                },
                "initializationOptions": {},
            },
        )
        self.notify("initialized", {})
        self.notify("workspace/didChangeConfiguration", {"settings": settings})

    def _pump(self) -> None:
        assert self.process.stdout is not None
        while True:
            message = _read_message(self.process.stdout)
            self.inbox.put(message)
            if message is None:
                return

    def _send(self, message: Message) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.process.stdin is not None
        self.process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.process.stdin.flush()

    def notify(self, method: str, params: Any) -> None:
        """Send a notification (no answer expected)."""
        self._send({"method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = 30) -> Any:
        """Send a request and return its result, handling whatever else arrives meanwhile."""
        self.next_id += 1
        wanted = self.next_id
        self._send({"id": wanted, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline, f"an answer to {method}")
            if message.get("id") == wanted and "method" not in message:
                if "error" in message:
                    raise RuntimeError(f"{method} failed: {message['error']}")
                return message.get("result")

    def _next(self, deadline: float, waiting_for: str) -> Message:
        try:
            message = self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"the language server sent no {waiting_for} in time") from None
        if message is None:
            self.stderr.seek(0)
            stderr = self.stderr.read().decode(errors="replace")
            raise RuntimeError(f"the language server exited while we waited for {waiting_for}: {stderr[-2000:]}")
        self._handle(message)
        return message

    def _handle(self, message: Message) -> None:
        method = message.get("method")
        if method == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
            self.published_versions[message["params"]["uri"]] = message["params"].get("version")
        elif method is not None and "id" in message:  # a request of the server to us
            result: Any = None
            if method == "workspace/configuration":
                result = [self.settings.get(item.get("section", ""), None) for item in message["params"]["items"]]
            self._send({"id": message["id"], "result": result})

    def open(self, path: Path, text: str) -> str:
        """Open (or replace) a document; returns its URI."""
        uri = path.as_uri()
        if uri in self.versions:
            self.versions[uri] += 1
            self.diagnostics.pop(uri, None)
            self.notify(
                "textDocument/didChange",
                {"textDocument": {"uri": uri, "version": self.versions[uri]}, "contentChanges": [{"text": text}]},
            )
        else:
            self.versions[uri] = 1
            self.notify(
                "textDocument/didOpen",
                {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1, "text": text}},
            )
        return uri

    def wait_for_diagnostics(self, uri: str, timeout: float = 30, version: int | None = None) -> list[Message]:
        """The diagnostics the server publishes for `uri` after it was opened or changed (for `version`, if given)."""
        deadline = time.monotonic() + timeout
        while uri not in self.diagnostics or (version is not None and self.published_versions.get(uri) != version):
            self._next(deadline, f"diagnostics for {uri}")
        return self.diagnostics[uri]

    def completion_items(self, uri: str, line: int, character: int) -> list[Message]:
        """The completion items the server offers at a position (0-based line and character), in its order."""
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}},
        )
        items: list[Message] = result.get("items", []) if isinstance(result, dict) else (result or [])
        return items

    def completion_labels(self, uri: str, line: int, character: int) -> list[str]:
        """The labels the server offers at a position (0-based line and character)."""
        return sorted(str(item["label"]) for item in self.completion_items(uri, line, character))

    def hover(self, uri: str, line: int, character: int) -> str:
        """The hover text at a position ('' when none)."""
        result = self.request(
            "textDocument/hover", {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}
        )
        if not result:
            return ""
        contents = result["contents"]
        return str(contents["value"] if isinstance(contents, dict) else contents)

    def close(self) -> None:
        """Shut the server down politely, then make sure it is gone."""
        try:
            self.request("shutdown", None, timeout=10)
            self.notify("exit", None)
            self.process.wait(timeout=10)
        except (RuntimeError, TimeoutError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.stderr.close()
