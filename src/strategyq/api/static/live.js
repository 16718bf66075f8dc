// Draws every chart of the page from its JSON spec, and follows a running task:
// status events from the task's event stream update the badge, the stage and the
// timeline; the terminal one reloads the page, which then shows the result. The
// overview updates its figures in place: what is typed anywhere on it is kept.
(function () {
  "use strict";
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  function draw(root) {
    if (typeof Plotly === "undefined") return;
    (root || document).querySelectorAll("[data-plot]").forEach(function (div) {
      var spec = JSON.parse(document.getElementById(div.dataset.plot).textContent);
      if (dark) {
        // Charts follow the page's dark colours (the system setting).
        spec.layout.paper_bgcolor = "rgba(0,0,0,0)";
        spec.layout.plot_bgcolor = "rgba(0,0,0,0)";
        spec.layout.font = Object.assign({}, spec.layout.font, {color: "#d0d7de"});
      }
      Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
      if (div.dataset.clickOpens) {
        // A heatmap cell carries the URL of its combination's page.
        div.on("plotly_click", function (event) {
          var url = event.points.length ? event.points[0].customdata : null;
          if (url) window.location.href = url;
        });
      }
    });
  }
  function follow() {
    var line = document.querySelector("[data-follow]");
    if (!line || typeof EventSource === "undefined") return;
    var status = document.getElementById("status");
    var stage = document.getElementById("stage");
    var timeline = document.getElementById("timeline");
    var terminal = {completed: true, error: true, cancelled: true};
    var source = new EventSource(line.dataset.follow);
    source.addEventListener("status", function (message) {
      var event = JSON.parse(message.data);
      status.textContent = event.status;
      status.className = "badge " + event.status;
      stage.textContent = event.stage || "";
      var bar = document.getElementById("sweep-bar");
      if (bar && event.progress && event.progress.total) {
        bar.max = event.progress.total;
        bar.value = event.progress.done;
        var share = event.progress.done / event.progress.total;
        document.getElementById("sweep-count").textContent = event.progress.done + " / " +
          event.progress.total + " combinations (" + (100 * share).toFixed(1) + " %)";
        var eta = document.getElementById("sweep-eta");
        var started = Date.parse(eta.dataset.started);
        if (share > 0 && !isNaN(started)) {
          var left = (Date.now() - started) / share * (1 - share) / 1000;
          eta.textContent = "about " + (left < 60 ? Math.round(left) + " s" :
            Math.round(left / 60) + " min") + " left";
        }
      }
      var item = document.createElement("li");
      item.className = "live";
      item.textContent = event.status + (event.stage ? " · " + event.stage : "") + " " + (event.updated_at || "");
      timeline.appendChild(item);
      if (terminal[event.status]) {
        source.close();
        window.location.reload();
      }
    });
    source.addEventListener("timeout", function () { source.close(); window.location.reload(); });
  }
  function confirmations() {
    // Forms that delete ask first (a handler here, not inline: the CSP allows no inline script).
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  }
  function live() {
    // Fetch the same page, rendered by the server, and swap in its figures, tables and
    // charts: the page itself is not reloaded, so a half-typed search is never lost.
    var region = document.querySelector("[data-live]");
    if (!region || typeof fetch === "undefined" || typeof DOMParser === "undefined") return;
    var every = parseInt(region.dataset.live, 10) || 5000;
    var busy = false;
    function update() {
      if (busy || document.hidden) return;
      busy = true;
      fetch(window.location.pathname + "?refresh=0", {credentials: "same-origin"})
        .then(function (reply) { return reply.ok ? reply.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById(region.id);
          if (!fresh) return;
          region.replaceChildren.apply(region, Array.prototype.map.call(
            fresh.childNodes, function (node) { return document.importNode(node, true); }));
          region.dataset.updated = String(Date.now());
          draw(region);
        })
        .catch(function () { /* the next tick tries again */ })
        .then(function () { busy = false; });
    }
    window.setInterval(update, every);
  }
  confirmations();
  draw();
  follow();
  live();
})();
