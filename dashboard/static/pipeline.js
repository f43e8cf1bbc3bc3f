// Pipeline health: services, ingest/flow rates, consumer lag, dead letters, sink retries/errors.
"use strict";

(async () => {
  await IP.init();
  const el = (id) => document.getElementById(id);
  const rows = (id, html) => { el(id).querySelector("tbody").innerHTML = html; };
  const state = (s) => `<span class="state-${IP.esc(s)}">${IP.esc(s)}</span>`;

  IP.poll(async () => {
    const d = await IP.getJSON("/api/pipeline");
    const comps = Object.fromEntries(d.components.map((c) => [c.name, c]));
    const ingest = comps.ingest;
    el("ingest-rate").textContent = ingest && ingest.state === "up" ? IP.num(ingest.rates.readings, 1) : "–";
    el("ingest-sub").textContent = ingest ? `ingester ${ingest.state}` : "";
    const flows = d.components.filter((c) => c.kind === "flow");
    const upFlows = flows.filter((c) => c.state === "up");
    const flowRate = upFlows.reduce((acc, c) => acc + (c.rates.readings || 0), 0);
    el("flow-rate").textContent = upFlows.length ? IP.num(flowRate, 1) : "–";
    el("flow-sub").textContent = flows.map((c) => `${c.name} ${c.state}`).join(" · ");
    const lagTotal = d.lag.reduce((acc, p) => acc + (p.lag || 0), 0);
    el("lag-total").textContent = d.lag.length ? lagTotal.toLocaleString() : "–";
    const dl = d.dead_letters;
    el("dlq-total").textContent = ((dl.ingest_topic || 0) + (dl.sink_topic || 0)).toLocaleString();
    el("dlq-sub").textContent = `dlq.ingest ${dl.ingest_topic ?? "–"} · dlq.sink ${dl.sink_topic ?? "–"}`;

    const hist = d.history;
    const names = ["ingest", "flow-normal", "flow-high"];
    const cols = { t: hist.map((p) => p.t) };
    for (const n of names) cols[n] = hist.map((p) => (p[n] === undefined ? null : p[n]));
    IP.chart(el("chart-throughput"), "throughput", cols, names.map((n) => ({ key: n, label: n })));

    rows("services", d.services.map((s) =>
      `<tr><td>${IP.esc(s.name)}</td><td>${state(s.state)}</td><td>${IP.esc(s.address)}</td><td class="muted">${IP.esc(s.detail)}</td></tr>`).join(""));
    rows("components", d.components.map((c) => {
      const t = c.totals || {};
      return `<tr><td>${IP.esc(c.name)}</td><td>${state(c.state)}</td>` +
        `<td class="num">${IP.num(c.rates.readings, 1)}</td><td class="num">${IP.num(t.readings, 0)}</td>` +
        `<td class="num">${c.kind === "flow" ? IP.num(t.sink_retries, 0) : ""}</td>` +
        `<td class="num">${c.kind === "flow" ? IP.num(t.sink_dead_lettered, 0) : IP.num(t.dead_lettered, 0)}</td></tr>`;
    }).join(""));
    rows("lag", d.lag.map((p) =>
      `<tr><td>${IP.esc(p.group)}</td><td>${IP.esc(p.topic)}</td><td class="num">${p.partition}</td>` +
      `<td class="num">${p.committed ?? "none"}</td><td class="num">${p.end}</td><td class="num">${p.lag ?? "–"}</td></tr>`).join("") ||
      `<tr><td colspan="6" class="muted">no flow consumer group has committed offsets yet${d.kafka_error ? ` (${IP.esc(d.kafka_error)})` : ""}</td></tr>`);
    const reasons = Object.entries(dl.by_reason || {});
    rows("dlq", [
      ...reasons.map(([r, n]) => `<tr><td>${IP.esc(r)}</td><td class="num">${n.toLocaleString()}</td></tr>`),
      `<tr><td>dlq.ingest topic</td><td class="num">${dl.ingest_topic ?? "–"}</td></tr>`,
      `<tr><td>dlq.sink topic</td><td class="num">${dl.sink_topic ?? "–"}</td></tr>`,
      `<tr><td>sink dead letters (flows)</td><td class="num">${dl.sink_from_flows ?? "–"}</td></tr>`,
    ].join(""));
    rows("topics", d.topics.filter((t) => t.exists).map((t) =>
      `<tr><td>${IP.esc(t.topic)}</td><td class="num">${t.partitions}</td><td class="num">${IP.num(t.messages, 0)}</td>` +
      `<td class="num">${IP.num(t.rate, 1)}</td></tr>`).join("") ||
      `<tr><td colspan="4" class="muted">no pipeline topics found</td></tr>`);
  });
})();
