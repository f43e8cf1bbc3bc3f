// Fleet overview: throughput, devices reporting, alert counts, per-type mean/min/max.
"use strict";

(async () => {
  const cfg = await IP.init();
  const params = new URLSearchParams(location.search);
  const rangeEl = document.getElementById("range");
  IP.rangeSelect(rangeEl, params.get("range") || "1h");

  const poller = IP.poll(async () => {
    const d = await IP.getJSON(`/api/overview?range=${encodeURIComponent(rangeEl.value)}`);
    document.getElementById("empty").classList.toggle("hidden", !d.empty);
    document.getElementById("resolution").textContent =
      `step ${d.step_s}s, from ${d.window} windows (${d.source})`;
    const rates = d.readings_per_s.v;
    // The newest bucket is still filling; show the last complete one.
    const latest = rates.length > 1 ? rates[rates.length - 2] : rates[rates.length - 1];
    document.getElementById("rate").textContent = rates.length ? IP.num(latest, 1) : "–";
    document.getElementById("devices").textContent = d.devices_reporting.toLocaleString();
    document.getElementById("devices-sub").textContent = `last ${d.devices_recent_s / 60} min`;
    const al = d.alerts_last_hour;
    document.getElementById("alerts").textContent = al.total.toLocaleString();
    document.getElementById("alerts-sub").textContent =
      cfg.severities.map((s) => `${s} ${al.by_severity[s] || 0}`).join(" · ");

    IP.chart(document.getElementById("chart-rate"), "rate", d.readings_per_s,
      [{ key: "v", label: "readings/s" }]);

    const note = document.getElementById("types-error");
    note.textContent = d.types_error || "";
    note.classList.toggle("hidden", !d.types_error);
    const grid = document.getElementById("types");
    for (const [type, cols] of Object.entries(d.types)) {
      let el = document.getElementById(`chart-type-${type}`);
      if (!el) {
        const panel = document.createElement("div");
        panel.className = "panel";
        panel.innerHTML = `<h2>${IP.esc(type)}: mean / min / max</h2>` +
          `<div class="chart type-chart" id="chart-type-${IP.esc(type)}"></div>`;
        grid.appendChild(panel);
        el = panel.querySelector(".chart");
      }
      IP.chart(el, `type:${type}`, cols, [
        { key: "mean", label: "mean", width: 2 },
        { key: "min", label: "min", stroke: "#8aa6d6", dash: [4, 4] },
        { key: "max", label: "max", stroke: "#d68a8a", dash: [4, 4] },
      ]);
    }
  });
  rangeEl.addEventListener("change", () => {
    history.replaceState(null, "", `?range=${rangeEl.value}`);
    poller.now();
  });
})();
