"""The "Why" of a missed speedup, from measurements: where each step's time went, and what would change it.

Pure arithmetic on the per-step attribution the worker measured (compute under no_sync, the
extra time of a synchronised step, data, optimizer) and on measured step times. Estimates are
labelled as such: they assume time scales the way the model below says, nothing more.

Model for processes (a run R with N processes against a baseline B):
  per-sample time t = step time / global batch; speedup = t_B / t_R (throughput ratio)
  R's step = compute + communication + data + optimizer + other (waiting, Python, launch glue)
  If per-step compute grew by a factor x (a bigger model or batch) and communication stayed:
      speedup(x) = (G_R / G_B) * x * T_B / (x * (T_R - comm) + comm)
  so the declared speedup S needs x = S * comm / ((G_R/G_B) * T_B - S * (T_R - comm)), and is out
  of reach even for x -> infinity when (G_R/G_B) * T_B / (T_R - comm) < S (the processes compute
  slower than the single one, as when they share the same CPU cores).
"""

from __future__ import annotations

from typing import Any


def _step_s(run: dict[str, Any]) -> float | None:
    value = run.get("metrics", {}).get("step_time_ms")
    return value / 1000 if isinstance(value, int | float) and value > 0 else None


def _parts(run: dict[str, Any], step: float) -> dict[str, float]:
    """Seconds per optimizer step by phase, from the run's attribution probe."""
    probe = run.get("attribution") or {}
    accumulation = probe.get("accumulation", 1) or 1
    parts = {
        "compute": accumulation * float(probe.get("compute_s", 0.0)),
        "communication": float(probe.get("sync_s", 0.0)),
        "data": accumulation * float(probe.get("data_s", 0.0)),
        "optimizer": float(probe.get("optimizer_s", 0.0)),
    }
    parts["other"] = max(0.0, step - sum(parts.values()))
    return parts


def explain_processes(
    run: dict[str, Any], base: dict[str, Any], declared: float | None, cores: int | None
) -> dict[str, Any]:
    """Figures and sentences for a speedup of a multi-process run over a baseline with fewer processes."""
    t_run, t_base = _step_s(run), _step_s(base)
    if t_run is None or t_base is None or not run.get("attribution") or not base.get("attribution"):
        return {"sentences": ["no attribution was measured (measure.attribution: false, or a run failed)"]}
    g_run = run["metrics"]["global_batch_size"]
    g_base = base["metrics"]["global_batch_size"]
    n_run, n_base = run["metrics"]["processes"], base["metrics"]["processes"]
    speedup = (t_base / g_base) / (t_run / g_run)
    ideal = n_run / n_base
    parts = _parts(run, t_run)
    base_parts = _parts(base, t_base)
    comm = parts["communication"]
    per_process_batch_run = g_run / n_run
    per_process_batch_base = g_base / n_base
    compute_per_sample_run = parts["compute"] / per_process_batch_run
    compute_per_sample_base = base_parts["compute"] / per_process_batch_base if base_parts["compute"] else None
    slowdown = compute_per_sample_run / compute_per_sample_base if compute_per_sample_base else None
    scale = g_run / g_base
    no_comm_limit = scale * t_base / (t_run - comm) if t_run > comm else None
    figures: dict[str, Any] = {
        "speedup": speedup,
        "ideal_speedup": ideal,
        "scaling_efficiency": speedup / ideal,
        "step_time_s": t_run,
        "baseline_step_time_s": t_base,
        "parts_s": parts,
        "communication_share": comm / t_run,
        "compute_slowdown_per_process": slowdown,
        "speedup_without_communication": no_comm_limit,
        "startup_s": run["metrics"].get("startup_s"),
        "baseline_startup_s": base["metrics"].get("startup_s"),
    }
    sentences = [
        f"speedup {speedup:.2f}x of an ideal {ideal:.0f}x: scaling efficiency {speedup / ideal:.0%}",
        "per optimizer step of '{name}' ({step:.3g} ms): {items}".format(
            name=run.get("name", "run"),
            step=t_run * 1000,
            items=", ".join(f"{k} {v * 1000:.3g} ms ({v / t_run:.0%})" for k, v in parts.items()),
        ),
        f"gradient synchronisation takes {comm / t_run:.0%} of each step ({comm * 1000:.3g} ms per all-reduce "
        f"of the gradients)",
    ]
    if slowdown is not None and slowdown > 1.15:
        cause = (
            f" (the {n_run} processes share {cores} CPU cores)"
            if cores and run.get("declared", {}).get("device") == "cpu"
            else ""
        )
        sentences.append(
            f"each process computes {slowdown:.2f}x slower per sample than the baseline's process{cause}, "
            f"which alone caps the speedup at {ideal / slowdown:.2f}x"
        )
    if declared is not None and no_comm_limit is not None:
        figures["declared_speedup"] = declared
        if no_comm_limit <= declared:
            sentences.append(
                f"even with free communication and a much larger model the speedup would stay below "
                f"{no_comm_limit:.2f}x, short of the declared {declared:g}x: the per-process compute is the limit"
            )
            figures["compute_factor_needed"] = None
        else:
            denominator = scale * t_base - declared * (t_run - comm)
            factor = declared * comm / denominator if denominator > 0 else None
            figures["compute_factor_needed"] = factor
            if factor is not None:
                sentences.append(
                    f"estimate: with this communication cost, {declared:g}x needs about {factor:.1f}x more compute per "
                    f"step (a larger model or per-process batch) than this run has"
                )
    startup_run, startup_base = run["metrics"].get("startup_s"), base["metrics"].get("startup_s")
    if isinstance(startup_run, int | float) and isinstance(startup_base, int | float):
        sentences.append(
            f"start-up (launch to first step) costs {startup_run:.1f} s here vs {startup_base:.1f} s for the baseline, "
            f"against {run['metrics'].get('train_time_s', 0):.2f} s of training"
        )
    figures["sentences"] = sentences
    return figures


