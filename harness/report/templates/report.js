// Sortable tables, the gallery (filter, search, sort, page, enlarge) and deep links. Text is set
// with textContent only, never innerHTML, so model output stays text whatever it contains.
(function () {
  "use strict";

  // --- sortable tables: click a header; numbers sort by data-v, missing values last ---------
  function sortTable(table, th, dir) {
    var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
    var text = th.dataset.type === "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    function key(r) {
      var c = r.children[idx];
      if (!c) { return null; }
      var v = c.hasAttribute("data-v") ? c.getAttribute("data-v") : null;
      if (text) { return (v === null ? c.textContent : v).toLowerCase(); }
      var n = v === null || v === "" ? NaN : parseFloat(v);
      return isNaN(n) ? null : n;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null && y === null) { return 0; }
      if (x === null) { return 1; }
      if (y === null) { return -1; }
      return (x < y ? -1 : x > y ? 1 : 0) * dir;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(th.parentNode.children, function (h) { h.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", dir > 0 ? "ascending" : "descending");
    table.dataset.sortedBy = th.dataset.key || String(idx);
    table.dataset.sortDir = dir > 0 ? "asc" : "desc";
  }
  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (table) {
    var head = table.tHead && table.tHead.rows[0];
    if (!head) { return; }
    Array.prototype.forEach.call(head.cells, function (th) {
      var b = document.createElement("button");
      b.type = "button";
      b.className = "sort";
      var label = document.createElement("span");
      label.className = "label";
      while (th.firstChild && th.firstChild.nodeType === 3) { label.appendChild(th.firstChild); }
      b.appendChild(label);
      while (th.firstChild) { b.appendChild(th.firstChild); }
      th.appendChild(b);
      th.classList.add("sortable-h");
      b.title = "sort by this column";
      b.addEventListener("click", function () {
        // First click: best first (high rates, low times are unknown here, so text up, numbers down).
        var now = th.getAttribute("aria-sort");
        var dir = now === "descending" ? 1 : now === "ascending" ? -1 : (th.dataset.type === "text" ? 1 : -1);
        sortTable(table, th, dir);
      });
    });
  });

  // --- the gallery -----------------------------------------------------------------------
  var PAGE = 40;
  var holder = document.getElementById("gallery-data");
  var box = document.getElementById("gallery");
  if (!holder || !box) { document.body.dataset.ready = "1"; return; }
  var data = JSON.parse(holder.textContent);
  var col = {};
  data.columns.forEach(function (c, i) { col[c] = i; });
  var el = function (id) { return document.getElementById(id); };
  var ctl = { q: el("g-search"), model: el("g-model"), suite: el("g-suite"), category: el("g-category"),
              status: el("g-status"), sort: el("g-sort") };
  var info = el("g-info");
  var state = { q: "", model: "", suite: "", category: "", status: "", sort: "", page: 0 };
  var ROLE = { fixture: "random weights", reference: "reference canary" };

  function options(select, key) {
    var seen = {};
    data.rows.forEach(function (r) { seen[r[col[key]]] = true; });
    Object.keys(seen).filter(function (v) { return v !== ""; }).sort(function (a, b) {
      return a.localeCompare(b, undefined, { numeric: true });
    }).forEach(function (v) {
      var o = document.createElement("option");
      o.value = v; o.textContent = v + (key === "model" && ROLE[data.roles[v]] ? " (" + ROLE[data.roles[v]] + ")" : "");
      select.appendChild(o);
    });
  }
  options(ctl.model, "model");
  options(ctl.suite, "suite");
  options(ctl.category, "category");

  function readHash() {
    var h = decodeURIComponent(window.location.hash.replace(/^#/, ""));
    if (h === "failures") { return { status: "failures" }; }
    if (h.indexOf("=") < 0) { return null; }
    var out = {};
    h.split("&").forEach(function (kv) {
      var i = kv.indexOf("=");
      if (i > 0) { out[kv.slice(0, i)] = kv.slice(i + 1); }
    });
    return out;
  }
  function writeHash() {
    var parts = [];
    ["model", "suite", "category", "status", "q", "sort"].forEach(function (k) {
      if (state[k]) { parts.push(k + "=" + encodeURIComponent(state[k])); }
    });
    var h = parts.length === 1 && state.status === "failures" ? "#failures" : parts.length ? "#" + parts.join("&") : "#samples";
    if (window.location.hash !== h) { history.replaceState(null, "", h); }
  }
  function apply(h) {
    ["q", "model", "suite", "category", "status", "sort"].forEach(function (k) {
      state[k] = h && h[k] !== undefined ? h[k] : "";
      if (ctl[k]) { ctl[k].value = state[k]; }
      if (ctl[k] && ctl[k].value !== state[k] && ctl[k].tagName === "SELECT") {
        var o = document.createElement("option"); o.value = state[k]; o.textContent = state[k] + " (no rows)";
        ctl[k].appendChild(o); ctl[k].value = state[k];
      }
    });
    state.page = 0;
  }

  function haystack(r) {
    var conv = r[col.conversation].map(function (t) { return t.join(" "); }).join(" ");
    return (r[col.model] + " " + r[col.suite] + " " + r[col.sample_id] + " " + r[col.category] + " " + conv + " " +
            r[col.answers].join(" ") + " " + r[col.error]).toLowerCase();
  }
  var hay = data.rows.map(haystack);

  function matching() {
    var q = state.q.toLowerCase();
    var out = [];
    data.rows.forEach(function (r, i) {
      var s = r[col.status];
      if (state.status === "failures" ? !(s === "fail" || s === "error") : state.status && s !== state.status) { return; }
      if (state.model && r[col.model] !== state.model) { return; }
      if (state.suite && r[col.suite] !== state.suite) { return; }
      if (state.category && r[col.category] !== state.category) { return; }
      if (q && hay[i].indexOf(q) < 0) { return; }
      out.push(r);
    });
    if (state.sort === "score-asc" || state.sort === "score-desc") {
      var d = state.sort === "score-asc" ? 1 : -1;
      out.sort(function (a, b) {
        var x = a[col.score], y = b[col.score];
        if (x === null && y === null) { return 0; }
        if (x === null) { return 1; }
        if (y === null) { return -1; }
        return (x - y) * d;
      });
    } else if (state.sort === "model") {
      out.sort(function (a, b) {
        return (a[col.model] + "\u0000" + a[col.suite] + "\u0000" + a[col.sample_id]).localeCompare(
          b[col.model] + "\u0000" + b[col.suite] + "\u0000" + b[col.sample_id], undefined, { numeric: true });
      });
    }
    return out;
  }

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) { n.className = cls; }
    if (text !== undefined) { n.textContent = text; }
    return n;
  }

  var viewer = el("viewer");
  function enlarge(r, k) {
    var imgs = r[col.images].filter(function (i) { return i >= 0; });
    var big = el("viewer-img");
    big.src = data.images[imgs[k]];
    big.alt = "Image " + (k + 1) + " of " + imgs.length + " of sample " + r[col.sample_id] + " (" + r[col.suite] + ")";
    el("viewer-cap").textContent = r[col.suite] + " · " + r[col.sample_id] + " — image " + (k + 1) + " of " + imgs.length;
    var strip = el("viewer-strip");
    while (strip.firstChild) { strip.removeChild(strip.firstChild); }
    if (imgs.length > 1) {
      imgs.forEach(function (ix, j) {
        var t = node("img");
        t.src = data.images[ix]; t.alt = "image " + (j + 1); t.tabIndex = 0;
        t.addEventListener("click", function () { enlarge(r, j); });
        strip.appendChild(t);
      });
    }
    if (viewer && typeof viewer.showModal === "function" && !viewer.open) { viewer.showModal(); }
  }
  if (viewer) { viewer.addEventListener("click", function (e) { if (e.target === viewer) { viewer.close(); } }); }

  function card(r) {
    var s = r[col.status];
    var c = node("article", "sample " + s);
    c.dataset.status = s;
    var imgs = node("div", "imgs");
    r[col.images].forEach(function (ix, k) {
      if (ix < 0) { imgs.appendChild(node("span", "muted small", "image " + (k + 1) + " not embedded")); return; }
      var b = node("button");
      b.type = "button";
      b.title = "enlarge";
      var im = node("img", "thumb");
      im.src = data.images[ix];
      im.alt = "Image " + (k + 1) + " of " + r[col.images].length + " for sample " + r[col.sample_id];
      im.loading = "lazy";
      b.appendChild(im);
      b.addEventListener("click", function () {
        var real = r[col.images].slice(0, k + 1).filter(function (i) { return i >= 0; }).length - 1;
        enlarge(r, real);
      });
      imgs.appendChild(b);
    });
    c.appendChild(imgs);
    var mid = node("div", "body");
    var role = ROLE[data.roles[r[col.model]]];
    mid.appendChild(node("div", "meta", r[col.model] + (role ? " (" + role + ")" : "") + " · " + r[col.suite] + " · " +
      r[col.sample_id] + (r[col.repeat] ? " #" + r[col.repeat] : "") + (r[col.category] ? " · " + r[col.category] : "") +
      (r[col.turns] > 1 ? " · " + r[col.turns] + " turns" : "")));
    r[col.conversation].forEach(function (t, i) {
      var last = i === r[col.conversation].length - 1;
      var turn = node("div", "turn");
      turn.appendChild(node("div", "q", t[0]));
      if (s === "ok" || s === "pass" || s === "fail" || !last) { turn.appendChild(node("div", "a", t[1] || "–")); }
      mid.appendChild(turn);
    });
    if (r[col.answers].length) {
      mid.appendChild(node("div", "exp", (r[col.turns] > 1 ? "expected (last answer): " : "expected: ") +
        r[col.answers].join(" | ")));
    }
    if (s === "error" || s === "unsupported") { mid.appendChild(node("div", "err", s + ": " + r[col.error])); }
    c.appendChild(mid);
    c.appendChild(node("div", "score", r[col.score] === null ? s : r[col.score].toFixed(2)));
    return c;
  }

  function draw() {
    var rows = matching();
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    state.page = Math.max(0, Math.min(state.page, pages - 1));
    var slice = rows.slice(state.page * PAGE, (state.page + 1) * PAGE);
    while (box.firstChild) { box.removeChild(box.firstChild); }
    slice.forEach(function (r) { box.appendChild(card(r)); });
    info.textContent = rows.length === 0 ? "No rows match." :
      "Rows " + (state.page * PAGE + 1) + "–" + (state.page * PAGE + slice.length) + " of " + rows.length +
      " matching; page " + (state.page + 1) + " of " + pages + ".";
    box.dataset.filter = state.status === "failures" ? "failures" : state.status || "all";
    box.dataset.matching = String(rows.length);
    box.dataset.shown = String(slice.length);
    box.dataset.page = String(state.page + 1);
    el("g-prev").disabled = state.page === 0;
    el("g-next").disabled = state.page >= pages - 1;
  }

  ["model", "suite", "category", "status", "sort"].forEach(function (k) {
    ctl[k].addEventListener("change", function () { state[k] = ctl[k].value; state.page = 0; writeHash(); draw(); });
  });
  ctl.q.addEventListener("input", function () { state.q = ctl.q.value; state.page = 0; writeHash(); draw(); });
  el("g-prev").addEventListener("click", function () { state.page -= 1; draw(); });
  el("g-next").addEventListener("click", function () { state.page += 1; draw(); });

  function fromHash(scroll) {
    var h = readHash();
    if (!h) { return; }
    apply(h);
    draw();
    if (scroll) { el("gallery-section").scrollIntoView(); }
  }
  window.addEventListener("hashchange", function () { fromHash(true); });
  window.addEventListener("beforeprint", function () {
    Array.prototype.forEach.call(document.querySelectorAll("details"), function (d) { d.open = true; });
  });
  draw();
  fromHash(true);
  document.body.dataset.ready = "1";
})();
