"""`python -m runner.engines.forkserver`: a warm process that starts launches by forking (launch.launcher: fork).

Why: `accelerate launch` is a Python process that imports torch and accelerate and then starts the
ranks, which import them again; on an H200 machine that was 13-18 s per launch for a second of
training (../shared/gpu/README.md). This process imports torch and accelerate once per session,
never touches CUDA, and for each launch forks a fresh child that runs accelerate's own launch code
(`launch_command`: the same config parsing, defaults, environment and torch elastic configuration
as the command) with two changes, the ones Accelerate's own `notebook_launcher` makes:
- one process: the rank runs in the forked child itself, with the environment and argv that
  accelerate's simple launcher would give a new interpreter;
- several processes: torch elastic starts the ranks with `start_method="fork"` and the entry as
  a Python function, instead of a new interpreter per rank.
So every launch still has its own processes, CUDA context, allocator and process group; what is
not paid again is the interpreter start and the imports. The child also resets what a fork would
share but a new process would not: the seeds of Python's, NumPy's and torch's global generators,
and torch's thread count (read from OMP_NUM_THREADS at start-up by a new process).

Protocol (JSON lines): the client writes {"argv": [...], "env": {...}, "stdout": path, "stderr":
path} (argv: what follows `accelerate launch`); this process answers {"pid": N} at once and
{"pid": N, "returncode": R} when that child ends (R < 0: killed by signal -R, as Popen says). It
exits when its standard input closes, so it never outlives the session that started it.
"""

from __future__ import annotations

import json
import os
import random
import runpy
import select
import signal
import sys
import time
import traceback
from collections.abc import Callable
from importlib import import_module
from typing import Any

POLL_S = 0.02  # how soon a child's end is reported


def _preload() -> dict[str, str]:
    """Import what every launch needs, once (none of it initialises CUDA); the variables the imports set.

    Some imports set environment variables of their own (torch's inductor sets its cache folder);
    a new process would set them as it imported, so each forked launch gets them too.
    """
    before = dict(os.environ)
    import accelerate
    import accelerate.accelerator
    import accelerate.commands.launch  # noqa: F401
    import torch
    import torch._dynamo  # building an optimizer imports it (about 2 s): once here, not in every launch
    import torch.distributed.launcher.api
    import torch.distributed.run

    import runner.track
    import runner.worker.script
    import runner.worker.train  # noqa: F401

    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        raise RuntimeError("the fork server initialised CUDA while importing: forked launches could not use it")
    return {name: value for name, value in os.environ.items() if before.get(name) != value}


# The entry points the compiled launches use, called as functions; anything else runs as `python -m`.
ENTRY_POINTS = {"runner.worker": "runner.worker.__main__:main", "runner.worker.script": "runner.worker.script:main"}


def _fresh_process_state() -> None:
    """What a new interpreter would have and a forked one shares with its parent: seeds, thread count."""
    import torch

    random.seed()
    torch.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))  # a new process reads it when OpenMP starts; this one started long ago


def exit_code(stop: SystemExit) -> int:
    """The exit status a new interpreter would give this SystemExit, printing its message as Python does."""
    if stop.code is None:
        return 0
    if isinstance(stop.code, int):
        return stop.code
    print(stop.code, file=sys.stderr)
    return 1


def run_entry(argv: list[str]) -> int:
    """Run `python [-u] -m MODULE ARGS` or `python SCRIPT ARGS` in this process; its exit code."""
    args = list(argv)
    while args and args[0].startswith("-") and args[0] != "-m":
        args.pop(0)  # -u: this process runs unbuffered already
    _fresh_process_state()
    if args[0] == "-m":
        module, rest = args[1], args[2:]
        if module in ENTRY_POINTS:
            name, _, function = ENTRY_POINTS[module].partition(":")
            target = import_module(name)
            sys.argv = [str(target.__file__), *rest]
            main: Callable[[list[str]], int] = getattr(target, function)
            try:
                return main(rest)
            except SystemExit as stop:
                return exit_code(stop)
        sys.argv = [module, *rest]
        run: Callable[[], Any] = lambda: runpy.run_module(module, run_name="__main__", alter_sys=True)  # noqa: E731
    else:
        script, rest = args[0], args[1:]
        sys.argv = [script, *rest]
        run = lambda: runpy.run_path(script, run_name="__main__")  # noqa: E731
    try:
        run()
    except SystemExit as stop:
        return exit_code(stop)
    return 0


