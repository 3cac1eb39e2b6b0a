// Charts of the dashboard: uPlot, fed by the small JSON routes named in data-* attributes,
// redrawn every 10 s. Nothing else here: htmx keeps the rest of the page fresh.
"use strict";
(function () {
  async function json(url) {
    const r = await fetch(url, { credentials: "same-origin" });
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  }
  function draw(el, data, series) {
    if (el._plot) el._plot.destroy();
    const scales = { x: { time: true } };
    if (el.dataset.max) scales.y = { range: [0, Number(el.dataset.max)] };
    const opts = { width: Math.max(320, el.clientWidth || 640), height: 220, series: series, scales: scales };
    el._plot = new uPlot(opts, data, el);
  }
  async function series(el) {
    const d = await json(el.dataset.series);
    draw(el, [d.at, d[el.dataset.field]], [{}, { label: el.dataset.label, stroke: "#2f81f7", width: 2 }]);
    el.dataset.points = String(d.at.length);
  }
  const colors = ["#2f81f7", "#3fb950", "#bf8700", "#cf222e", "#8250df", "#1b7c83", "#6e7781"];
  async function usage(el) {
    const d = await json(el.dataset.usage);
    const names = Object.keys(d.projects);
    const data = [d.days].concat(names.map((n) => d.projects[n]));
    draw(el, data, [{}].concat(names.map((n, i) => ({ label: n, stroke: colors[i % colors.length], width: 2 }))));
  }
  function refresh() {
    document.querySelectorAll("[data-series]").forEach((el) => series(el).catch(console.error));
    document.querySelectorAll("[data-usage]").forEach((el) => usage(el).catch(console.error));
  }
  document.addEventListener("DOMContentLoaded", function () {
    refresh();
    setInterval(refresh, 10000);
  });
})();
