// Shared helpers of the dashboard pages: fetching, polling, charts, formatting.
"use strict";

const IP = {
  config: null,
  charts: {}, // name -> uPlot instance (the tests read their data from here)
  palette: ["#2f6fdd", "#1d8a4c", "#c98a00", "#8a3ffc", "#c8283b", "#00857c"],

  async getJSON(url) {
    const resp = await fetch(url, { headers: { Accept: "application/json" } });
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      const detail = typeof body.detail === "string" ? body.detail : resp.statusText;
      throw new Error(`${resp.status}: ${detail}`);
    }
    return resp.json();
  },

  async init() {
    for (const a of document.querySelectorAll("header nav a")) {
      if (a.getAttribute("href") === location.pathname) a.classList.add("active");
    }
    this.config = await this.getJSON("/api/config");
    return this.config;
  },

  setStatus(text, isError) {
    const el = document.getElementById("status");
    el.textContent = text;
    el.classList.toggle("error", Boolean(isError));
  },

  // Run `fn` now and every refresh_s; `poller.now()` runs it at once (filters changed).
  poll(fn) {
    let timer = null;
    let running = false;
    const run = async () => {
      clearTimeout(timer);
      if (running) return;
      running = true;
      try {
        await fn();
        this.setStatus(`updated ${new Date().toLocaleTimeString()}`, false);
      } catch (err) {
        this.setStatus(`error: ${err.message}`, true);
      } finally {
        running = false;
        timer = setTimeout(run, this.config.refresh_s * 1000);
      }
    };
    run();
    return { now: run };
  },

  rangeSelect(el, value) {
    el.innerHTML = this.config.ranges.map((r) => `<option>${r}</option>`).join("");
    el.value = value;
  },

  // Create or update a time chart. `cols.t` is epoch ms; `series` is [{key, label, ...}].
  chart(container, name, cols, series, opts = {}) {
    const data = [cols.t.map((t) => t / 1000), ...series.map((s) => cols[s.key])];
    const existing = this.charts[name];
    if (existing && existing.root.isConnected && existing.series.length === series.length + 1) {
      existing.setData(data);
      container.dataset.points = String(cols.t.length);
      return existing;
    }
    if (existing) {
      existing.observer.disconnect();
      existing.destroy();
    }
    container.innerHTML = "";
    const width = Math.max(300, container.clientWidth || 600);
    const u = new uPlot(
      {
        width,
        height: opts.height || 220,
        scales: { x: { time: true } },
        legend: { live: true },
        series: [
          {},
          ...series.map((s, i) => {
            const opt = {
              label: s.label,
              stroke: s.stroke || this.palette[i % this.palette.length],
              width: s.width ?? 1.5,
              spanGaps: true,
              points: s.points || { show: false },
            };
            if (s.dash) opt.dash = s.dash;
            if (s.pointsOnly) opt.paths = () => null;
            return opt;
          }),
        ],
        axes: [{}, { size: 60 }],
      },
      data,
      container,
    );
    // Follow the container's width (grid columns settle after the first draw, windows resize).
    u.observer = new ResizeObserver(() => requestAnimationFrame(() => {
      const w = container.clientWidth;
      if (container.isConnected && w > 0 && Math.abs(w - u.width) > 2) {
        u.setSize({ width: w, height: u.height });
      }
    }));
    u.observer.observe(container);
    this.charts[name] = u;
    container.dataset.points = String(cols.t.length);
    return u;
  },

  dropCharts() {
    for (const [name, u] of Object.entries(this.charts)) {
      u.observer.disconnect();
      u.destroy();
      delete this.charts[name];
    }
  },

  num(v, digits = 2) {
    if (v === null || v === undefined) return "–";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString();
    return Number(v).toFixed(digits).replace(/\.?0+$/, "") || "0";
  },

  time(ms) {
    return new Date(ms).toLocaleString();
  },

  esc(text) {
    const div = document.createElement("div");
    div.textContent = text === null || text === undefined ? "" : String(text);
    return div.innerHTML;
  },
};

window.IP = IP;
