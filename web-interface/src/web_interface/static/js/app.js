/* trading-bot dashboard: charts and live updates. Talks only to this web app (never the gateway). */
"use strict";

const TB = (() => {
  const won = new Intl.NumberFormat("ko-KR", { style: "currency", currency: "KRW", maximumFractionDigits: 0 });
  const plain = new Intl.NumberFormat("ko-KR", { maximumFractionDigits: 0 });
  const when = new Intl.DateTimeFormat("ko-KR", {
    timeZone: "Asia/Seoul", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false,
  });
  const palette = ["#2563eb", "#9333ea", "#0d9488", "#ea580c", "#db2777", "#65a30d", "#0891b2", "#a16207"];

  const krw = (value) => (value === null || value === undefined ? "–" : won.format(value));
  const label = (iso) => { const d = new Date(iso); return isNaN(d) ? iso : when.format(d); };
  const json = (id) => { const el = document.getElementById(id); return el ? JSON.parse(el.textContent) : null; };

  function setState(text, state) {
    const el = document.getElementById("live-state");
    if (el) { el.textContent = text; el.dataset.state = state; }
  }

  /* One EventSource on /events; the server ends each stream after a while and the browser reconnects. */
  function live(query, handlers) {
    const source = new EventSource("/events?" + new URLSearchParams(query).toString());
    source.addEventListener("open", () => setState("live", "live"));
    source.addEventListener("error", () => setState("reconnecting…", "problem"));
    source.addEventListener("expired", () => { source.close(); location.href = "/login?notice=expired&next=" + encodeURIComponent(location.pathname); });
    source.addEventListener("problem", (e) => setState(JSON.parse(e.data).message, "problem"));
    for (const [name, handler] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => { handler(JSON.parse(e.data)); if (name !== "done") setState("live · updated " + new Date().toLocaleTimeString("en-GB", { timeZone: "Asia/Seoul" }), "live"); });
    }
    window.addEventListener("beforeunload", () => source.close());
    return source;
  }

  function swap(html) {
    for (const [id, content] of Object.entries(html || {})) {
      const el = document.getElementById(id);
      if (el) el.innerHTML = content;
    }
  }

  function chart(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas || typeof Chart === "undefined") return null;
    return new Chart(canvas, config);
  }

  const krwAxis = { ticks: { callback: (v) => won.format(v) } };

  function dashboard() {
    const data = json("charts-data");
    const equity = chart("equity-chart", {
      type: "line",
      data: {
        labels: data.labels.map(label),
        datasets: [
          { label: "Equity", data: data.equity, borderColor: palette[0], backgroundColor: palette[0], pointRadius: 0, tension: 0.2 },
          { label: "Buy & hold", data: data.benchmark, borderColor: "#94a3b8", backgroundColor: "#94a3b8", borderDash: [6, 4], pointRadius: 0, tension: 0.2, spanGaps: true },
        ],
      },
      options: {
        animation: false, maintainAspectRatio: false, interaction: { mode: "index", intersect: false },
        scales: { y: krwAxis, x: { ticks: { maxTicksLimit: 6 } } },
        plugins: { tooltip: { callbacks: { label: (c) => c.dataset.label + ": " + krw(c.parsed.y) } } },
      },
    });
    const drawdown = chart("drawdown-chart", {
      type: "line",
      data: { labels: data.labels.map(label), datasets: [{ label: "Drawdown %", data: data.drawdown, borderColor: "#2563eb", backgroundColor: "rgba(37,99,235,0.15)", fill: true, pointRadius: 0 }] },
      options: {
        animation: false, maintainAspectRatio: false,
        scales: { y: { max: 0, ticks: { callback: (v) => v + "%" } }, x: { ticks: { maxTicksLimit: 6 } } },
        plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => c.parsed.y.toFixed(2) + "%" } } },
      },
    });
    live({ stream: "dashboard" }, {
      dashboard: (update) => {
        swap(update.html);
        const c = update.charts;
        if (equity) {
          equity.data.labels = c.labels.map(label);
          equity.data.datasets[0].data = c.equity;
          equity.data.datasets[1].data = c.benchmark;
          equity.update();
        }
        if (drawdown) {
          drawdown.data.labels = c.labels.map(label);
          drawdown.data.datasets[0].data = c.drawdown;
          drawdown.update();
        }
        const symbols = document.getElementById("benchmark-symbols");
        if (symbols && c.benchmark_symbols.length) symbols.textContent = c.benchmark_symbols.join(", ");
      },
    });
  }

  /* One dataset per seed: runs with different seeds are separate curves. */
  function bySeed(steps, seeds, values) {
    const series = new Map();
    steps.forEach((step, i) => {
      if (values[i] === null || values[i] === undefined) return;
      if (!series.has(seeds[i])) series.set(seeds[i], []);
      series.get(seeds[i]).push({ x: step, y: values[i] });
    });
    return [...series.entries()].map(([seed, points], k) => ({
      label: "seed " + seed, data: points, borderColor: palette[k % palette.length], backgroundColor: palette[k % palette.length], pointRadius: 2, tension: 0.2,
    }));
  }

  function curvesConfig(datasets, yLabel) {
    return {
      type: "line", data: { datasets },
      options: { animation: false, maintainAspectRatio: false, parsing: false,
        scales: { x: { type: "linear", title: { display: true, text: "steps" } }, y: { title: { display: true, text: yLabel } } } },
    };
  }

  function job() {
    const panel = document.getElementById("job-progress");
    const curves = json("curves-data");
    const reward = chart("reward-chart", curvesConfig(bySeed(curves.steps, curves.seed, curves.reward), "reward"));
    const val = chart("val-chart", curvesConfig(bySeed(curves.val_steps, curves.val_seed, curves.val_sharpe), "Sharpe"));
    if (panel.dataset.finished === "true") return;
    const redraw = (c) => {
      if (reward) { reward.data.datasets = bySeed(c.steps, c.seed, c.reward); reward.update(); }
      if (val) { val.data.datasets = bySeed(c.val_steps, c.val_seed, c.val_sharpe); val.update(); }
    };
    live({ stream: "job", job: panel.dataset.job }, {
      job: (update) => { swap(update.html); redraw(update.curves); },
      done: (update) => { swap(update.html); redraw(update.curves); setState("finished", "done"); setTimeout(() => location.reload(), 800); },
    });
  }

  function logs() {
    const table = document.getElementById("log-table");
    const body = table.querySelector("tbody");
    const pause = document.getElementById("log-pause");
    const query = { stream: "logs", after: table.dataset.after };
    if (table.dataset.level) query.level = table.dataset.level;
    if (table.dataset.service) query.service = table.dataset.service;
    const source = live(query, {
      logs: (update) => {
        if (pause.checked) return;
        const rows = document.createElement("tbody");
        rows.innerHTML = update.rows;
        [...rows.children].forEach((row) => body.prepend(row));
        while (body.children.length > 500) body.lastElementChild.remove();
      },
    });
    return source;
  }

  function trainingForm() {
    const button = document.getElementById("quick-preset");
    if (!button) return;
    button.addEventListener("click", () => {
      const values = JSON.parse(button.dataset.values);
      for (const [name, value] of Object.entries(values)) {
        const input = document.querySelector(`[name="${name}"]`);
        if (input) input.value = value;
      }
      document.querySelector("details")?.setAttribute("open", "");
    });
  }

  function init() {
    document.querySelectorAll("form[data-confirm]").forEach((form) => {
      form.addEventListener("submit", (e) => { if (!confirm(form.dataset.confirm)) e.preventDefault(); });
    });
    /* Amount fields read as ₩-free Korean grouping: 10000000 → 10,000,000 (the server accepts both). */
    document.querySelectorAll("input.krw-input").forEach((input) => {
      input.addEventListener("blur", () => {
        const digits = input.value.replace(/[^0-9]/g, "");
        if (digits) input.value = plain.format(Number(digits));
      });
    });
  }

  document.addEventListener("DOMContentLoaded", init);
  return { krw, dashboard, job, logs, trainingForm };
})();
