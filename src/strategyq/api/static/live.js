// Draws every chart of the page from its JSON spec, and follows a running task:
// status events from the task's event stream update the badge, the stage and the
// timeline; the terminal one reloads the page, which then shows the result. The
// overview updates its figures in place when the queue-wide stream reports a change:
// what is typed anywhere on it is kept. A backtest's price chart has a ticker picker.
(function () {
  "use strict";
  // Plotly's cartesian bundle is 1.5 MB of script: a page loads it only when it has a chart
  // to draw, and then once (the offline HTML report embeds it, so it is there already).
  var plotlyWaiting = null;
  function withPlotly(then) {
    if (typeof Plotly !== "undefined") { then(); return; }
    if (!document.querySelector("[data-plot]")) return;
    if (plotlyWaiting) { plotlyWaiting.push(then); return; }
    plotlyWaiting = [then];
    var script = document.createElement("script");
    script.src = "/static/plotly.min.js";
    script.onload = function () {
      var waiting = plotlyWaiting;
      plotlyWaiting = null;
      waiting.forEach(function (fn) { fn(); });
    };
    document.head.appendChild(script);
  }
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  function plot(div, spec) {
    if (dark) {
      // Charts follow the page's dark colours (the system setting).
      spec.layout.paper_bgcolor = "rgba(0,0,0,0)";
      spec.layout.plot_bgcolor = "rgba(0,0,0,0)";
      spec.layout.font = Object.assign({}, spec.layout.font, {color: "#d0d7de"});
    }
    return Plotly.newPlot(div, spec.data, spec.layout, {responsive: true, displaylogo: false});
  }
  function draw(root) {
    if (typeof Plotly === "undefined") return;
    (root || document).querySelectorAll("[data-plot]").forEach(function (div) {
      plot(div, JSON.parse(document.getElementById(div.dataset.plot).textContent));
      if (div.dataset.clickOpens) {
        // A heatmap cell carries the URL of its combination's page.
        div.on("plotly_click", function (event) {
          var url = event.points.length ? event.points[0].customdata : null;
          if (url) window.location.href = url;
        });
      }
    });
  }
  function prices() {
    // One price chart at a time, for the ticker picked (every traded ticker is listed):
    // its figure is in the page (the HTML report holds them all) or fetched from the server.
    var select = document.getElementById("price-select");
    var chart = document.getElementById("price-chart");
    if (!select || !chart || typeof Plotly === "undefined") return;
    var search = document.getElementById("price-search");
    var count = document.getElementById("price-count");
    var embedded = {};
    document.querySelectorAll("script.price-data").forEach(function (node) {
      embedded[node.dataset.ticker] = node;
    });
    function show(ticker) {
      if (chart.dataset.ticker === ticker) return;
      chart.dataset.ticker = ticker;
      chart.dataset.loaded = "";
      if (embedded[ticker]) {
        plot(chart, JSON.parse(embedded[ticker].textContent));
        chart.dataset.loaded = ticker;
        return;
      }
      if (!select.dataset.url || typeof fetch === "undefined") return;
      fetch(select.dataset.url + "?ticker=" + encodeURIComponent(ticker), {credentials: "same-origin"})
        .then(function (reply) { return reply.ok ? reply.json() : null; })
        .then(function (spec) {
          if (!spec || chart.dataset.ticker !== ticker) return;
          plot(chart, spec);
          chart.dataset.loaded = ticker;
        });
    }
    chart.dataset.loaded = chart.dataset.ticker || "";
    select.addEventListener("change", function () { show(select.value); });
    search.addEventListener("input", function () {
      var needle = search.value.trim().toUpperCase();
      var first = null, exact = null, shown = 0;
      Array.prototype.forEach.call(select.options, function (option) {
        var match = !needle || option.value.toUpperCase().indexOf(needle) >= 0;
        option.hidden = !match;
        option.disabled = !match;
        if (!match) return;
        shown += 1;
        if (first === null) first = option;
        if (option.value.toUpperCase() === needle) exact = option;
      });
      count.textContent = needle ? shown + (shown === 1 ? " match" : " matches") : "";
      var pick = exact || ((select.selectedOptions[0] || {}).disabled ? first : null);
      if (pick) {
        select.value = pick.value;
        show(pick.value);
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
    // The queue-wide event stream says when to: each batch of task changes fetches the
    // page once. Without the stream (no EventSource, refused past the server's bound,
    // cut) the page polls every few seconds instead until the stream is back; workers'
    // heartbeats publish nothing, so a slow poll goes on beside the stream.
    var region = document.querySelector("[data-live]");
    if (!region || typeof fetch === "undefined" || typeof DOMParser === "undefined") return;
    var every = parseInt(region.dataset.live, 10) || 5000;
    var busy = false, again = false, timer = null, pending = null;
    function update() {
      if (document.hidden) return;
      if (busy) { again = true; return; }
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
          withPlotly(function () { draw(region); });
        })
        .catch(function () { /* the next event or tick tries again */ })
        .then(function () {
          busy = false;
          if (again) { again = false; update(); }
        });
    }
    function poll(ms) {
      if (timer) window.clearInterval(timer);
      timer = window.setInterval(update, ms);
    }
    function soon() {
      // A burst of changes (a sweep's chunks) fetches the page once.
      if (pending) return;
      pending = window.setTimeout(function () { pending = null; update(); }, 250);
    }
    document.addEventListener("visibilitychange", function () { if (!document.hidden) update(); });
    region.dataset.mode = "poll";
    poll(every);
    var stream = region.dataset.stream;
    if (!stream || typeof EventSource === "undefined") return;
    function open() {
      var source = new EventSource(stream);
      source.addEventListener("ready", function () {
        region.dataset.mode = "stream";
        poll(Math.max(every * 6, 30000));
        update();
      });
      source.addEventListener("changes", function () {
        region.dataset.events = String((parseInt(region.dataset.events, 10) || 0) + 1);
        soon();
      });
      source.addEventListener("timeout", function () { source.close(); open(); });
      source.addEventListener("error", function () {
        region.dataset.mode = "poll";
        poll(every);
        if (source.readyState === EventSource.CLOSED) {
          // Refused (say 503: the server follows its most already): try again later.
          window.setTimeout(open, 30000);
        }
      });
    }
    open();
  }
  confirmations();
  withPlotly(function () { draw(); prices(); });
  follow();
  live();
})();
