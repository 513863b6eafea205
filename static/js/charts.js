// Draw the Plotly figures that the server put in json_script elements (no inline scripts).
(function () {
  "use strict";
  function draw() {
    var drawing = [];
    document.querySelectorAll("[data-plotly-figure]").forEach(function (element) {
      var source = document.getElementById(element.getAttribute("data-plotly-figure"));
      if (!source || !window.Plotly) {
        return;
      }
      var figure = JSON.parse(source.textContent);
      // Axes write their numbers as every page does, grouped by three: plotly.js groups only
      // from five digits unless told (3,000, not 3000). A figure's own axis settings win.
      var template = (figure.layout.template = figure.layout.template || {});
      var defaults = (template.layout = template.layout || {});
      ["xaxis", "yaxis"].forEach(function (axis) {
        defaults[axis] = Object.assign({ separatethousands: true }, defaults[axis] || {});
      });
      drawing.push(
        window.Plotly.newPlot(element, figure.data, figure.layout, {
          responsive: true,
          displaylogo: false,
          displayModeBar: false,
          // Registered by plotly-locale-zh-tw.js on Chinese pages; English elsewhere.
          locale: /^zh/i.test(document.documentElement.lang) ? "zh-TW" : "en",
        })
      );
    });
    // Tells the browser tests (and anyone waiting) that every chart of the page is drawn.
    Promise.allSettled(drawing).then(function () {
      document.documentElement.setAttribute("data-charts-drawn", "");
    });
  }
  // The usage form's "From" day only matters for a custom range: hidden otherwise.
  function customRange() {
    var range = document.querySelector("form select[name=range]");
    var start = document.querySelector("form input[name=start]");
    if (!range || !start) {
      return;
    }
    var box = start.closest(".col-auto") || start.parentElement;
    function sync() {
      box.hidden = range.value !== "custom";
    }
    range.addEventListener("change", sync);
    sync();
  }
  function init() {
    draw();
    customRange();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
