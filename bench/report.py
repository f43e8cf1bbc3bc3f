"""The benchmark report: targets met or missed, Markdown tables and PNG plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TARGET_E2E_SINGLE = 50_000
TARGET_E2E_BATCH = 200_000
TARGET_VS_BYTEWAX = 5.0
TARGET_VS_QUIX = 3.0


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float | int):
        return f"{v:,.{digits}f}"
    return str(v)


def _pm(s: dict[str, Any] | None, digits: int = 0) -> str:
    """median (min-max) for repeated runs, just the value for one."""
    if not s or not s.get("n"):
        return "n/a"
    if s["n"] == 1:
        return _fmt(s["median"], digits)
    return f"{_fmt(s['median'], digits)} ({_fmt(s['min'], digits)}-{_fmt(s['max'], digits)})"


def best_e2e(results: dict[str, Any], batch: int) -> tuple[float | None, bool]:
    """Best rate into Kafka with every reading delivered, and whether that run also kept
    p99 latency in budget (fixed runs and ramp)."""
    rows = [
        r
        for r in results.get("e2e", {}).get("cases", []) + results.get("e2e", {}).get("ramp", [])
        if r["readings_per_message"] == batch
        and r["delivered_fraction"] == 1.0
        and r.get("kafka_rate")
    ]
    if not rows:
        return None, False
    sustained = [r for r in rows if r.get("sustained")]
    best = max(sustained or rows, key=lambda r: float(r["kafka_rate"]))
    return float(best["kafka_rate"]), bool(sustained)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the measured figure, met or not, and the ratio to the target."""
    out = []
    for label, batch, goal in (
        ("end to end, single-reading MQTT messages (readings/s, no loss)", 1, TARGET_E2E_SINGLE),
        ("end to end, gateway batches of 100 (readings/s, no loss)", 100, TARGET_E2E_BATCH),
    ):
        if not results.get("e2e"):
            continue
        got, sustained = best_e2e(results, batch)
        tried = [
            r
            for r in results["e2e"].get("cases", []) + results["e2e"].get("ramp", [])
            if r["readings_per_message"] == batch
        ]
        if not tried:
            continue
        out.append(
            {
                "target": label,
                "goal": goal,
                "measured": got,
                "sustained": sustained,
                "met": sustained and got is not None and got >= 0.98 * goal,
                "ratio": (got or 0) / goal,
            }
        )
    peers = results.get("peers", {}).get("summary", {})
    for label, peer, ratio_goal in (
        ("dataflow vs Bytewax per-item fold_window (x, steady rate)", "bytewax", TARGET_VS_BYTEWAX),
        ("dataflow vs Quix Streams (x, steady rate)", "quix", TARGET_VS_QUIX),
    ):
        ratio = peers.get(peer, {}).get("steady_ratio_ours_to_this", {}).get("median")
        if ratio is None or (isinstance(ratio, float) and math.isnan(ratio)):
            continue
        out.append(
            {
                "target": label,
                "goal": ratio_goal,
                "measured": ratio,
                "met": ratio >= ratio_goal,
                "ratio": ratio / ratio_goal,
            }
        )
    return out


def _profile_md(name: str, prof: dict[str, Any] | None) -> list[str]:
    if not prof or not prof.get("samples"):
        return []
    lines = [f"**{name}** ({prof['samples']} py-spy samples, all threads; share of samples):", ""]
    lines += ["| own time (leaf function) | % | including callees | % |", "|---|--:|---|--:|"]
    own, incl = prof["self"], prof["inclusive"]
    for i in range(min(10, max(len(own), len(incl)))):
        a = own[i] if i < len(own) else ("", "")
        b = incl[i] if i < len(incl) else ("", "")
        lines.append(f"| `{a[0]}` | {a[1]} | `{b[0]}` | {b[1]} |")
    return [*lines, ""]


