// The console's few behaviours: charts drawn from their data attributes with uPlot, and copy
// buttons. Run on first load and again on every piece of page htmx swaps in.
(function () {
  "use strict";

  function drawCharts(root) {
    if (typeof uPlot === "undefined") return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      if (el.dataset.drawn) return;
      el.dataset.drawn = "1";
      var data = JSON.parse(el.dataset.chart);
      var xs = data.labels.map(function (_, i) { return i; });
      var ys = data.values.map(Number);
      var width = Math.max(260, Math.min(el.clientWidth || 560, window.innerWidth - 40));
      el.plot = new uPlot({
        width: width,
        height: 200,
        legend: { show: false },
        cursor: { drag: { x: false, y: false } },
        // Money from $0; half a step of room at each end so the edge bars are whole.
        scales: {
          x: { time: false, range: function (u, min, max) { return [min - 0.5, max + 0.5]; } },
          y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } },
        },
        axes: [
          { incrs: [1], space: 50,
            values: function (u, ticks) { return ticks.map(function (t) { return short(data.labels[t]); }); } },
          { values: function (u, ticks) { return ticks.map(function (t) { return "$" + (+t.toPrecision(3)); }); }, size: 64 },
        ],
        series: [
          {},
          { label: data.unit, stroke: "#2656c9", fill: "rgba(38, 86, 201, 0.35)",
            paths: uPlot.paths.bars({ size: [0.7, 40] }), points: { show: false } },
        ],
      }, [xs, ys], el);
    });
  }

  function short(label) {
    if (label === undefined) return "";
    label = String(label);
    if (/^\d{4}-\d\d-\d\dT\d\d$/.test(label)) return label.slice(11) + "h";
    if (/^\d{4}-\d\d-\d\d$/.test(label)) return label.slice(5);
    return label.length > 14 ? label.slice(0, 13) + "…" : label;
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var text = document.querySelector(button.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(function () { button.textContent = "Copied"; },
      function () { button.textContent = "Select and copy"; });
  });

  // A form's refusal (a 4xx with the page and its message) is shown like any answer: htmx
  // would otherwise drop it and the operator would see nothing happen.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status >= 400 && status < 500 && event.detail.xhr.responseText) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });

  document.addEventListener("DOMContentLoaded", function () { drawCharts(document); });
  document.addEventListener("htmx:load", function (event) { drawCharts(event.target); });
})();
