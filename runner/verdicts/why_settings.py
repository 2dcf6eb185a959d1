"""The Why of a speedup between runs that compute differently: torch.compile, the optimizer's kernels, TF32.

Pure arithmetic on summary.json's runs: what each run declared (compile backend, optimizer
implementation, TF32), its timed step, its first step (where compiling happens, never timed),
and the attribution probe's forward+backward and optimizer times. Compiling is paid once per
launch and saved on every step, so the Why says after how many steps it repays itself (the
"break-even" the PyTorch dynamo benchmarks report).
"""

from __future__ import annotations

from typing import Any


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _step_s(run: dict[str, Any]) -> float | None:
    value = _number(run.get("metrics", {}).get("step_time_ms"))
    return value / 1000 if value else None


def _declared(run: dict[str, Any], key: str) -> Any:
    return (run.get("declared") or {}).get(key)


def _compiled(run: dict[str, Any]) -> str:
    backend = _declared(run, "compile_backend") or "no"
    return f"compiled by torch.compile ({backend})" if backend != "no" else "eagerly"


def differs(run: dict[str, Any], base: dict[str, Any]) -> bool:
    """Whether the two runs differ in how they compute (compile, optimizer implementation, TF32)."""
    return any(
        _declared(run, key) != _declared(base, key) for key in ("compile_backend", "optimizer_implementation", "tf32")
    )


def explain_compute_settings(run: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """Figures and sentences for runs that differ in compile, optimizer implementation or TF32."""
    name, base_name = run["name"], base["name"]
    t_run, t_base = _step_s(run), _step_s(base)
    if t_run is None or t_base is None:
        return None
    sentences = [
        f"a step of '{name}' took {t_run * 1000:.3g} ms against {t_base * 1000:.3g} ms for '{base_name}' "
        f"({t_base / t_run:.2f}x)"
    ]
    figures: dict[str, Any] = {"step_s": t_run, "baseline_step_s": t_base}
    if _declared(run, "compile_backend") != _declared(base, "compile_backend"):
        sentences += _compile_sentences(run, base, t_run, t_base, figures)
    probe, base_probe = run.get("attribution") or {}, base.get("attribution") or {}
    if _declared(run, "optimizer_implementation") != _declared(base, "optimizer_implementation"):
        mine, theirs = _number(probe.get("optimizer_s")), _number(base_probe.get("optimizer_s"))
        observed = (run.get("observed") or {}).get("optimizer_implementation")
        base_observed = (base.get("observed") or {}).get("optimizer_implementation")
        if mine is not None and theirs is not None:
            figures.update(optimizer_s=mine, baseline_optimizer_s=theirs)
            change = "saves" if mine < theirs else "costs"
            sentences.append(
                f"the optimizer's update took {mine * 1000:.3g} ms per step {observed} against "
                f"{theirs * 1000:.3g} ms {base_observed} (probed after training): it {change} "
                f"{abs(theirs - mine) * 1000:.3g} ms of each step"
            )
    tf32 = [(r.get("observed") or {}).get("cuda_matmul_allow_tf32") for r in (run, base)]
    if None not in tf32 and tf32[0] != tf32[1]:
        on, off = (run, base) if tf32[0] else (base, run)
        by_accelerate = _declared(on, "tf32") is None and _declared(on, "compile_backend") != "no"
        sentences.append(
            f"fp32 matmuls ran with TF32 in '{on['name']}' and in true fp32 in '{off['name']}'"
            + (" (Accelerate turns TF32 on by itself with a dynamo backend and fp32)" if by_accelerate else "")
            + ": part of the difference is TF32's; set launch.tf32 on both runs to compare one change"
        )
    if _declared(run, "tf32") != _declared(base, "tf32") and (run.get("declared") or {}).get("device") == "cpu":
        sentences.append("launch.tf32 differs, but it has no effect on a CPU: the two runs compute alike")
    return {"sentences": sentences, "figures": figures}


def _compile_sentences(
    run: dict[str, Any], base: dict[str, Any], t_run: float, t_base: float, figures: dict[str, Any]
) -> list[str]:
    """What compiling cost (the first step) and saved (each timed step), and where the time went."""
    name, base_name = run["name"], base["name"]
    compiled, eager = (run, base) if _declared(run, "compile_backend") != "no" else (base, run)
    t_compiled, t_eager = (t_run, t_base) if compiled is run else (t_base, t_run)
    first = _number((compiled.get("phases") or {}).get("first_step_s"))
    first_eager = _number((eager.get("phases") or {}).get("first_step_s"))
    setup = _number((compiled.get("phases") or {}).get("setup_s"))
    setup_eager = _number((eager.get("phases") or {}).get("setup_s"))
    sentences = [f"'{name}' runs {_compiled(run)}, '{base_name}' runs {_compiled(base)}"]
    if first is not None and first_eager is not None:
        cost = first - first_eager
        # Loading the compiler (inductor, and Triton on a GPU) can fall in the setup, at prepare: it is
        # paid once per launch all the same, so it counts when it is clearly more than the eager setup.
        loading = setup - setup_eager if setup is not None and setup_eager is not None else 0.0
        loading = loading if loading > max(0.25, 0.5 * (setup_eager or 0.0)) else 0.0
        figures["compile_s"] = cost + loading
        sentences.append(
            f"compiling made the first step of '{compiled['name']}' take {first:.2f} s against {first_eager:.3g} s "
            f"eagerly: {cost:.2f} s paid once per launch, as warm-up (never in the timed part)"
            if not loading
            else f"compiling cost {cost + loading:.2f} s once per launch, never in the timed part: "
            f"{loading:.2f} s more setup than eager (Accelerator.prepare, loading the compiler) and a first step "
            f"of {first:.2f} s against {first_eager:.3g} s"
        )
        cost += loading
        saved = t_eager - t_compiled
        if saved > 0:
            figures["break_even_steps"] = cost / saved
            sentences.append(
                f"it saves {saved * 1000:.3g} ms a step, so it repays itself after about {cost / saved:,.0f} steps"
            )
        else:
            sentences.append("its steps are not faster here, so compiling never repays itself in this run")
    probe, eager_probe = compiled.get("attribution") or {}, eager.get("attribution") or {}
    mine, theirs = _number(probe.get("compute_s")), _number(eager_probe.get("compute_s"))
    if mine is not None and theirs is not None:
        sentences.append(
            f"forward+backward (the part torch.compile compiles) took {mine * 1000:.3g} ms compiled against "
            f"{theirs * 1000:.3g} ms eagerly; the optimizer's update is not compiled (Accelerate compiles the model)"
        )
    if (compiled.get("declared") or {}).get("device") == "cpu":
        sentences.append(
            "on a CPU inductor generates C++/OpenMP kernels for the ops around the matmuls; the matmuls "
            "themselves run in the same BLAS, so a step made mostly of matmuls gains little"
        )
    return sentences