def _precision_name(mixed_precision: str) -> str:
    """Accelerate's 'no' reads as fp32 in a sentence."""
    return "fp32" if mixed_precision == "no" else mixed_precision


def explain_precision(run: dict[str, Any], base: dict[str, Any], declared: float | None) -> dict[str, Any]:
    """Figures and sentences for a mixed-precision run against a full-precision (or other) baseline."""
    t_run, t_base = _step_s(run), _step_s(base)
    probe_run, probe_base = run.get("attribution") or {}, base.get("attribution") or {}
    if t_run is None or t_base is None or "matmul_share" not in probe_base or "compute_s" not in probe_run:
        return {"sentences": ["no attribution was measured (measure.attribution: false, or a run failed)"]}
    matmul = float(probe_base["matmul_share"])
    cap = 1 / (1 - matmul) if matmul < 1 else float("inf")
    compute_speedup = probe_base["compute_s"] / probe_run["compute_s"] if probe_run["compute_s"] else None
    precision = _precision_name(run.get("metrics", {}).get("mixed_precision", "?"))
    base_precision = _precision_name(base.get("metrics", {}).get("mixed_precision", "?"))
    figures: dict[str, Any] = {
        "speedup": t_base / t_run,
        "baseline_matmul_share": matmul,
        "matmul_share": probe_run.get("matmul_share"),
        "cast_share": probe_run.get("cast_share"),
        "compute_speedup": compute_speedup,
        "amdahl_cap": cap,
    }
    sentences = [
        f"in '{base.get('name', 'baseline')}' ({base_precision}) matrix multiplications are {matmul:.0%} of "
        f"forward+backward time; even infinitely fast {precision} matmuls would cap the speedup at {cap:.2f}x",
    ]
    if compute_speedup is not None:
        faster = f"{compute_speedup:.2f}x faster" if compute_speedup >= 1 else f"{1 / compute_speedup:.2f}x slower"
        sentences.append(f"forward+backward measured {faster} in {precision} than in {base_precision}")
        if compute_speedup < 1 and run.get("declared", {}).get("device") == "cpu":
            sentences.append(
                f"on this CPU {precision} is slower: without native {precision} instructions (AVX-512 BF16, AMX) "
                "the matmuls are emulated, and autocast adds casts"
            )
    if probe_run.get("cast_share"):
        sentences.append(
            f"dtype casts (autocast copying weights and activations) take {float(probe_run['cast_share']):.0%} of "
            f"the {precision} run's forward+backward"
        )
    if declared is not None and declared > cap:
        sentences.append(
            f"the declared {declared:g}x exceeds that cap: it is out of reach for this model on this device"
        )
    figures["sentences"] = sentences
    return figures


def explain(expectation: dict[str, Any], runs: dict[str, dict[str, Any]], cores: int | None) -> dict[str, Any] | None:
    """The Why of a failed or inconclusive timing expectation (None when there is nothing to explain)."""
    if expectation.get("kind") != "speedup" or expectation.get("verdict") not in ("fail", "inconclusive"):
        return None
    name, base_name = expectation["runs"]
    run, base = runs.get(name), runs.get(base_name)
    if not run or not base or not run.get("metrics") or not base.get("metrics"):
        return None
    run, base = {**run, "name": name}, {**base, "name": base_name}
    declared = _declared_bound(expectation)
    if run["metrics"].get("processes", 1) != base["metrics"].get("processes", 1):
        return explain_processes(run, base, declared, cores)
    if run["metrics"].get("mixed_precision") != base["metrics"].get("mixed_precision"):
        return explain_precision(run, base, declared)
    t_run, t_base = _step_s(run), _step_s(base)
    if t_run is None or t_base is None:
        return None
    parts = _parts(run, t_run)
    return {
        "sentences": [
            "per optimizer step of '{name}' ({step:.3g} ms): {items}".format(
                name=name, step=t_run * 1000, items=", ".join(f"{k} {v * 1000:.3g} ms" for k, v in parts.items())
            )
        ]
    }


def _declared_bound(expectation: dict[str, Any]) -> float | None:
    """The speedup the user declared (at_least of a speedup expectation)."""
    bound = expectation.get("at_least")
    return float(bound) if isinstance(bound, int | float) else None
