// Device drill-down: server-side prefix search, then the device's series with anomalies marked.
"use strict";

(async () => {
  await IP.init();
  const el = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  IP.rangeSelect(el("range"), params.get("range") || "1h");
  let current = params.get("id");
  let poller = null;
  let searchTimer = null;
  let searchSeq = 0;

  async function search() {
    const prefix = el("search").value.trim();
    const seq = ++searchSeq;
    if (!prefix) {
      el("results").innerHTML = "";
      el("search-note").textContent = "";
      return;
    }
    const d = await IP.getJSON(`/api/devices?prefix=${encodeURIComponent(prefix)}&limit=20`);
    if (seq !== searchSeq) return; // a newer search is under way
    el("results").innerHTML = d.devices.map((id) =>
      `<li><button type="button" data-id="${IP.esc(id)}">${IP.esc(id)}</button></li>`).join("");
    el("search-note").textContent = d.devices.length === 0 ? "no device starts with that" :
      d.more ? `first ${d.devices.length} matches; type more to narrow` : "";
  }

  function show(id) {
    current = id;
    el("results").innerHTML = "";
    el("search-note").textContent = "";
    history.replaceState(null, "", `?id=${encodeURIComponent(id)}&range=${el("range").value}`);
    IP.dropCharts();
    el("series").innerHTML = "";
    el("pick").classList.add("hidden");
    el("device-view").classList.remove("hidden");
    el("device-title").textContent = id;
    if (poller) poller.now(); else poller = IP.poll(load);
  }

  async function load() {
    if (!current) return;
    const q = new URLSearchParams({ id: current, range: el("range").value });
    const d = await IP.getJSON(`/api/device?${q}`);
    if (d.device_id !== current) return;
    el("empty").classList.toggle("hidden", !d.empty);
    for (const [type, cols] of Object.entries(d.series)) {
      let chartEl = document.getElementById(`chart-device-${type}`);
      if (!chartEl) {
        const panel = document.createElement("div");
        panel.className = "panel";
        panel.innerHTML = `<h2>${IP.esc(type)} (${d.window} windows, step ${d.step_s}s); anomalies in red</h2>` +
          `<div class="chart device-chart" id="chart-device-${IP.esc(type)}"></div>`;
        el("series").appendChild(panel);
        chartEl = panel.querySelector(".chart");
      }
      IP.chart(chartEl, `device:${type}`, cols, [
        { key: "mean", label: "mean", width: 2 },
        { key: "min", label: "min", stroke: "#8aa6d6", dash: [4, 4] },
        { key: "max", label: "max", stroke: "#d68a8a", dash: [4, 4] },
        { key: "anomaly", label: "anomaly", stroke: "#c8283b", pointsOnly: true,
          points: { show: true, size: 9, fill: "#c8283b", stroke: "#c8283b" } },
      ]);
      chartEl.dataset.anomalies = String(cols.anomaly.filter((v) => v !== null).length);
    }
    el("anomalies").querySelector("tbody").innerHTML = d.anomalies.map((a) =>
      `<tr><td>${IP.time(a.ts)}</td><td><span class="sev ${IP.esc(a.severity)}">${IP.esc(a.severity)}</span></td>` +
      `<td>${IP.esc(a.state || "-")}</td><td>${IP.esc(a.detector)}</td><td>${IP.esc(a.sensor_type)}</td>` +
      `<td class="num">${IP.num(a.value)}</td><td class="num">${IP.num(a.score)}</td>` +
      `<td>${IP.esc(a.message)}</td></tr>`).join("") ||
      `<tr><td colspan="8" class="muted">none in this range</td></tr>`;
  }

  el("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search().catch((e) => IP.setStatus(`error: ${e.message}`, true)), 200);
  });
  el("results").addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-id]");
    if (btn) show(btn.dataset.id);
  });
  el("range").addEventListener("change", () => { if (current) show(current); });
  if (current) show(current); else IP.setStatus("pick a device", false);
})();
