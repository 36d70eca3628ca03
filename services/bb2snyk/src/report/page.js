// Sorting and filtering of the table of repositories not imported. The state is also kept in the
// address (#workspace=…&status=…&sort=…&dir=…), so a view can be bookmarked or shared, and a page
// opened with one applies it through the same controls a person uses.
(function () {
  "use strict";
  var table = document.getElementById("repos");
  if (!table) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var workspace = document.getElementById("f-workspace");
  var status = document.getElementById("f-status");
  var shown = document.getElementById("shown");
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var sort = { key: null, dir: "ascending" };

  function cellValue(row, index, numeric) {
    var text = row.cells[index].textContent.trim();
    return numeric ? Number(text) || 0 : text.toLowerCase();
  }

  function filter() {
    var count = 0;
    rows.forEach(function (row) {
      var show = (!workspace.value || row.dataset.workspace === workspace.value) &&
        (!status.value || row.dataset.status === status.value);
      row.hidden = !show;
      if (show) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " shown";
    remember();
  }

  function sortBy(index) {
    var head = heads[index];
    var numeric = head.classList.contains("num");
    var dir = sort.key === index && sort.dir === "ascending" ? "descending" : "ascending";
    sort = { key: index, dir: dir };
    heads.forEach(function (h) { h.setAttribute("aria-sort", "none"); });
    head.setAttribute("aria-sort", dir);
    var sign = dir === "ascending" ? 1 : -1;
    rows.sort(function (a, b) {
      var x = cellValue(a, index, numeric), y = cellValue(b, index, numeric);
      return x < y ? -sign : x > y ? sign : 0;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    remember();
  }

  function remember() {
    var parts = [];
    if (workspace.value) { parts.push("workspace=" + encodeURIComponent(workspace.value)); }
    if (status.value) { parts.push("status=" + encodeURIComponent(status.value)); }
    if (sort.key !== null) {
      parts.push("sort=" + heads[sort.key].dataset.key, "dir=" + (sort.dir === "ascending" ? "asc" : "desc"));
    }
    if (window.history && history.replaceState) {
      history.replaceState(null, "", parts.length ? "#" + parts.join("&") : location.pathname);
    }
  }

  heads.forEach(function (head, index) {
    var button = head.querySelector("button");
    if (button) { button.addEventListener("click", function () { sortBy(index); }); }
  });
  workspace.addEventListener("change", filter);
  status.addEventListener("change", filter);

  var asked = {};
  location.hash.replace(/^#/, "").split("&").forEach(function (pair) {
    var kv = pair.split("=");
    if (kv.length === 2) { asked[kv[0]] = decodeURIComponent(kv[1]); }
  });
  function choose(select, value) {
    if (value === undefined) { return; }
    select.value = value;
    select.dispatchEvent(new Event("change"));
  }
  choose(workspace, asked.workspace);
  choose(status, asked.status);
  heads.forEach(function (head) {
    if (head.dataset.key === asked.sort) {
      var button = head.querySelector("button");
      button.click();
      if (asked.dir === "desc") { button.click(); }
    }
  });
  filter();
})();