def _where_md(results: dict[str, Any], tg: list[dict[str, Any]]) -> list[str]:
    """The missed targets explained, and the profiles behind the explanation."""
    lines: list[str] = []
    missed = [t for t in tg if not t["met"]]
    if missed or results.get("profiles"):
        lines += ["## Where the time goes", ""]
        lines += [str(x) for x in results.get("analysis", [])]
        lines.append("")
        if results.get("profiles"):
            lines += [
                "Profiles: py-spy, non-blocking, all threads. A function with much 'own time' "
                "that does little in Python (`run_flow`, `_poll_loop`, `next_batch`) stands for "
                "native code beneath it: Bytewax's Rust runtime, librdkafka.",
                "",
            ]
        for name, prof in results.get("profiles", {}).items():
            lines += _profile_md(name, prof)
    return lines


def render_markdown(results: dict[str, Any], plots: list[str]) -> str:
    m = results["machine"]
    pk = m.get("packages", {})
    lines = [
        f"# iotpipe benchmark ({results['mode']} mode)",
        "",
        f"Command: `{results['command']}`  ",
        f"When: {results['started']} UTC, wall time {results['wall_s']:.0f} s, "
        f"repeats: {results['repeat']} (figures are medians, ranges are min-max over repeats).  ",
        f"Machine: {m['cpus']} cores ({m.get('cpu_model')}), {_fmt(m.get('memory_mb'))} MB RAM, "
        f"Python {m['python']}, Kafka {m.get('kafka')}, InfluxDB {m.get('influxdb')}, "
        f"bytewax {pk.get('bytewax')}, quixstreams {pk.get('quixstreams')}, "
        f"confluent-kafka {pk.get('confluent-kafka')}, paho-mqtt {pk.get('paho-mqtt')}.  ",
        f"Load average at start {m.get('load_average_start')}, at end "
        f"{m.get('load_average_end')}: the 2 cores were shared with other engineers' test runs, "
        "so compare by the ratios measured in the same run.",
        "",
    ]
    tg = results.get("targets", [])
    if tg:
        lines += [
            "## Targets",
            "",
            "| target | goal | measured | met | measured / goal |",
        ]
        lines += ["|---|--:|--:|:-:|--:|"]
        for t in tg:
            lines.append(
                f"| {t['target']} | {_fmt(t['goal'], 1 if t['goal'] < 100 else 0)} | "
                f"{_fmt(t['measured'], 1 if t['goal'] < 100 else 0)}"
                f"{'' if t.get('sustained', True) else ' (latency over budget)'} | "
                f"{'yes' if t['met'] else '**no**'} | {t['ratio']:.2f} |"
            )
        lines += [
            "",
            "End-to-end 'measured' is the best rate into Kafka of a run that lost nothing; "
            "'met' also needs that run's p99 latency within the budget below.",
            "",
        ]
    st = results.get("stages")
    if st:
        lines += [
            "## Stage drains",
            "",
            "| stage | readings/s | CPU s per 1M readings | peak RSS MB |",
        ]
        lines += ["|---|--:|--:|--:|"]
        for name, s in st["summary"].items():
            lines.append(
                f"| {name} | {_pm(s['readings_per_s'])} | {_pm(s['cpu_s_per_million'], 1)} "
                f"| {_pm(s['peak_rss_mb'])} |"
            )
        lines += [
            "",
            "The InfluxDB sink row is points/s (one point per aggregate, i.e. per device-window), "
            "not readings/s.",
            "",
        ]
    pe = results.get("peers")
    if pe:
        cmp_ = pe["comparison"]
        lines += [
            "## Peers on the same job",
            "",
            f"Per-device 10 s tumbling window (count, mean, min, max) over one preloaded topic: "
            f"{_fmt(pe['readings'])} readings, {_fmt(pe['devices'])} devices, "
            f"{pe['partitions']} partitions, one process each, start-up included.",
            "",
            "| engine | readings/s incl. start-up | ours / this | readings/s steady | "
            "ours / this (steady) | CPU s per 1M | peak RSS MB |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        names = {
            "ours": "iotpipe micro-batched flow",
            "bytewax": "Bytewax per-item fold_window",
            "quix": "Quix Streams tumbling_window",
            "plain": "plain confluent-kafka loop",
        }
        for peer, s in pe["summary"].items():
            lines.append(
                f"| {names.get(peer, peer)} | {_pm(s['readings_per_s'])} | "
                f"{_pm(s['ratio_ours_to_this'], 2)} | {_pm(s.get('steady_readings_per_s'))} | "
                f"{_pm(s.get('steady_ratio_ours_to_this'), 2)} | "
                f"{_pm(s['cpu_s_per_million'], 1)} | {_pm(s['peak_rss_mb'])} |"
            )
        verdict = (
            f"identical on all {cmp_['sampled_windows']} sampled device-windows"
            if cmp_["identical"]
            else f"**AGGREGATES DIFFER ({cmp_['mismatch_count']} mismatches over "
            f"{cmp_['sampled_windows']} sampled windows): the comparison is not fair.** "
            + "; ".join(cmp_["mismatches"][:5])
        )
        lines += [
            "",
            "'Steady' counts from the moment the engine handed over its first reading to the "
            "end (start-up left out: imports are excluded from both, Kafka connect and "
            "Bytewax/Quix start are excluded from 'steady' only); the dataflow targets are "
            "judged on the steady ratio. Small (quick-mode) backlogs are start-up dominated.",
            "",
            f"Aggregates cross-checked against the plain loop: {verdict}.",
            "",
        ]
    e2e = results.get("e2e")
    if e2e:
        lines += [
            "## End to end",
            "",
            "Real processes (`iotpipe simulate` -> Mosquitto -> `iotpipe ingest` -> Kafka -> "
            "`iotpipe flow run` -> InfluxDB + alerts topic), QoS 1, one sensor type, 10 s windows, "
            f"allowed lateness {e2e['lateness_s']} s. Latency budget for 'sustained': p99 event -> "
            f"aggregate <= window + allowed lateness + 2 s = {e2e['budget_s']} s, and every "
            "reading delivered (per-device seq).",
            "",
            "| offered readings/s | readings/msg | published/s | into Kafka/s | delivered | dup | "
            "p50/p99 ingest s | p50/p99 Kafka s | p50/p99 aggregate s | p99 close->written s "
            "| p99 alert s | sustained |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|:-:|",
        ]
        for r in e2e.get("cases", []) + e2e.get("ramp", []):
            lat = r["latency"]

            def pp(k: str, lat: dict[str, Any] = lat) -> str:
                return f"{_fmt(lat[k]['p50_s'], 2)} / {_fmt(lat[k]['p99_s'], 2)}"

            lines.append(
                f"| {_fmt(r['offered_rate'])}{' (ramp)' if r.get('ramp') else ''} | "
                f"{r['readings_per_message']} | {_fmt(r['published_rate'])} | "
                f"{_fmt(r['kafka_rate'])} | {100 * r['delivered_fraction']:.3f}% | "
                f"{r['delivery']['duplicates']} | {pp('event_to_ingest')} | "
                f"{pp('event_to_kafka')} | "
                f"{pp('event_to_aggregate')} | "
                f"{_fmt(lat['window_close_to_aggregate']['p99_s'], 2)} | "
                f"{_fmt(lat['event_to_alert']['p99_s'], 2)} | "
                f"{'yes' if r.get('sustained') else 'no'} |"
            )
        sus = e2e.get("sustainable", {})
        lines += [
            "",
            f"Highest sustained rate found: single-reading messages {_fmt(sus.get('1'))} "
            f"readings/s; gateway batches {_fmt(sus.get('100'))} readings/s. "
            "The reference case claims 99.99% availability; the 'delivered' column is the "
            "measured fraction of the simulator's readings found on Kafka (unique device, seq).",
            "",
            "Latency definitions: ingest = the ingester's `ingest_ts` - event `ts`; Kafka = broker "
            "append time (topics set to LogAppendTime) - `ts`; aggregate = wall time at which the "
            "reading's window was complete in InfluxDB (polled every 0.5 s) - `ts`, for whole "
            "windows closed while input still flowed; close->written = that time - (window end + "
            "allowed lateness), the pipeline's own share; dup = readings seen twice (QoS 1 "
            "redelivers what was unacknowledged when the ingester's MQTT connection drops, e.g. a "
            "keep-alive timeout under overload; the sinks are idempotent); alert = append time on "
            "the alerts topic - the alert's reading time. 'published/s' is what the simulator "
            "managed to send: when it is below the offered rate, the simulator (one Python process "
            "on the same 2 cores) is the bottleneck and event times fall behind the wall clock.",
            "",
        ]
    sc = results.get("scaling")
    if sc:
        lines += ["## Scaling", "", "| partitions | Bytewax workers | readings/s | CPU s per 1M |"]
        lines += ["|--:|--:|--:|--:|"]
        for r in sc["throughput"]:
            lines.append(
                f"| {r['partitions']} | {r['workers']} | {_fmt(r['readings_per_s'])} | "
                f"{_fmt(r['cpu_s_per_million'], 1)} |"
            )
        lines += ["", "| devices | flow state RSS growth MB | bytes per device |", "|--:|--:|--:|"]
        for r in sc["memory"]:
            lines.append(
                f"| {_fmt(r['devices'])} | {_fmt(r['rss_growth_mb'], 1)} | "
                f"{_fmt(r['bytes_per_device'])} |"
            )
        lines.append("")
    lines += _where_md(results, tg)
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p}]({p})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def make_plots(results: dict[str, Any], out: Path) -> list[str]:  # noqa: PLR0915 - one per plot
    """PNG plots next to the report; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    made: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        made.append(name)

    st = results.get("stages")
    if st:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        names = list(st["summary"])
        med = [st["summary"][n]["readings_per_s"]["median"] for n in names]
        lo = [
            m - st["summary"][n]["readings_per_s"]["min"] for n, m in zip(names, med, strict=True)
        ]
        hi = [
            st["summary"][n]["readings_per_s"]["max"] - m for n, m in zip(names, med, strict=True)
        ]
        ax.barh(names, med, xerr=[lo, hi], color="#4c78a8")
        ax.set_xlabel("readings/s (sink: points/s)")
        ax.set_title("Stage drains")
        save(fig, "throughput_by_stage.png")
    pe = results.get("peers")
    if pe:
        fig, ax = plt.subplots(figsize=(7, 3))
        names = list(pe["summary"])
        med = [pe["summary"][n]["readings_per_s"]["median"] for n in names]
        colours = ["#e45756" if n == "ours" else "#9d9d9d" for n in names]
        ax.barh(names, med, color=colours)
        ax.set_xlabel("readings/s incl. start-up, same windowed job, same topic")
        ax.set_title("Peers")
        save(fig, "throughput_by_peer.png")
    e2e = results.get("e2e")
    if e2e and e2e.get("cases"):
        fig, ax = plt.subplots(figsize=(7, 4))
        for r in e2e["cases"]:
            label = f"{r['offered_rate']:,}/s x{r['readings_per_message']}"
            for key, style in (("event_to_kafka_ms", "--"), ("event_to_aggregate_ms", "-")):
                cdf = r.get("cdf", {}).get(key) or []
                if cdf:
                    ys = [i / (len(cdf) - 1) for i in range(len(cdf))]
                    ax.plot([c / 1000 for c in cdf], ys, style, label=f"{label} {key[9:-3]}")
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("latency from event time, s")
        ax.set_ylabel("fraction of readings")
        ax.set_title("End-to-end latency CDF (dashed: to Kafka; solid: aggregate written)")
        ax.legend(fontsize=7)
        save(fig, "latency_cdf.png")
    if e2e and e2e.get("ramp"):
        fig, ax = plt.subplots(figsize=(7, 3.5))
        for batch in sorted({r["readings_per_message"] for r in e2e["ramp"]}):
            rows = [r for r in e2e["ramp"] if r["readings_per_message"] == batch]
            xs = [r["offered_rate"] for r in rows]
            ax.plot(xs, [r["kafka_rate"] or 0 for r in rows], "o-", label=f"into Kafka, x{batch}")
            ax.plot(
                xs, [r["published_rate"] or 0 for r in rows], "s:", label=f"published, x{batch}"
            )
        top = max(r["offered_rate"] for r in e2e["ramp"])
        low = min(r["offered_rate"] for r in e2e["ramp"])
        ax.plot([low / 2, top], [low / 2, top], color="grey", lw=0.8, label="offered")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("offered readings/s")
        ax.set_ylabel("achieved readings/s")
        ax.set_title("Ramp")
        ax.legend(fontsize=7)
        save(fig, "ramp.png")
    return made
