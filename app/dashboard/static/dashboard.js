// Draws the dashboard's charts from the figures the server put in the page (#figures).
// No network requests: everything shown is already in the page's JSON.
(function () {
  "use strict";
  var source = document.getElementById("figures");
  if (!source || typeof Chart === "undefined") { return; }
  var figures = JSON.parse(source.textContent);
  var palette = ["#0969da", "#1a7f37", "#9a6700", "#8250df", "#cf222e", "#bf3989", "#0550ae", "#116329"];
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  function canvas(id) { return document.getElementById(id); }

  // Spend per day: one bar series per repository, its daily budget as a dashed line.
  var spend = figures.spend;
  if (canvas("spend-chart")) {
    var datasets = [];
    spend.repositories.forEach(function (repo, n) {
      var colour = palette[n % palette.length];
      datasets.push({ type: "bar", label: repo.repository, data: repo.per_day, backgroundColor: colour });
      if (repo.budget && repo.budget.daily_usd !== null) {
        datasets.push({
          type: "line", label: repo.repository + " daily budget",
          data: spend.days.map(function () { return repo.budget.daily_usd; }),
          borderColor: colour, borderDash: [6, 4], pointRadius: 0, fill: false
        });
      }
    });
    new Chart(canvas("spend-chart"), {
      data: { labels: spend.days, datasets: datasets },
      options: { scales: { y: { beginAtZero: true, title: { display: true, text: "USD" } } } }
    });
  }

  // Outcomes: one stacked bar per (tier, decision), one colour per outcome.
  var rows = figures.outcomes.rows;
  if (canvas("outcomes-chart")) {
    var kinds = [];
    rows.forEach(function (r) { Object.keys(r.outcomes).forEach(function (k) { if (kinds.indexOf(k) < 0) { kinds.push(k); } }); });
    new Chart(canvas("outcomes-chart"), {
      type: "bar",
      data: {
        labels: rows.map(function (r) { return r.tier + " / " + r.decision; }),
        datasets: kinds.map(function (k, n) {
          return { label: k, data: rows.map(function (r) { return r.outcomes[k] || 0; }), backgroundColor: palette[n % palette.length] };
        })
      },
      options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } } }
    });
  }

  // Calibration: the bad-outcome rate seen against the rate promised, with the diagonal.
  var buckets = figures.calibration.buckets.filter(function (b) { return b.settled > 0; });
  if (canvas("calibration-chart")) {
    new Chart(canvas("calibration-chart"), {
      type: "scatter",
      data: {
        datasets: [
          { label: "seen", data: buckets.map(function (b) { return { x: b.expected_bad_rate, y: b.bad_rate }; }),
            backgroundColor: "#cf222e", pointRadius: 6 },
          { type: "line", label: "perfect calibration", data: [{ x: 0, y: 0 }, { x: 1, y: 1 }],
            borderColor: "#59636e", borderDash: [4, 4], pointRadius: 0 }
        ]
      },
      options: { scales: {
        x: { min: 0, max: 1, title: { display: true, text: "bad-outcome rate promised (1 - confidence)" } },
        y: { min: 0, max: 1, title: { display: true, text: "bad-outcome rate seen" } }
      } }
    });
  }
  document.body.setAttribute("data-charts", String(Chart.instances ? Object.keys(Chart.instances).length : 0));
}());
