"""The `accel-run` command line: parse arguments, call the core with explicit values, print what it returns.

Below this module the core returns data (diagnostics, reports, exit codes) or raises; the one
exception is a session's progress, which it writes as it goes to the stream given to it.
Modules that import torch or accelerate are imported inside the functions that need them, so
`--validate`, `--explain` and `--schema` start fast.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import traceback
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from runner import __version__
from runner.engines.kinds import engine_kind, kind_names
from runner.errors import AccelRunError, Diagnostic, ExitCode, ResultError, Severity, SpecError
from runner.report.diagnostics import diagnostics_text, github_annotation, plural, use_color

if TYPE_CHECKING:
    from runner.pipeline import RunOptions, SessionResult
    from runner.spec.resolved import ValidatedSpec

DESCRIPTION = """\
Run Hugging Face Accelerate experiments described by one YAML spec, measure them honestly,
and check the results you expect ("2 processes >= 1.8x faster than 1").

A spec names a model, synthetic data, training settings and launch settings, then the runs
that vary them and the expectations to check. See specs/day6.yaml, and the schema (--schema)
that gives editors autocomplete and hover help.
"""

EPILOG = """\
exit codes:
  0  every expectation holds (or: every file is valid)
  1  an expectation failed or is inconclusive (or: --validate found errors)
  2  usage error, or an invalid spec when running
  3  a run failed or timed out, or the machine stopped the session (disk full, folder deleted)
  4  internal error (add --traceback to see it)
  130 interrupted (Ctrl-C)

results:
  OUTPUT/<spec name>/<UTC timestamp>/ holds spec.yaml, summary.json, report.md and one folder
  per run (accelerate_config.yaml, command.txt, plan.json, metrics.json, stdout.log, stderr.log).

