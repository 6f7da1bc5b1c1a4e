"""The Markdown table of a ``make bench`` run, and the README block that carries it."""

from __future__ import annotations

import re
from pathlib import Path

# No RAPL or NVML here: energy is estimated from busy CPU seconds at this power per
# busy core, a server CPU's TDP over its cores (e.g. 360 W / 96 cores = 3.75 W).
WATTS_PER_CORE = 4.0
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def _met(entry: dict) -> str:
    return "yes" if entry["met"] else "**no**"


def _energy(section: dict) -> str:
    j = section.get("joules_per_km2")
    if j is not None:
        return f"{j:g} J (RAPL)"
    return f"~{section['cpu_s_per_km2'] * WATTS_PER_CORE:.3g} J (estimate)"


def rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    """(id, what, measured, target, met) for every line of the table."""
    out = []
    p1 = r["P1"]
    for m in p1["models"].values():
        out.append(("P1", f"end-to-end / model compute, {m['model_id']} "
                    f"({m['end_to_end_s']} s / {m['model_compute_s']} s, {p1['size']}^2)",
                    f"{m['value']:.3f}", "<= 1.10", "yes" if m["value"] <= 1.10 else "**no**"))
    p2 = r["P2"]
    for what, e in (("predict", p2), ("ingest", p2["ingest"])):
        sizes = list(e["peak_rss_mb"])
        mb = ", ".join(f"{v:.0f} MB at {k}^2" for k, v in e["peak_rss_mb"].items())
        out.append(("P2", f"peak worker RSS {what}, {sizes[-1]}^2 / {sizes[0]}^2 ({mb})",
                    f"{e['value']:.3f}", e["target"], _met(e)))
    p3 = r["P3"]
    s = p3["mb_per_s_raw"]
    out.append(("P3", f"ingest MB/s / slowest stage alone ({s['ingest']:.0f} / min(decode "
                f"{s['decode']:.0f}, compress {s['compress']:.0f}, write {s['write']:.0f}); "
                f"CPU-bound ceiling {p3['cpu_bound_ceiling']:.2f})",
                f"{p3['value']:.3f}", p3["target"], _met(p3)))
    p4, rate = r["P4"], r["P4"]["patches_per_s"]
    v = p4["per_core"]
    out.append(("P4", f"balanced loader patches/s per core ({rate['balanced']:.0f} on "
                f"{p4['cores']} cores, 256^2, 13 bands, embedded S3)", f"{v['value']:.0f}",
                v["target"], _met(v)))
    v = p4["of_raw_read"]
    out.append(("P4", f"loader / raw read of the same chunks ({rate['balanced']:.0f} / "
                f"{rate['raw']:.0f} patches/s)", f"{v['value']:.2f}", v["target"], _met(v)))
    if "s3_client" in p4:
        out.append(("P4", f"S3 client: the raw read through obstore / through s3fs ("
                    f"{rate['raw']:.0f} / {rate['raw_via_s3fs']:.0f} patches/s)",
                    f"{p4['s3_client']['obstore_over_s3fs']:.2f}", "", ""))
    for k, ratio in p4["over_cpu_step"].items():
        out.append(("P4", f"loader with inputs made on this CPU / {k} CPU training step "
                    f"({rate['balanced_with_cpu_inputs']:.0f} / {rate[k]:.1f})",
                    f"{ratio:.1f}", "", ""))
    p5 = r["P5"]
    out.append(("P5", "balanced / uniform loader patches/s", f"{p5['value']:.3f}",
                p5["target"], _met(p5)))
    p6 = r["P6"]
    big, small = str(p6["size"]), str(p6["small"])
    ours = p6["satchunk"]
    out.append(("P6", f"satchunk predict {big}^2: {ours[big]['wall_s']} s, peak RSS per worker "
                f"{ours[small]['peak_rss_mb']:.0f} MB at {small}^2 -> "
                f"{ours[big]['peak_rss_mb']:.0f} MB at {big}^2", "", "", ""))
    for peer, v in p6["peers"].items():
        out.append(("P6", f"speed-up over {peer}: {v[big]['wall_s']} s; peak RSS "
                    f"{v[small]['peak_rss_mb']:.0f} -> {v[big]['peak_rss_mb']:.0f} MB; "
                    f"same class {v[big]['agreement']:.2%}", f"{p6['speedup'][peer]:.2f}x",
                    ">= 1.3x", "yes" if p6["speedup"][peer] >= 1.3 else "**no**"))
    for m in p1["models"].values():
        sc, up = m["scheduling"], m["useful_pixels"]
        out.append(("sched", f"Dask share of graph wall, {m['model_id']} ({sc['tasks']} tasks, "
                    f"{sc['tasks_per_s']:.2f} tasks/s; useful pixels {up['computed']:.0%} of "
                    f"computed, {up['read']:.0%} of read)", f"{sc['dask_share']:.2%}",
                    "<= 2 %", "yes" if sc["dask_share"] <= 0.02 else "**no**"))
    cost = r["cost"]
    for k, v in cost.items():
        out.append(("cost", f"{k}: CPU-s per km^2 (10 m pixels); energy per km^2",
                    f"{v['cpu_s_per_km2']:g} CPU-s, {_energy(v)}", "", ""))
    gpu = r.get("gpu") or {}
    if not gpu.get("available"):
        out.append(("GPU", gpu.get("why", "no GPU on this machine"), "", "", ""))
    return out


def table(r: dict) -> str:
    lines = [f"Latest `make bench`: {r['date'][:10]}, {r['machine']}, "
             f"{r['seconds'] / 60:.0f} min."
             + (f" {r['rerun']['what']}: rerun alone on {r['rerun']['date'][:10]}."
                if r.get("rerun") else ""), "",
             "| id | measurement | value | target | met |", "| --- | --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows(r)]
    return "\n".join(lines)


def update_readme(readme: Path, text: str) -> bool:
    """Replace the block between the bench markers; False if the README has none."""
    s = readme.read_text()
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    if not pat.search(s):
        return False
    readme.write_text(pat.sub(lambda _: f"{BEGIN}\n{text}\n{END}", s))
    return True
