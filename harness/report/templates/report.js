// The gallery: filter and page the rows embedded as JSON. Text is set with textContent only,
// never innerHTML, so model output stays text whatever it contains.
(function () {
  "use strict";
  var PAGE = 50;
  var holder = document.getElementById("gallery-data");
  var table = document.getElementById("gallery");
  if (!holder || !table) { document.body.dataset.ready = "1"; return; }
  var data = JSON.parse(holder.textContent);
  var col = {};
  data.columns.forEach(function (c, i) { col[c] = i; });
  var body = document.getElementById("gallery-body");
  var info = document.getElementById("gallery-info");
  var onlyFailures = document.getElementById("only-failures");
  var modelSel = document.getElementById("gallery-model");
  var suiteSel = document.getElementById("gallery-suite");
  var params = new URLSearchParams(window.location.search);
  var state = {
    failures: window.location.hash === "#failures" || params.get("filter") === "failures",
    model: "", suite: "", page: 0
  };

  function options(select, key) {
    var seen = {};
    data.rows.forEach(function (r) { seen[r[col[key]]] = true; });
    Object.keys(seen).sort().forEach(function (v) {
      var o = document.createElement("option");
      o.value = v; o.textContent = v; select.appendChild(o);
    });
  }
  options(modelSel, "model");
  options(suiteSel, "suite");
  onlyFailures.checked = state.failures;

  function td(text, cls) {
    var c = document.createElement("td");
    if (cls) { c.className = cls; }
    c.textContent = text;
    return c;
  }

  function matching() {
    return data.rows.filter(function (r) {
      return (!state.failures || r[col.fail] === 1) &&
        (!state.model || r[col.model] === state.model) &&
        (!state.suite || r[col.suite] === state.suite);
    });
  }

  function draw() {
    var rows = matching();
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    var slice = rows.slice(state.page * PAGE, (state.page + 1) * PAGE);
    while (body.firstChild) { body.removeChild(body.firstChild); }
    slice.forEach(function (r) {
      var tr = document.createElement("tr");
      tr.className = r[col.fail] ? "fail" : "pass";
      var thumb = document.createElement("td");
      if (r[col.thumb] >= 0) {
        var img = document.createElement("img");
        img.src = data.thumbs[r[col.thumb]];
        img.alt = r[col.sample_id];
        img.className = "thumb";
        thumb.appendChild(img);
      }
      tr.appendChild(thumb);
      tr.appendChild(td(r[col.model] + " · " + r[col.suite] + " · " + r[col.sample_id] +
        (r[col.repeat] ? " #" + r[col.repeat] : "") + (r[col.category] ? " (" + r[col.category] + ")" : ""), "l id"));
      tr.appendChild(td(r[col.prompt], "l"));
      tr.appendChild(td(r[col.answers].join(" | "), "l"));
      tr.appendChild(td(r[col.status] === "ok" ? r[col.output] : r[col.status] + ": " + r[col.error], "l out"));
      tr.appendChild(td(r[col.score] === null ? "–" : r[col.score].toFixed(2), "score"));
      body.appendChild(tr);
    });
    info.textContent = rows.length === 0 ? "No rows match." :
      "Rows " + (state.page * PAGE + 1) + "–" + (state.page * PAGE + slice.length) + " of " + rows.length +
      " matching; page " + (state.page + 1) + " of " + pages + ".";
    table.dataset.filter = state.failures ? "failures" : "all";
    table.dataset.matching = String(rows.length);
    table.dataset.shown = String(slice.length);
    table.dataset.page = String(state.page + 1);
    document.getElementById("gallery-prev").disabled = state.page === 0;
    document.getElementById("gallery-next").disabled = state.page >= pages - 1;
  }

  onlyFailures.addEventListener("change", function () {
    state.failures = onlyFailures.checked; state.page = 0;
    history.replaceState(null, "", state.failures ? "#failures" : "#gallery-section");
    draw();
  });
  modelSel.addEventListener("change", function () { state.model = modelSel.value; state.page = 0; draw(); });
  suiteSel.addEventListener("change", function () { state.suite = suiteSel.value; state.page = 0; draw(); });
  document.getElementById("gallery-prev").addEventListener("click", function () { state.page -= 1; draw(); });
  document.getElementById("gallery-next").addEventListener("click", function () { state.page += 1; draw(); });
  draw();
  document.body.dataset.ready = "1";
})();
