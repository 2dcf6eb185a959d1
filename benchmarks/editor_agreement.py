"""Does the editor say what the CLI says? The project's mistake set through both language servers.

Every golden diagnostic folder (tests/cases/diagnostics/*/spec.yaml) is opened, as an editor opens
it, in yaml-language-server with our schema and in `accel-run lsp`; each editor's errors are set
against `accel-run --validate`'s errors for the same file:

  same line       the editor flags a line the CLI flags (with: every line the CLI flags)
  different line  both flag the file, on no common line
  editor silent   the CLI errors, the editor shows no error
  editor wrong    the editor errors, the CLI accepts
  both accept     neither errors (the CLI may warn; a schema cannot)

Goal: accel-run lsp on the CLI's line every time; yaml-language-server on it wherever a schema can
say it (the cases it misses are listed by name, with the CLI's message). Needs node and
`make editor-tools`, and the lsp extra. Run: python benchmarks/editor_agreement.py [--schema FILE]
(--schema: another schema for yaml-language-server, an earlier one say, to compare).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import LanguageServer  # noqa: E402  (the tests' client: one way to speak LSP)

YAML_LS = ROOT / ".tools" / "yaml-ls" / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
SCHEMA = ROOT / "schemas" / "experiment.schema.json"
CASES = sorted((ROOT / "tests" / "cases" / "diagnostics").glob("*/spec.yaml"))
OUTCOMES = ["same line", "different line", "editor silent", "editor wrong", "both accept"]


def cli_errors() -> dict[str, dict[int, str]]:
    """line -> message of each file's errors, from one `accel-run --validate --format json`."""
    done = subprocess.run(
        [sys.executable, "-m", "runner", "--validate", "--format", "json", *map(str, CASES)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    return {
        entry["path"]: {d["line"] or 1: d["message"] for d in entry["diagnostics"] if d["severity"] == "error"}
        for entry in json.loads(done.stdout)["files"]
    }


def editor_errors(server: LanguageServer) -> dict[str, set[int]]:
    """The lines each file has an error on in this server (1-based)."""
    out = {}
    for path in CASES:
        uri = server.open(path, path.read_text(encoding="utf-8"))
        found = server.wait_for_diagnostics(uri)  # each file is opened once: its first publication
        out[str(path)] = {d["range"]["start"]["line"] + 1 for d in found if d.get("severity", 1) == 1}
    return out


def outcome(cli: set[int], editor: set[int]) -> str:
    if cli and editor:
        return "same line" if cli & editor else "different line"
    if cli:
        return "editor silent"
    return "editor wrong" if editor else "both accept"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schema", type=Path, default=SCHEMA, help="the schema yaml-language-server uses")
    schema = parser.parse_args().schema.resolve()
    node = shutil.which("node")
    if node is None or not YAML_LS.is_file():
        print("needs node and the pinned yaml-language-server: make editor-tools", file=sys.stderr)
        return 2
    cli = cli_errors()
    folder = Path(tempfile.mkdtemp(prefix="agreement-"))
    settings = {"yaml": {"validate": True, "schemas": {schema.as_uri(): ["*.yaml", "**/*.yaml"]}}}
    servers = {
        "yaml-language-server": LanguageServer([node, str(YAML_LS), "--stdio"], settings, folder),
        # --every-file: a golden mistake may not look like a spec (an empty file), and --validate checks it anyway
        "accel-run lsp": LanguageServer([sys.executable, "-m", "runner", "lsp", "--every-file"], {}, folder),
    }
    results: dict[str, dict[str, str]] = {}
    complete: dict[str, int] = {}
    try:
        for name, server in servers.items():
            flagged = editor_errors(server)
            results[name] = {path: outcome(set(cli[path]), flagged[path]) for path in cli}
            complete[name] = sum(bool(cli[p]) and set(cli[p]) <= flagged[p] for p in cli)
    finally:
        for server in servers.values():
            server.close()
    total = len(CASES)
    print(f"{total} mistakes (tests/cases/diagnostics), each editor's errors against accel-run --validate's")
    print(f"yaml-language-server with {schema.relative_to(ROOT) if schema.is_relative_to(ROOT) else schema}\n")
    print(f"| outcome | {' | '.join(servers)} |")
    print(f"|---|{'---|' * len(servers)}")
    for row in OUTCOMES:
        counts = [f"{Counter(results[name].values())[row]}/{total}" for name in servers]
        print(f"| {row} | {' | '.join(counts)} |")
    print(f"| (every line the CLI flags) | {' | '.join(f'{complete[name]}/{total}' for name in servers)} |")
    for name in servers:
        missed = [p for p, o in results[name].items() if o not in ("same line", "both accept")]
        print(f"\n{name}: {len(missed)} not on the CLI's line")
        for path in missed:
            first = next(iter(cli[path].values()), "(no error)")
            print(f"  {results[name][path]:15} {Path(path).parent.name}: {first[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
