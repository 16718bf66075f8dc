// Draws every chart of the page from its JSON spec, and follows a running task:
// status events from the task's event stream update the badge, the stage and the
// timeline; the terminal one reloads the page, which then shows the result.
(function () {
  "use strict";
  function draw() {
    if (typeof Plotly === "undefined") return;
    document.querySelectorAll("[data-plot]").forEach(function (div) {
      var spec = JSON.parse(document.getElementById(div.dataset.plot).textContent);
      Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
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
  confirmations();
  draw();
  follow();
})();
