"""From the raw measures to figures, verdicts and the printed report.

Verdicts rest only on measures that do not depend on how busy the machine
is: hook and call counts, the package's own time by direct accounting,
bytes written, memory attributed to the package, and structural checks.
Wall-clock ratios are shown beside the A/A control as context; they are
never judged.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

LIMIT_OWN_MS = 2.0  # the package's own CPU time per run
GROWTH_FACTOR = 2.0  # a part may at most double from the smallest to the largest size...
GROWTH_FLOOR_MS = 0.05  # ...plus this much, so that microsecond noise is no finding
LIMIT_BYTES_GROWTH = 1.25  # bytes per run, largest size / smallest size
LIMIT_MEMORY_GROWTH = 1.5  # package memory, largest / max(smallest, MEMORY_FLOOR)
MEMORY_FLOOR = 64 * 1024


def median_ms(values: list[float]) -> float:
    """Median of seconds, in milliseconds."""
    return statistics.median(values) * 1000.0 if values else 0.0


def wall_stats(rounds: dict[str, list[dict[str, Any]]], key: str) -> dict[str, Any]:
    """Median per configuration, and X/A as ratio of medians and range of per-round ratios."""
    medians = {c: statistics.median(r[key] for r in rounds[c]) for c in rounds}
    ratios = {}
    for config in (c for c in rounds if c != "A"):
        pairs = [x[key] / a[key] for a, x in zip(rounds["A"], rounds[config], strict=True)]
        ratios[config] = {
            "ratio": medians[config] / medians["A"],
            "pair_min": min(pairs),
            "pair_max": max(pairs),
        }
    return {"median_s": medians, "ratios": ratios}


def own_time(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The package's own time over accounted runs: CPU and wall, by frame and by part.

    ``hooks`` and ``parts`` hold CPU milliseconds (the verdicts' measure);
    ``hooks_wall`` and ``parts_wall`` the wall-clock ones, waits included.
    """
    parts = set(runs[0]["parts"])
    labels = sorted({label for run in runs for label in run["by_label"]})

    def per_label(key: str) -> dict[str, float]:
        return {lab: median_ms([r[key].get(lab, 0.0) for r in runs]) for lab in labels}

    cpu, wall = per_label("cpu_by_label"), per_label("by_label")
    calls = runs[0]["calls"]
    cpu_totals = [r["own_cpu_s"] * 1000.0 for r in runs]
    return {
        "cpu_ms": statistics.median(cpu_totals),
        "cpu_min_ms": min(cpu_totals),
        "cpu_max_ms": max(cpu_totals),
        "wall_ms": median_ms([r["own_s"] for r in runs]),
        "gc_ms": median_ms([r["gc_package_s"] for r in runs]),
        "runs": len(runs),
        "hooks": {k: v for k, v in cpu.items() if k not in parts},
        "parts": {k: v for k, v in cpu.items() if k in parts},
        "hooks_wall": {k: v for k, v in wall.items() if k not in parts},
        "parts_wall": {k: v for k, v in wall.items() if k in parts},
        "calls": calls,
        "calls_stable": all(r["calls"] == calls for r in runs),
        "host_ms": median_ms([r["host_s"] for r in runs]),
        "crossings": runs[0]["crossings"],
    }