examples:
  accel-run --validate specs/*.yaml          check every spec, with file:line:col errors
  accel-run --explain specs/day6.yaml        show each run resolved, with parameters and batch
  accel-run --dry-run specs/day6.yaml        write Accelerate configs and commands, run nothing
  accel-run lsp                              the language server an editor starts (accel-run lsp --help)
  accel-run specs/day6-quick.yaml            run the quick Day 6 comparison (a few minutes on CPU)
  accel-run specs/day6.yaml --only single,dual --repeats 3
  accel-run specs/day6.yaml --set train.epochs=2 --set 'matrix.launch.processes=[1, 2, 4]'
  accel-run compare results/day6/20261128T101500Z specs/day6.yaml   an old result vs the newest
  accel-run --report results/day6/20261128T101500Z
  accel-run --report latest                  the newest result (a spec file: the newest run from that file)
"""

COMPARE_DESCRIPTION = """\
Compare two results of one spec, run by run and metric by metric: the ratio NEW / OLD of each
metric, judged on the noise interval of the repeats as expectations are. A change worse than the
threshold over the whole interval is a regression (exit 1); an interval that holds the threshold is
unclear (exit 1 unless --allow-inconclusive). A different spec or machine is stated first.

OLD and NEW are result folders, or: a spec file (the newest result run from that file), OUTPUT/<spec>/
(the newest result of that spec name), or 'latest' (the newest result of any spec under --output).
OLD and NEW must be two different results.
"""

COMPARE_EPILOG = """\
exit codes:
  0  no regression (and nothing unclear, unless --allow-inconclusive)
  1  a regression, or an unclear change
  2  usage error, or a folder that is not a result

examples:
  accel-run compare results/day6/20261128T101500Z results/day6/20261129T090000Z
  accel-run compare results/day6/20261128T101500Z specs/day6.yaml --threshold 0.05
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; its help is the command's manual."""
    parser = argparse.ArgumentParser(
        prog="accel-run",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("specs", nargs="*", metavar="SPEC", help="spec file(s) (YAML)")
    modes = parser.add_argument_group("what to do (default: run SPEC)").add_mutually_exclusive_group()
    modes.add_argument("--validate", action="store_true", help="check SPEC files and print diagnostics; run nothing")
    modes.add_argument(
        "--explain", action="store_true", help="print each run of SPEC as its differences from the baseline"
    )
    modes.add_argument("--dry-run", action="store_true", help="write configs and commands for SPEC; start nothing")
    modes.add_argument("--schema", action="store_true", help="print the JSON Schema of spec files")
    modes.add_argument(
        "--report",
        metavar="RESULT",
        help="re-render the report of a result: its folder, a spec file (the newest result of that file), "
        "OUTPUT/<spec>/ (the newest of that name), or 'latest'",
    )
    modes.add_argument("--resume", metavar="RESULT_DIR", help="rerun the runs of a result that did not finish")
    options = parser.add_argument_group("options")
    options.add_argument("--only", metavar="RUN[,RUN...]", help="run only these runs (comma-separated)")
    options.add_argument(
        "--set",
        action="append",
        default=[],
        dest="sets",
        metavar="KEY.PATH=VALUE",
        help="set a value of the spec (YAML), checked like the file; repeatable: --set launch.processes=2",
    )
    options.add_argument(
        "--engine",
        choices=kind_names(),
        help="run every run on this engine: "
        + " or ".join(f"{name} ({engine_kind(name).summary})" for name in kind_names())
        + "; the spec's settings for it are kept",
    )
    options.add_argument("--full", action="store_true", help="with --explain: every run's full resolved YAML")
    options.add_argument("--output", metavar="DIR", default="results", help="where results go (default: results/)")
    options.add_argument("--repeats", type=_positive_int, metavar="N", help="override measure.repeats of every run")
    options.add_argument(
        "--timeout", type=_positive_float, metavar="SECONDS", help="per-run time limit (overrides launch.timeout_s)"
    )
    options.add_argument("--strict", action="store_true", help="treat warnings as errors")
    options.add_argument(
        "--allow-inconclusive", action="store_true", help="exit 0 when expectations are only inconclusive"
    )
    options.add_argument(
        "--format",
        choices=["text", "json", "github"],
        default="text",
        help="diagnostics, --explain, --dry-run as text or JSON; github: --validate's diagnostics as GitHub Actions "
        "annotations (::error file=...,line=...,col=...::message)",
    )
    options.add_argument("--no-progress", action="store_true", help="no progress bars (plain log lines instead)")
    options.add_argument("--traceback", action="store_true", help="show the Python traceback of internal errors")
    options.add_argument("--version", action="version", version=f"accel-run {__version__}")
    return parser


def build_compare_parser() -> argparse.ArgumentParser:
    """The parser of `accel-run compare OLD NEW`."""
    parser = argparse.ArgumentParser(
        prog="accel-run compare",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("old", metavar="OLD", help="the earlier result (folder, spec file, OUTPUT/<spec>/ or latest)")
    parser.add_argument("new", metavar="NEW", help="the later result, named the same ways")
    parser.add_argument(
        "--threshold", type=_fraction, default=0.10, metavar="FRACTION", help="a change worse than this (default 0.10)"
    )
    parser.add_argument("--metrics", metavar="M[,M...]", help="compare these metrics only (comma-separated)")
    parser.add_argument("--output", metavar="DIR", default="results", help="where results are (default: results/)")
    parser.add_argument("--allow-inconclusive", action="store_true", help="exit 0 when changes are only unclear")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="the comparison as text or JSON")
    parser.add_argument("--traceback", action="store_true", help="show the Python traceback of internal errors")
    parser.set_defaults(compare=True)
    return parser


LSP_DESCRIPTION = """\
A language server over stdio: an editor starts it and shows accel-run's own diagnostics as you
type (errors and warnings, on the CLI's line and column), completes the file's run names after
extends:, run: and baseline:, and hovers a run name with its differences from the baseline.
Other YAML files (compose files, CI workflows) get nothing, unless --every-file.
Use it beside yaml-language-server, which completes keys and values from the schema.
Needs the extra: pip install 'accel-run[lsp]'. Editor set-up: docs/editor.md.
"""

LSP_EPILOG = """\
example (what an editor runs; it speaks JSON-RPC on stdin and stdout):
  accel-run lsp
"""


def build_lsp_parser() -> argparse.ArgumentParser:
    """The parser of `accel-run lsp`."""
    parser = argparse.ArgumentParser(
        prog="accel-run lsp",
        description=LSP_DESCRIPTION,
        epilog=LSP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--stdio", action="store_true", help="talk over stdin and stdout (the default and only way)")
    parser.add_argument(
        "--every-file",
        action="store_true",
        help="check every YAML file the editor opens, as --validate checks every file it is given (default: only "
        "specs, i.e. files whose modeline names experiment.schema.json or with a top-level name: and a section)",
    )
    return parser


def lsp_command(argv: Sequence[str], err: TextIO) -> int:
    """`accel-run lsp`: serve until the editor says exit; exit 2 with one line when the extra is missing."""
    try:
        args = build_lsp_parser().parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage error or the help
        return int(exc.code or 0)
    try:
        from runner.editor.server import serve
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in ("pygls", "lsprotocol", "cattrs", "attrs"):
            raise
        print(
            f"accel-run lsp: the language server needs pygls and lsprotocol ({missing} is not installed): "
            "pip install 'accel-run[lsp]'",
            file=err,
        )
        return int(ExitCode.USAGE)
    return serve(every_file=args.every_file)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction such as 0.10, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (0.10 = 10%), got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `accel-run` and `python -m runner`; returns the exit code."""
    parser = build_parser()
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["lsp"]:
            return lsp_command(argv[1:], sys.stderr)
        if argv[:1] == ["compare"]:
            parser = build_compare_parser()
            args = parser.parse_args(argv[1:])
        else:
            args = parser.parse_args(argv)
        args.command = shlex.join(["accel-run", *argv])  # recorded in summary.json as typed
    except SystemExit as exc:  # argparse has printed the usage error or the help
        return int(exc.code or 0)
    out, err = sys.stdout, sys.stderr
    for stream in (out, err):  # paths that are not valid UTF-8 print as their bytes, not as a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    try:
        return _dispatch(parser, args, out, err)
    except SystemExitCode as exc:  # diagnostics already printed
        return int(exc.exit_code)
    except SpecError as exc:
        color = use_color(err)
        for line in diagnostics_text(exc.diagnostics, None, excerpt=False, color=color):
            print(line, file=err)
        return int(exc.exit_code)
    except AccelRunError as exc:
        print(f"accel-run: error: {exc}", file=err)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("accel-run: interrupted", file=err)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
    except Exception as exc:  # a bug: say so plainly, hide the traceback unless asked
        if args.traceback:
            traceback.print_exc(file=err)
        print(
            f"accel-run: internal error: {type(exc).__name__}: {exc} (rerun with --traceback and report it)",
            file=err,
        )
        return int(ExitCode.INTERNAL)


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if getattr(args, "compare", False):
        return compare_command(parser, args, out, err)
    if args.schema:
        from runner.spec.schema import schema_text

        out.write(schema_text())
        return int(ExitCode.OK)
    if args.report or args.resume:
        return _result_command(parser, args, out, err)
    if not args.specs:
        return _usage(parser, err, "give a spec file (for instance specs/day6.yaml), or see --help")
    if args.engine and len(args.specs) > 1:
        return _usage(parser, err, "--engine takes one spec")
    if args.engine:
        args.sets = [*_engine_override(args.specs[0], args.engine, err), *args.sets]
    if args.validate:
        return validate_command(args.specs, strict=args.strict, output_format=args.format, out=out, sets=args.sets)
    if args.format == "github":
        return _usage(parser, err, "--format github is for --validate (GitHub Actions annotations of its diagnostics)")
    if len(args.specs) > 1:
        return _usage(parser, err, "give one spec (several are accepted only with --validate)")
    spec_path = args.specs[0]
    if args.explain:
        from runner.report.explain import explain, explain_json

        spec = _load_for_use(spec_path, strict=args.strict, err=err, sets=args.sets)
        if args.format == "json":
            print(json.dumps(explain_json(spec, only=_only(args), full=args.full), indent=2), file=out)
        else:
            out.write(explain(spec, only=_only(args), full=args.full))
        return int(ExitCode.OK)
    validated = _load_for_use(spec_path, strict=args.strict, err=err, sets=args.sets)
    from runner.pipeline import dry_run, run_spec

    if args.dry_run:
        planned = dry_run(validated, options=_run_options(args))
        if args.format == "json":
            print(json.dumps(planned.as_json(), indent=2), file=out)
        else:
            out.write(planned.text())
        return int(ExitCode.OK)
    return _finish(run_spec(validated, options=_run_options(args), err=err), out, err)


def _result_command(parser: argparse.ArgumentParser, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """--report RESULT (re-render it) or --resume RESULT_DIR (rerun what did not finish)."""
    if args.specs:
        return _usage(parser, err, f"--{'report' if args.report else 'resume'} takes a result folder, not a spec")
    if args.report:
        from runner.pipeline import rerender_report
        from runner.results.layout import resolve_result

        resolved = resolve_result(args.report, args.output)
        if resolved.warning:
            print(f"accel-run: warning: {resolved.warning}", file=err)
        text, code = rerender_report(str(resolved.folder))
        out.write(text)
        return int(code)
    if args.only or args.repeats or args.engine or args.output != "results":
        return _usage(
            parser,
            err,
            "--resume reruns a result as it was started: --only, --repeats, --engine and --output cannot change it",
        )
    from runner.pipeline import resume

    return _finish(resume(args.resume, options=_run_options(args), err=err), out, err)


def _engine_override(spec_path: str, engine: str, err: TextIO) -> list[str]:
    """The --set options --engine stands for, saying which runs' own engine settings they set aside."""
    engine_sets = _engine_sets(spec_path, engine)
    aside = [o.removeprefix("runs.").rsplit(".engine=", 1)[0] for o in engine_sets if o.startswith("runs.")]
    if aside:
        print(f"accel-run: --engine {engine}: the engine settings of run(s) {', '.join(aside)} are set aside", file=err)
    return engine_sets


def compare_command(parser: argparse.ArgumentParser, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """`compare OLD NEW`: both resolved to result folders, compared, printed; exit 1 on a regression."""
    from runner.report.compare import COMPARABLE, METRICS, compare_results
    from runner.results.layout import resolve_result

    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip()) if args.metrics else METRICS
    unknown = [m for m in metrics if m not in COMPARABLE]
    if unknown:
        return _usage(parser, err, f"unknown metric {unknown[0]!r}; choose from {', '.join(sorted(COMPARABLE))}")
    old, new = (resolve_result(ref, args.output) for ref in (args.old, args.new))
    for warning in dict.fromkeys(r.warning for r in (old, new) if r.warning):
        print(f"accel-run: warning: {warning}", file=err)
    if new.folder.is_dir() and old.folder.resolve() == new.folder.resolve():
        raise ResultError(
            f"OLD and NEW are the same result, {new.folder}: compare two different results "
            "(a spec file stands for its newest one; give the older one's folder)"
        )
    comparison = compare_results(old.folder, new.folder, threshold=args.threshold, metrics=metrics)
    if args.format == "json":
        print(json.dumps(comparison.as_json(), indent=2), file=out)
    else:
        out.write(comparison.text())
    return int(comparison.exit_code(args.allow_inconclusive))


def _usage(parser: argparse.ArgumentParser, err: TextIO, message: str) -> int:
    """A usage error as argparse prints one, returned as exit 2 (never SystemExit: main stays total)."""
    parser.print_usage(err)
    print(f"accel-run: error: {message}", file=err)
    return int(ExitCode.USAGE)


def _finish(result: SessionResult, out: TextIO, err: TextIO) -> int:
    """Print a session's report (stdout) and notes (stderr); its exit code is the command's."""
    out.write(result.report)
    out.flush()
    for note in result.notes:
        print(note, file=err)
    return int(result.exit_code)


def _engine_sets(path: str, kind: str) -> list[str]:
    """--engine KIND as the --set options it stands for (none when the file cannot be read: validation says why)."""
    from runner.spec.engine_choice import engine_sets
    from runner.spec.load import parse_spec, read_spec_text

    try:
        return engine_sets(parse_spec(read_spec_text(path), path), kind)
    except SpecError:
        return []


def _run_options(args: argparse.Namespace) -> RunOptions:
    from runner.pipeline import RunOptions

    return RunOptions(
        output=args.output,
        only=_only(args),
        sets=tuple(args.sets),
        engine=args.engine,
        repeats=args.repeats,
        timeout_s=args.timeout,
        allow_inconclusive=args.allow_inconclusive,
        progress=not args.no_progress,
        command=args.command,
    )


def _only(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(name.strip() for name in args.only.split(",") if name.strip()) if args.only else ()


def _load_for_use(path: str, *, strict: bool, err: TextIO, sets: Sequence[str] = ()) -> ValidatedSpec:
    """Validate a spec (with its --set options) before using it: errors stop with exit 2, warnings are shown."""
    from runner.spec.validate import validate_file

    result = validate_file(path, sets=sets)
    diagnostics = _strict(result.diagnostics) if strict else result.diagnostics
    color = use_color(err)
    for line in diagnostics_text(diagnostics, result.source, excerpt=color, color=color):
        print(line, file=err)
    if result.spec is None or any(d.severity is Severity.ERROR for d in diagnostics):
        errors = sum(d.severity is Severity.ERROR for d in diagnostics)
        print(f"accel-run: {path} is invalid ({plural(errors, 'error')}); nothing was run", file=err)
        raise SystemExitCode(ExitCode.USAGE)
    return result.spec


class SystemExitCode(AccelRunError):
    """Stop with an exit code after the diagnostics have been printed."""

    def __init__(self, code: ExitCode) -> None:
        self.exit_code = code
        super().__init__("")


def _strict(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return [
        Diagnostic(d.path, d.line, d.col, Severity.ERROR, d.message, d.key_path)
        if d.severity is Severity.WARNING
        else d
        for d in diagnostics
    ]


def validate_command(
    paths: Sequence[str], *, strict: bool, output_format: str, out: TextIO, sets: Sequence[str] = ()
) -> int:
    """`--validate`: every file checked (with the --set options), diagnostics printed, one summary line; exit 0 or 1."""
    from runner.spec.validate import validate_file

    color = use_color(out) and output_format == "text"
    files = []
    errors = warnings = invalid = 0
    for path in paths:
        result = validate_file(path, sets=sets)
        diagnostics = _strict(result.diagnostics) if strict else result.diagnostics
        file_errors = sum(d.severity is Severity.ERROR for d in diagnostics)
        errors += file_errors
        warnings += sum(d.severity is Severity.WARNING for d in diagnostics)
        invalid += file_errors > 0 or result.spec is None
        files.append({"path": path, "valid": not file_errors and result.spec is not None, "diagnostics": diagnostics})
        if output_format == "text":
            for line in diagnostics_text(diagnostics, result.source, excerpt=color, color=color):
                print(line, file=out)
        elif output_format == "github":
            for diagnostic in diagnostics:
                print(github_annotation(diagnostic), file=out)
    summary = {
        "files": len(paths),
        "valid": len(paths) - invalid,
        "invalid": invalid,
        "errors": errors,
        "warnings": warnings,
    }
    if output_format == "json":
        payload = {
            "files": [
                {"path": f["path"], "valid": f["valid"], "diagnostics": [d.as_json() for d in f["diagnostics"]]}  # type: ignore[attr-defined]
                for f in files
            ],
            "summary": summary,
        }
        print(json.dumps(payload, ensure_ascii=False, indent=2), file=out)
    else:
        verdict = "all valid" if not invalid else f"{invalid} invalid"
        counts = f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
        print(f"{plural(len(paths), 'file')} checked: {verdict} ({counts})", file=out)
    return int(ExitCode.FAILED if invalid else ExitCode.OK)
