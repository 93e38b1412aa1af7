"""Regenerate README.md's performance table from benchmarks/results/*.json.

    python scripts/update_perf_table.py            # rewrite the block between the markers
    python scripts/update_perf_table.py --check    # exit 1 when the README is out of date
    python scripts/update_perf_table.py --print    # print the block only

Only the text between ``<!-- perf-table:start -->`` and ``<!-- perf-table:end -->`` changes;
every number in it comes from a result file written by ``benchmarks/run.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import harness  # noqa: E402

START, END = "<!-- perf-table:start -->", "<!-- perf-table:end -->"


def _ms(v: float | None) -> str:
    if v is None:
        return "–"
    if v >= 1000:
        return f"{v / 1000:.2f} s"
    return f"{v:.1f} ms" if v >= 10 else f"{v:.2f} ms"


def _x(v: float | None) -> str:
    return f"{v:.2f}×" if v else "–"


def _ok(doc: dict[str, Any], suite: str) -> list[dict[str, Any]]:
    return [r for r in doc["results"] if r["suite"] == suite and r["status"] == "ok"]


def _section_flexit(doc: dict[str, Any]) -> list[str]:
    rows = [r for r in _ok(doc, "flexit") if not r.get("stage")]
    if not rows:
        return []
    out = ["", "FlexIT, one optimisation added per row (ratio: speed-up per image over the reference loop):", "",
           "| group | variant | p50 | CV | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        s = r.get("device_ms") or r["wall_ms"]
        mark = " (default)" if r.get("default") else ""
        out.append(f"| {r['group']} | {r['name']}{mark} | {_ms(s['p50'])} | {100 * s['cv']:.0f}% | {_x(r.get('ratio'))} |")
    return out


def _section_flexit_networks(doc: dict[str, Any]) -> list[str]:
    rows = [r for r in _ok(doc, "flexit") if r.get("stage") in ("forward", "backward")]
    if not rows:
        return []
    out = ["", "FlexIT per network at one paper step, input gradient only (ratio: speed-up over fp32):", "",
           "| network pass | precision | p50 | ratio |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['group'].split('network ', 1)[-1]} | {r['name']} | {_ms(harness.primary_p50(r))} | "
                   f"{_x(r.get('ratio'))} |")
    return out


def _section_edits(doc: dict[str, Any]) -> list[str]:
    rows = _ok(doc, "edits")
    totals = [r for r in rows if not r.get("stage")]
    if not totals:
        return []
    out = ["", "Direction edits, text → image (sum of stages; ratio vs the reference code's loops):", "",
           "| edit | variant | p50 | stages (p50) | ratio |", "|---|---|---|---|---|"]
    for r in totals:
        stages = [x for x in rows if x.get("stage") and x["group"] == r["group"] and x.get("variant") == r["name"]]
        parts = ", ".join(f"{x['stage']} {_ms(harness.primary_p50(x))}" for x in stages)
        out.append(f"| {r['group']} | {r['name']} | {_ms(harness.primary_p50(r))} | {parts} | {_x(r.get('ratio'))} |")
    return out


def _section_networks(doc: dict[str, Any]) -> list[str]:
    rows = _ok(doc, "networks")
    if not rows:
        return []
    batches = sorted({int(r["batch"]) for r in rows if r.get("batch")})
    shown = {batches[0], batches[-1]}
    out = ["", f"Networks (p50 per call at batch {' and '.join(map(str, sorted(shown)))}; "
               "ratio vs torch eager fp32 at the same batch):", "",
           "| network | backend | batch | p50 | items/s | ratio |", "|---|---|---|---|---|---|"]
    for r in rows:
        if int(r.get("batch") or 0) not in shown:
            continue
        out.append(f"| {r['group']} | {r.get('backend')} {r.get('precision')} | {r['batch']} | "
                   f"{_ms(harness.primary_p50(r))} | {r['items_per_s']:.3g} | {_x(r.get('ratio'))} |")
    return out


def _section_ops(doc: dict[str, Any]) -> list[str]:
    rows = _ok(doc, "ops")
    if not rows:
        return []
    out = ["", "Fused kernels, forward + backward at FlexIT's sizes:", "",
           "| op | implementation | p50 | ratio |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['group']} | {r['name']} | {_ms(harness.primary_p50(r))} | {_x(r.get('ratio'))} |")
    return out


def _section_batch(doc: dict[str, Any]) -> list[str]:
    rows = _ok(doc, "batch")
    if not rows:
        return []
    out = ["", "Per-image time by batch size (ratio: batch-1 time per image / this row's; below 1 = slower per image):",
           "", "| what | call | per image | ratio |", "|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['group']} | {r['name']} | {_ms(harness.per_item_ms(r))} | {_x(r.get('ratio'))} |")
    return out


def _section_findings(doc: dict[str, Any]) -> list[str]:
    findings = doc.get("findings") or {}
    out = []
    drift = findings.get("drift") or []
    if drift:
        out += ["", "FlexIT trajectories against fp32 from the same start, seed and views (image in [0, 1] units):", "",
                "| config | variant | steps | final image mean abs | max abs | PSNR | final loss diff |",
                "|---|---|---|---|---|---|---|"]
        for d in drift:
            out.append(f"| {d['flexit']} | {d['name']} | {d['steps']} | {d['final_image_mean_abs']:.2e} | "
                       f"{d['final_image_max_abs']:.2e} | {d['final_image_psnr_db']:.1f} dB | {d['loss_abs_diff']:.2e} |")
    for c in findings.get("compile") or []:
        first = f"{c['first_step_s']:.0f} s" if c.get("first_step_s") is not None else c.get("note", "not measured")
        out += ["", f"torch.compile (inductor) on CPU, {c['preset']} preset, {c['cache']} compiled-artifact cache: "
                    f"first step (compile included) {first}."]
    text = findings.get("text_encoding")
    if text:
        out += ["", f"Template embeddings of the trimmed encoding vs the reference ({text['clip']}): max abs "
                    f"difference {text['max_abs_diff_vs_reference']:.1e}."]
    return out


def _section_serve(doc: dict[str, Any]) -> list[str]:
    rows = _ok(doc, "serve")
    if not rows:
        return []
    out = ["", "`editrt serve` under load (benchmarks/serve_load.py; ratio: throughput vs 1 client on the same "
               "server; every response checked against the SDK):", "",
           "| server | clients | req/s | p50 | p90 | p99 | mean batch | errors | bitwise | max abs diff | ratio |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s = r["wall_ms"]
        out.append(f"| {r['group']} | {r['concurrency']} | {r['throughput_rps']:.1f} | {_ms(s['p50'])} | {_ms(s['p90'])} | "
                   f"{_ms(s['p99'])} | {r['triton_mean_batch']:.2f} | {r['errors']} | "
                   f"{r['bitwise_identical']}/{r['checked']} | {r['max_abs_diff']:.1e} | {_x(r.get('ratio'))} |")
    return out


def render(results_dir: Path) -> str:
    files = sorted(results_dir.glob("*.json"))
    docs = []
    for f in files:
        try:
            docs.append((f, harness.load_json(f)))
        except ValueError as exc:
            print(f"skipping {f}: {exc}", file=sys.stderr)
    lines = [START, "<!-- generated by scripts/update_perf_table.py from benchmarks/results/*.json; "
                    "do not edit by hand -->"]
    if not docs:
        lines += ["", "_No benchmark results yet: run `python benchmarks/run.py --out benchmarks/results`._", ""]
    for f, doc in docs:
        env, st = doc["environment"], doc["settings"]
        gpu = ", ".join(g["name"] for g in env.get("gpus") or []) or "no GPU"
        git = env.get("git") or {}
        lines += ["", f"**{f.name}** — {env.get('cpu_model')} ({env.get('torch_threads')} threads), {gpu}; "
                      f"preset `{st.get('preset')}`{' (quick)' if st.get('quick') else ''}, device `{st.get('device')}`, "
                      f"commit `{(git.get('commit') or '')[:10]}`{' (dirty)' if git.get('dirty') else ''}, "
                      f"{env.get('created')}."]
        if env.get("note"):
            lines.append(f"Note: {env['note']}")
        for section in (_section_flexit, _section_flexit_networks, _section_findings, _section_edits, _section_networks, _section_ops,
                        _section_serve, _section_batch):
            lines += section(doc)
        flagged = sum(1 for r in doc["results"] if r.get("high_variance"))
        if flagged:
            lines += ["", f"{flagged} row(s) in this file exceeded the CV threshold "
                          f"({100 * harness.cv_threshold(st.get('device', 'cpu')):.1f}%); "
                          "see the JSON for full statistics."]
    lines += ["", END]
    return "\n".join(lines)


def update(readme: Path, block: str) -> tuple[str, str]:
    """(old text, new text) of ``readme`` with the block between the markers replaced."""
    text = readme.read_text()
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise SystemExit(f"{readme}: needs exactly one '{START}' followed by one '{END}' line "
                         "(add them where the table belongs)")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return text, head + block + tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--check", action="store_true", help="exit 1 if the README is out of date")
    ap.add_argument("--print", action="store_true", help="print the generated block and exit")
    args = ap.parse_args(argv)
    block = render(args.results)
    if args.print:
        print(block)
        return 0
    if not args.readme.exists():
        raise SystemExit(f"{args.readme} does not exist")
    old, new = update(args.readme, block)
    if args.check:
        if old != new:
            print(f"{args.readme} is out of date: run python scripts/update_perf_table.py", file=sys.stderr)
            return 1
        return 0
    if old != new:
        from editrt.files import atomic_write_text

        atomic_write_text(args.readme, new)
        print(f"updated {args.readme}")
    else:
        print(f"{args.readme} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