# Asking CUDA whether it is there, the way torch does without this variable (cuInit), poisons every later
# fork: a forked rank then cannot use CUDA ("Cannot re-initialize CUDA in forked subprocess"). Torch
# elastic asks in the launcher (LaunchConfig checks torch.cuda.is_available() before the ranks exist),
# so the launcher asks NVML instead, and each rank gets back the environment its launch declared.
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"
_nvml_check_added = False


def _ask_nvml_until_the_ranks_start() -> None:
    global _nvml_check_added
    _nvml_check_added = NVML_CHECK not in os.environ
    os.environ.setdefault(NVML_CHECK, "1")


def _rank_environment(env: dict[str, str]) -> dict[str, str]:
    """A rank's environment as the launch declared it: without the launcher's own NVML check."""
    if _nvml_check_added:
        env.pop(NVML_CHECK, None)
    return env


def rank_main(*argv: str) -> None:
    """One rank of a multi-process launch, forked by torch elastic: `python -u -m MODULE ARGS` as a function."""
    if _nvml_check_added:
        os.environ.pop(NVML_CHECK, None)
    code = run_entry(list(argv))
    if code:
        raise SystemExit(code)


def _simple_launcher(args: Any) -> None:
    """Accelerate's simple launcher, with the rank in this very process instead of a new interpreter."""
    from accelerate.utils.launch import prepare_simple_launcher_cmd_env

    cmd, env = prepare_simple_launcher_cmd_env(args)
    os.environ.clear()
    os.environ.update(_rank_environment(env))
    code = run_entry(cmd[1:])  # cmd[0] is the interpreter
    if code:
        raise SystemExit(code)


def _forked_elastic_launch(config: Any, entrypoint: Any) -> Any:
    """torch elastic as `accelerate launch` configures it, forking each rank into `rank_main`."""
    import torch
    from torch.distributed.launcher.api import elastic_launch

    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        raise RuntimeError("CUDA was initialised before the ranks were forked: they could not use it")
    config.start_method = "fork"
    return elastic_launch(config=config, entrypoint=rank_main)


def launch_in_process(argv: list[str]) -> int:
    """`accelerate launch ARGV` in this process, forking where accelerate would start interpreters."""
    import accelerate.commands.launch as accelerate_launch
    import torch.distributed.run as distrib_run

    accelerate_launch.simple_launcher = _simple_launcher
    setattr(distrib_run, "elastic_launch", _forked_elastic_launch)  # noqa: B010 - the name run() looks up
    args = accelerate_launch.launch_command_parser().parse_args(argv)
    try:
        accelerate_launch.launch_command(args)
    except SystemExit as stop:
        return exit_code(stop)
    return 0


def _child(request: dict[str, Any], set_by_imports: dict[str, str]) -> None:
    """The forked launch: its own session, its log files, the launch's environment, then accelerate's code."""
    code = 1
    try:
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        out = os.open(request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd, target in ((null, 0), (out, 1), (err, 2)):
            os.dup2(fd, target)
            os.close(fd)
        os.environ.clear()
        os.environ.update(request["env"])
        for name, value in set_by_imports.items():
            os.environ.setdefault(name, value)  # as the imports would have set it in a new process
        _ask_nvml_until_the_ranks_start()
        code = launch_in_process(request["argv"])
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def serve() -> int:
    """Answer launch requests until standard input closes."""
    started = time.perf_counter()
    set_by_imports = _preload()
    import torch

    _say({"ready": True, "pid": os.getpid(), "preload_s": round(time.perf_counter() - started, 3)})
    children: set[int] = set()
    buffered = b""
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], POLL_S)
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            children.discard(pid)
            _say({"pid": pid, "returncode": os.waitstatus_to_exitcode(status)})
        if not readable:
            continue
        chunk = os.read(sys.stdin.fileno(), 1 << 20)
        if not chunk:
            return 0  # the session ended (or died): leave; the launches it watched are their own sessions
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            request = json.loads(line)
            if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
                _say({"error": "the fork server's CUDA is initialised: it cannot fork launches"})
                continue
            pid = os.fork()
            if pid == 0:
                _child(request, set_by_imports)
            children.add(pid)
            _say({"pid": pid})


if __name__ == "__main__":
    sys.exit(serve())
