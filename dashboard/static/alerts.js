// Live alert feed with filters; new rows are highlighted as they arrive.
"use strict";

(async () => {
  const cfg = await IP.init();
  const params = new URLSearchParams(location.search);
  const el = (id) => document.getElementById(id);
  IP.rangeSelect(el("range"), params.get("range") || "1h");
  const addOptions = (select, values) => {
    const have = new Set([...select.options].map((o) => o.value));
    for (const v of values) {
      if (!have.has(v)) select.add(new Option(v, v));
    }
  };
  addOptions(el("severity"), cfg.severities);
  addOptions(el("sensor_type"), cfg.sensor_types);
  for (const f of ["severity", "detector", "sensor_type", "device"]) {
    if (params.get(f)) {
      addOptions(el(f), [params.get(f)]);
      el(f).value = params.get(f);
    }
  }
  const seen = new Set();
  let first = true;

  const poller = IP.poll(async () => {
    const q = new URLSearchParams({ range: el("range").value, limit: "200" });
    for (const f of ["severity", "detector", "sensor_type", "device"]) {
      if (el(f).value.trim()) q.set(f, el(f).value.trim());
    }
    const d = await IP.getJSON(`/api/alerts?${q}`);
    addOptions(el("detector"), d.detectors);
    el("empty").classList.toggle("hidden", d.alerts.length > 0);
    el("feed-panel").classList.toggle("hidden", d.alerts.length === 0);
    el("count").textContent = `${d.alerts.length} shown (newest first)`;
    el("feed").querySelector("tbody").innerHTML = d.alerts.map((a) => {
      const isNew = !first && !seen.has(a.key);
      seen.add(a.key);
      const dev = encodeURIComponent(a.device_id);
      return `<tr class="${isNew ? "new" : ""}" data-key="${IP.esc(a.key)}">` +
        `<td>${IP.time(a.ts)}</td><td><span class="sev ${IP.esc(a.severity)}">${IP.esc(a.severity)}</span></td>` +
        `<td>${IP.esc(a.state || "-")}</td><td>${IP.esc(a.detector)}</td><td><a href="/device?id=${dev}">${IP.esc(a.device_id)}</a></td>` +
        `<td>${IP.esc(a.sensor_type)}</td><td>${IP.esc(a.site)}</td>` +
        `<td class="num">${IP.num(a.value)}</td><td class="num">${IP.num(a.score)}</td>` +
        `<td>${IP.esc(a.message)}</td></tr>`;
    }).join("");
    first = false;
  });
  for (const f of ["range", "severity", "detector", "sensor_type"]) {
    el(f).addEventListener("change", () => poller.now());
  }
  el("device").addEventListener("change", () => poller.now());
})();
