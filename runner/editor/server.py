"""`accel-run lsp`: a language server over stdio that says in the editor what `accel-run --validate` says.

Built on pygls (the Language Server Protocol over stdio) and lsprotocol (its types), the optional
extra `pip install 'accel-run[lsp]'`. It runs beside yaml-language-server, which keeps the
schema's completion of keys and values; this server adds what only accel-run knows:

- textDocument/publishDiagnostics: the CLI's errors and warnings, its words (did-you-mean,
  `[acknowledge: ...]`) on its line and column, after every change;
- textDocument/completion: the file's own run names after `extends:`, `run:` and `baseline:`;
- textDocument/hover: a run name shows that run as `--explain` does.

Validation runs in the request's own turn (a spec validates in a few milliseconds); it imports
neither torch nor accelerate.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path
from pygls.workspace import TextDocument
from pygls.workspace.position_codec import ServerTextPosition, ServerTextRange

from runner import __version__
from runner.editor import features
from runner.errors import Severity
from runner.spec.validate import ValidatedSpec

SOURCE = "accel-run"


@dataclass
class _State:
    """Per open document: the last spec that validated without errors (for hovers while the file is mid-edit)."""

    valid: dict[str, ValidatedSpec] = field(default_factory=dict)
    frozen: bool = False  # gc.freeze() done, after the first validation imported everything


def build_server(*, every_file: bool = False) -> LanguageServer:
    """The server with its features registered; `start_io()` runs it on stdin and stdout.

    Only specs are checked (features.is_spec), unless `every_file`: then every document, as
    `accel-run --validate` checks every file it is given.
    """
    server = LanguageServer("accel-run", __version__, text_document_sync_kind=types.TextDocumentSyncKind.Full)
    state = _State()

    def publish(uri: str) -> None:
        document = server.workspace.get_text_document(uri)
        if not (every_file or features.is_spec(document.source)):
            state.valid.pop(uri, None)
            server.text_document_publish_diagnostics(
                types.PublishDiagnosticsParams(uri=uri, version=document.version, diagnostics=[])
            )
            return
        validation = features.check(document.source, _path(uri))
        if validation.spec is not None:
            state.valid[uri] = validation.spec
        diagnostics = [_diagnostic(document, finding) for finding in features.findings(validation, document.source)]
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=document.version, diagnostics=diagnostics)
        )
        if not state.frozen:
            # The modules and models loaded by now live as long as the server: keeping them out of the
            # collector's full passes halves the slowest validations (measured: 300 edits of day6.yaml
            # in one process, the slowest 20-27 ms without, 9-12 ms with; the median is unchanged).
            gc.freeze()
            state.frozen = True

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(params: types.DidOpenTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(params: types.DidChangeTextDocumentParams) -> None:
        publish(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(params: types.DidSaveTextDocumentParams) -> None:
        publish(params.text_document.uri)  # a script the spec names may have appeared meanwhile

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(params: types.DidCloseTextDocumentParams) -> None:
        state.valid.pop(params.text_document.uri, None)
        server.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[])
        )

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[" ", ":"]))
    def completion(params: types.CompletionParams) -> types.CompletionList:
        uri = params.text_document.uri
        document = server.workspace.get_text_document(uri)
        where = document.position_from_client_units(params.position)
        line = document.lines[where.line].rstrip("\r\n") if where.line < len(document.lines) else ""
        reference = features.reference_at(line, where.character)
        if reference is None or not (every_file or features.is_spec(document.source)):
            return types.CompletionList(is_incomplete=False, items=[])
        own = features.current_run(document.source, _path(uri), where.line) if reference.key == "extends" else None
        replaced = document.range_to_client_units(
            ServerTextRange(
                ServerTextPosition(where.line, reference.start), ServerTextPosition(where.line, where.character)
            )
        )
        items = [
            types.CompletionItem(
                label=choice.name,
                kind=types.CompletionItemKind.Reference,
                detail=choice.detail or None,
                sort_text=f"{index:04d}",  # the file's order
                filter_text=choice.name,
                text_edit=types.TextEdit(range=replaced, new_text=features.insert_text(choice.name, reference)),
            )
            for index, choice in enumerate(features.run_choices(document.source, _path(uri), reference, own))
        ]
        return types.CompletionList(is_incomplete=False, items=items)

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(params: types.HoverParams) -> types.Hover | None:
        uri = params.text_document.uri
        document = server.workspace.get_text_document(uri)
        where = document.position_from_client_units(params.position)
        found = features.run_at(document.source, _path(uri), where.line, where.character)
        spec = state.valid.get(uri)
        if found is None or spec is None:
            return None
        name, extent = found
        text = features.run_hover(spec, name, stale=spec.document.text != document.source)
        if text is None:
            return None
        return types.Hover(
            contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
            range=document.range_to_client_units(_server_range(extent)),
        )

    return server


def _path(uri: str) -> str:
    """The file behind a URI (the CLI resolves a script's path against its folder), or the URI itself."""
    return to_fs_path(uri) or uri


def _server_range(extent: features.Extent) -> ServerTextRange:
    return ServerTextRange(ServerTextPosition(extent.line, extent.start), ServerTextPosition(extent.line, extent.end))


def _diagnostic(document: TextDocument, finding: features.Finding) -> types.Diagnostic:
    diagnostic = finding.diagnostic
    return types.Diagnostic(
        range=document.range_to_client_units(_server_range(finding.extent)),
        message=diagnostic.message,
        severity=types.DiagnosticSeverity.Error
        if diagnostic.severity is Severity.ERROR
        else types.DiagnosticSeverity.Warning,
        source=SOURCE,
    )


def serve(*, every_file: bool = False) -> int:
    """Run the server on stdin and stdout until the client says exit; the exit code."""
    build_server(every_file=every_file).start_io()
    return 0