def writes(run: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """Files, bytes and write calls of one accounted run."""
    calls = run["calls"]
    events = run["events"] or 1
    return {
        "events": run["events"],
        "rules": run["rules"],
        "files": run["files"],
        "bytes": run["bytes"],
        "largest_file": run["largest_file"],
        "bytes_per_event": run["largest_file"] / events,
        "fsyncs": calls.get("os.fsync", 0),
        "fsync_wall_ms": own["parts_wall"].get("os.fsync", 0.0),
        "renames": sum(calls.get(f"os.{n}", 0) for n in ("replace", "rename", "link")),
        "serialisations": calls.get("orjson.dumps", 0),
    }


def leak_bound_ms(own: dict[str, Any], calibration: dict[str, float], cold: bool = False) -> float:
    """Upper bound of the CPU time the shims add to the package's figure in one run.

    ``cold``: with each crossing costing what it costs right after other work.
    """
    parts = set(own["parts"])
    part_calls: int = sum(n for lab, n in own["calls"].items() if lab in parts)
    hook_calls: int = sum(n for lab, n in own["calls"].items() if lab not in parts)
    suffix = "_cold_cpu_us" if cold else "_cpu_us"
    per_hook = calibration.get(f"per_hook{suffix}", 0.0)
    per_part = calibration.get(f"per_part{suffix}", 0.0)
    return (hook_calls * per_hook + part_calls * per_part) / 1e3


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the report, as plain data."""
    calibration = result["accounting"]["calibration"]
    sizes = [summarise_size(s, calibration) for s in result["sizes"]]
    classes = []
    for c in result["classes"]:
        own = own_time(c["accounted"])
        classes.append(
            {"classes": c["classes"], "examples": c["examples"], "own": own}
            | writes(c["accounted"][0], own)
        )
    return {"sizes": sizes, "classes": classes, "calibration": calibration}


def summarise_size(s: dict[str, Any], calibration: dict[str, float]) -> dict[str, Any]:
    """The figures of one size."""
    rounds = s["rounds"]
    every = [r for c in rounds for r in [s["warmup"][c], *rounds[c], s["counted"][c]]]
    every += [s["verify"], *s["accounted"]]
    prints = {json.dumps(r["fingerprint"], sort_keys=True) for r in every}
    own = own_time(s["accounted"])
    memory = s["memory"]
    return {
        "size": s["size"],
        "reps": s["reps"],
        "wall": wall_stats(rounds, "wall"),
        "cpu": wall_stats(rounds, "cpu"),
        "paired": paired_stats(s["paired"]) if s.get("paired") else None,
        "own": own,
        "bridge": _bridge(s.get("bridge") or []),
        "leak_ms": leak_bound_ms(own, calibration),
        "leak_cold_ms": leak_bound_ms(own, calibration, cold=True),
        "writes": writes(s["accounted"][0], own),
        "verify": {
            "events_outside": s["verify"].get("events_outside"),
            "events_inside": s["verify"].get("events_inside"),
            "hooks_wrapped": s["verify"]["hooks_wrapped"],
            "hooks_known": s["verify"]["hooks_known"],
        },
        "memory": {
            "peak_B": memory["B"]["peak_bytes"],
            "peak_C": memory["C"]["peak_bytes"],
            "peak_delta": memory["C"]["peak_bytes"] - memory["B"]["peak_bytes"],
            "package_peak": memory["C_attribute"]["package_peak_bytes"],
            "package_retained": memory["C_attribute"]["package_retained_bytes"],
        },
        "counts": {
            c: {"llm_calls": r["fingerprint"]["llm_calls"]["total"], **r["evaluations"]}
            for c, r in s["counted"].items()
        },
        "same_work": len(prints) == 1,
        "fingerprint": json.loads(next(iter(prints))) if len(prints) == 1 else None,
        "structure": structure_checks(s),
        "profile": s.get("profile"),
    }


def paired_stats(pairs: dict[str, list[float]]) -> dict[str, Any]:
    """Recorded/plain over the in-process pairs of worker C."""
    plain, recorded = pairs["plain"], pairs["recorded"]
    ratios = [r / p for p, r in zip(plain, recorded, strict=True)]
    return {
        "pairs": len(ratios),
        "ratio": statistics.median(recorded) / statistics.median(plain),
        "pair_min": min(ratios),
        "pair_max": max(ratios),
    }


def structure_checks(s: dict[str, Any]) -> dict[str, bool]:
    """Imports, installed wrappers and patched classes over every timed run of a size."""
    timed = [r for c in s["rounds"] for r in [s["warmup"][c], *s["rounds"][c], s["counted"][c]]]
    checks = [r["checks"] for r in timed]
    b_runs = [r["checks"] for r in s["rounds"]["B"]]
    return {
        "A_never_imported": all(
            c["trace_modules"] == 0 for c in checks if c["config"] in ("A", "A2")
        ),
        "B_no_wrapper": all(
            not c["installed"] and c["run_is_original"] and not c["changed"] for c in b_runs
        ),
        "all_restored_after_run": all(not c["changed"] and not c.get("installed") for c in checks),
        "coordinators_restored": all(not r["coordinator_patched"] for r in timed),
    }


# ---------------------------------------------------------------------------
# Verdicts
# ---------------------------------------------------------------------------


def verdict(name: str, size: int | None, value: str, limit: str, passed: bool) -> dict[str, Any]:
    """One row of the verdict list."""
    return {"target": name, "size": size, "value": value, "limit": limit, "passed": passed}


def verdicts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """PASS/FAIL of every target; all of them deterministic or directly accounted."""
    rows: list[dict[str, Any]] = []
    for s in summary["sizes"]:
        rows += size_verdicts(s)
    sizes = summary["sizes"]
    if len(sizes) >= 2:
        rows.append(growth_verdict(sizes[0], sizes[-1]))
        rows.append(ratio_verdict("bytes per run vs size", [s["writes"]["bytes"] for s in sizes]))
        for name, key in (
            ("package memory vs size", "package_peak"),
            ("process peak C-B vs size", "peak_delta"),
        ):
            rows.append(memory_verdict(name, [s["memory"][key] for s in sizes]))
    return rows


def size_verdicts(s: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of one size."""
    size, own, v = s["size"], s["own"], s["verify"]
    complete = v["events_outside"] == 0 and v["hooks_wrapped"] == v["hooks_known"] > 0
    a, c = s["counts"]["A"], s["counts"]["C"]
    st = s["structure"]
    return [
        verdict(
            "package's own time per run",
            size,
            f"{own['cpu_ms']:.3f} ms CPU (median of {own['runs']})",
            f"<= {LIMIT_OWN_MS} ms",
            own["cpu_ms"] <= LIMIT_OWN_MS,
        ),
        verdict(
            "accounting sees every event",
            size,
            f"{v['events_outside']} outside, {v['hooks_wrapped']}/{v['hooks_known']} hooks",
            "0 outside, all hooks",
            complete,
        ),
        verdict(
            "same work in every config",
            size,
            "yes" if s["same_work"] else "NO",
            "rules, F1, LLM calls equal",
            s["same_work"],
        ),
        verdict(
            "LLM calls & evaluations A == C",
            size,
            f"{a['llm_calls']}/{a['total']} vs {c['llm_calls']}/{c['total']}",
            "equal",
            a == c,
        ),
        verdict(
            "B: nothing installed",
            size,
            "none" if st["B_no_wrapper"] else "FOUND",
            "none",
            st["B_no_wrapper"],
        ),
        verdict(
            "everything restored after runs",
            size,
            "yes" if st["all_restored_after_run"] and st["coordinators_restored"] else "NO",
            "yes",
            st["all_restored_after_run"] and st["coordinators_restored"],
        ),
    ]


def growth_verdict(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    """No part of the package's own time grows with the data."""
    grown = growing_parts(small, large)
    value = ", ".join(f"{name} {a:.3f}->{b:.3f} ms" for name, a, b in grown) or "none"
    return verdict(
        "no part grows with the data",
        None,
        value,
        f"each <= {GROWTH_FACTOR:g} x smallest + {GROWTH_FLOOR_MS} ms",
        not grown,
    )


def growing_parts(small: dict[str, Any], large: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(name, ms at the smallest size, ms at the largest) of every part that grew."""
    before = {**small["own"]["hooks"], **small["own"]["parts"]}
    after = {**large["own"]["hooks"], **large["own"]["parts"]}
    return [
        (name, before.get(name, 0.0), ms)
        for name, ms in sorted(after.items(), key=lambda kv: -kv[1])
        if ms > GROWTH_FACTOR * before.get(name, 0.0) + GROWTH_FLOOR_MS
    ]


def ratio_verdict(name: str, values: list[int]) -> dict[str, Any]:
    """Largest / smallest at most :data:`LIMIT_BYTES_GROWTH`."""
    growth = max(values) / max(1, min(values))
    shown = " / ".join(str(v) for v in values) + f" B (x{growth:.2f})"
    limit = f"max/min <= {LIMIT_BYTES_GROWTH}"
    return verdict(name, None, shown, limit, growth <= LIMIT_BYTES_GROWTH)


def memory_verdict(name: str, values: list[int]) -> dict[str, Any]:
    """Largest / max(smallest, 64 KiB) at most :data:`LIMIT_MEMORY_GROWTH`."""
    growth = max(values) / max(min(values), MEMORY_FLOOR)
    shown = " / ".join(f"{v / 1024:.1f}" for v in values) + f" KiB (x{growth:.2f})"
    limit = f"max/max(min,64K) <= {LIMIT_MEMORY_GROWTH}"
    return verdict(name, None, shown, limit, growth <= LIMIT_MEMORY_GROWTH)


# ---------------------------------------------------------------------------
# The printed report
# ---------------------------------------------------------------------------


def format_report(result: dict[str, Any]) -> str:
    """The fixed-width report: machine, per size, classes, verdicts."""
    summary = summarise(result)
    lines = format_machine(result)
    for s in summary["sizes"]:
        lines += ["", *format_size(s)]
    if len(summary["sizes"]) >= 2:
        lines += ["", *format_parts_by_size(summary["sizes"])]
    if summary["classes"]:
        lines += ["", *format_classes(summary["classes"])]
    lines += ["", *format_verdicts(verdicts(summary))]
    return "\n".join(lines)


def format_machine(result: dict[str, Any]) -> list[str]:
    """Header lines: machine, versions, settings, the method's calibration."""
    m, st = result["machine"], result["settings"]
    v = m["versions"]
    cal = result["accounting"]["calibration"]
    load = "/".join(f"{x:.2f}" for x in m["loadavg_start"])
    load_end = "/".join(f"{x:.2f}" for x in m.get("loadavg_end") or [])
    return [
        "rulechef-trace overhead benchmark",
        f"machine : {m['nproc']} cores, {m['cpu']}, Python {m['python']}",
        f"versions: rulechef {v['rulechef']}, blinker {v['blinker']}, orjson {v['orjson']}, "
        f"rulechef-trace {v['rulechef-trace']}",
        f"load    : {load} at start, {load_end} at end",
        f"workload: learn_rules(max_refinement_iterations={st['iterations']}), stand-in LLM, "
        f"AgenticCoordinator; {Path(st['data']).name} ({st['base_examples']} rows, "
        f"{st['base_labels']} labels), scaled",
        f"hooks   : {len(result['hooks'])} rulechef methods wrapped while somebody listens",
        f"shims   : {cal['per_hook_cpu_us']:.2f} us CPU per hooked call, "
        f"{cal['per_part_cpu_us']:.2f} us per part call land in the package's figure "
        "(the 'shim share' below)",
        f"          {cal.get('per_hook_cold_cpu_us', 0.0):.2f} and "
        f"{cal.get('per_part_cold_cpu_us', 0.0):.2f} us each right after other work "
        "(the 'cold' share; the verdict counts the shims as the package's)",
    ]


def _bridge(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The accounted runs with the OTel bridge on top, or why there are none."""
    if not runs:
        return None
    if "unavailable" in runs[0]:
        return {"unavailable": runs[0]["unavailable"]}
    return own_time(runs)


def format_bridge(bridge: dict[str, Any] | None, own: dict[str, Any]) -> list[str]:
    """What the OTel bridge adds to the package's own time (accounted, SDK to memory)."""
    if bridge is None:
        return []
    if "unavailable" in bridge:
        return [f"OTel bridge            : not measured: {bridge['unavailable']}"]
    added = bridge["cpu_ms"] - own["cpu_ms"]
    return [
        f"OTel bridge            : {added:+.3f} ms CPU per run "
        f"({bridge['cpu_ms']:.3f} with record_trace(otel=True) and an SDK exporting to memory, "
        f"median of {bridge['runs']}; {own['cpu_ms']:.3f} without)"
    ]


def format_size(s: dict[str, Any]) -> list[str]:
    """Everything measured at one size."""
    own, w = s["own"], s["writes"]
    lines = [f"== {s['size']} examples =="]
    lines += format_own(own, s["leak_ms"], s.get("leak_cold_ms", 0.0))
    lines += format_bridge(s.get("bridge"), own)
    lines += [
        f"trace files per run    : {w['files']} files, {w['bytes']} B together; the largest "
        f"{w['largest_file']} B = {w['bytes_per_event']:.0f} B/event ({w['events']} events, "
        f"{w['rules']} rules)",
        f"writing                : {w['serialisations']} serialisation(s), {w['fsyncs']} fsync "
        f"({w['fsync_wall_ms']:.3f} ms wall), {w['renames']} rename/link",
    ]
    lines += format_profile(s["profile"])
    lines += format_wall(s)
    lines += format_details(s)
    return lines


def format_profile(profile: dict[str, Any] | None) -> list[str]:
    """The package's costliest functions under cProfile (shares, inflated by the profiler)."""
    if not profile:
        return []
    total = profile["total_s"] or 1.0
    lines = ["  cProfile (CPU clock), one C run: share of the package's own time by function"]
    for name, own, calls in profile["functions"][:10]:
        lines.append(f"    {name:<60} {100 * own / total:5.1f} % {calls:>6} calls")
    return lines


def format_own(own: dict[str, Any], leak_ms: float, leak_cold_ms: float = 0.0) -> list[str]:
    """The package's own time and its parts, largest first."""
    stable = "" if own["calls_stable"] else " (call counts differ between runs!)"
    fsync = own["parts_wall"].get("os.fsync", 0.0)
    lines = [
        f"package's own time     : {own['cpu_ms']:.3f} ms CPU per run (median of {own['runs']}, "
        f"{own['cpu_min_ms']:.3f}-{own['cpu_max_ms']:.3f}); shim share <= {leak_ms:.3f} ms "
        f"({leak_cold_ms:.3f} cold){stable}",
        f"  wall clock           : {own['wall_ms']:.3f} ms, of which {fsync:.3f} ms in os.fsync "
        "(waits for the disk, descheduling: not CPU)",
        f"  not counted          : {own['gc_ms']:.3f} ms of garbage collection during package "
        f"frames; {own['host_ms']:.1f} ms of rulechef inside the hooks",
        f"  {'frame or part':<50} {'CPU ms':>7} {'wall ms':>8} {'calls':>6}",
    ]
    items = [(k, v, own["hooks_wall"].get(k, 0.0), "") for k, v in own["hooks"].items()]
    items += [(k, v, own["parts_wall"].get(k, 0.0), "part ") for k, v in own["parts"].items()]
    for name, cpu, wall, kind in sorted(items, key=lambda x: -x[1]):
        calls = own["calls"].get(name, 0)
        lines.append(f"  {(kind + name)[:50]:<50} {cpu:>7.3f} {wall:>8.3f} {calls:>6}")
    return lines


def format_wall(s: dict[str, Any]) -> list[str]:
    """Wall-clock medians and ratios, context only, with the A/A control first."""
    wall, cpu = s["wall"], s["cpu"]
    lines = [
        f"wall clock (context only, never judged; {s['reps']} rotating rounds):",
        f"  {'config':<8} {'median':>9} {'X/A':>7} {'rounds min-max':>15} {'cpu X/A':>8}",
    ]
    order = ["A", "A2", *(c for c in wall["median_s"] if c not in ("A", "A2"))]
    for config in order:
        median = f"{wall['median_s'][config]:.3f} s"
        if config == "A":
            lines.append(f"  {config:<8} {median:>9} {'1':>7} {'':>15} {'1':>8}")
            continue
        r, rc = wall["ratios"][config], cpu["ratios"][config]
        span = f"{r['pair_min']:.3f}-{r['pair_max']:.3f}"
        name = f"{config} (A/A)" if config == "A2" else config
        lines.append(f"  {name:<8} {median:>9} {r['ratio']:>7.4f} {span:>15} {rc['ratio']:>8.4f}")
    if s["paired"]:
        p = s["paired"]
        lines.append(
            f"  in-process, worker C : recorded/plain {p['ratio']:.4f} "
            f"({p['pairs']} pairs, {p['pair_min']:.3f}-{p['pair_max']:.3f})"
        )
    return lines


def format_details(s: dict[str, Any]) -> list[str]:
    """Memory, counts, same work and structure of one size."""
    mem, fp = s["memory"], s["fingerprint"] or {}
    counts = ", ".join(f"{c} {n['llm_calls']}/{n['total']}" for c, n in s["counts"].items())
    structure = ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in s["structure"].items())
    return [
        f"package memory         : peak {mem['package_peak'] / 1024:.1f} KiB live, "
        f"{mem['package_retained'] / 1024:.1f} KiB retained after the run",
        f"process peak (tracemalloc): B {mem['peak_B'] / 1024:.0f} KiB, "
        f"C {mem['peak_C'] / 1024:.0f} KiB, C-B {mem['peak_delta'] / 1024:+.1f} KiB",
        f"LLM calls / evaluations: {counts}",
        f"LLM capture per call   : {_per_call(s)}",
        f"same work everywhere   : {'yes' if s['same_work'] else 'NO'} "
        f"({fp.get('rules')} rules, micro F1 {fp.get('f1')})",
        f"structure              : {structure}",
    ]


def _per_call(s: dict[str, Any]) -> str:
    """The package's own time in the client's ``create`` frames per LLM call of config C."""
    frames = {k: v for k, v in s["own"]["hooks"].items() if k.endswith(".create (instance)")}
    calls = s["counts"].get("C", {}).get("llm_calls") or 0
    if not frames or not calls:
        return "no LLM call was accounted"
    per_call = sum(frames.values()) / calls * 1000
    return f"{per_call:.1f} µs CPU ({calls} calls; accounting shims included)"


def format_parts_by_size(sizes: list[dict[str, Any]]) -> list[str]:
    """The package's own time by frame and part at every size (ms per run)."""
    names: dict[str, None] = {}
    for s in sizes:
        names.update(dict.fromkeys([*s["own"]["hooks"], *s["own"]["parts"]]))
    head = "".join(f"{s['size']:>10}" for s in sizes)
    lines = ["== own CPU time by frame and part, ms per run ==", f"  {'':<50}{head}"]
    rows = []
    for name in names:
        values = [{**s["own"]["hooks"], **s["own"]["parts"]}.get(name, 0.0) for s in sizes]
        rows.append((name, values))
    for name, values in sorted(rows, key=lambda r: -r[1][-1]):
        lines.append(f"  {name[:50]:<50}" + "".join(f"{v:>10.3f}" for v in values))
    totals = "".join(f"{s['own']['cpu_ms']:>10.3f}" for s in sizes)
    return [*lines, f"  {'total':<50}{totals}"]


def format_classes(classes: list[dict[str, Any]]) -> list[str]:
    """Trace size and own time against the number of classes."""
    lines = [
        "== trace size vs classes (synthetic data, direct accounting) ==",
        f"  {'classes':>7} {'examples':>8} {'events':>6} {'rules':>5} {'bytes/run':>9} "
        f"{'B/event':>7} {'CPU ms':>7}  (B/event: the largest file / events)",
    ]
    for c in classes:
        lines.append(
            f"  {c['classes']:>7} {c['examples']:>8} {c['events']:>6} {c['rules']:>5} "
            f"{c['bytes']:>9} {c['bytes_per_event']:>7.0f} {c['own']['cpu_ms']:>7.3f}"
        )
    return lines


def format_verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """The PASS/FAIL list."""
    lines = ["== verdicts ==", f"{'':6} {'size':>6}  {'target':<32} {'value':<36} limit"]
    for row in rows:
        size = str(row["size"]) if row["size"] is not None else "all"
        word = "PASS" if row["passed"] else "FAIL"
        lines.append(f"{word:<6} {size:>6}  {row['target']:<32} {row['value']:<36} {row['limit']}")
    return lines
