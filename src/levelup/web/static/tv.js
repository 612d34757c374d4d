// The TV board: rotate between boards, follow the feed, celebrate a moment, refresh the boards when they move.
(function () {
  "use strict";
  var me = document.currentScript;
  var boards = document.getElementById("boards");
  var moments = document.getElementById("moments");
  var banner = document.getElementById("celebration");
  var clock = document.getElementById("clock");
  var rotate = Number(boards.dataset.rotate || 15) * 1000;
  var shown = 0;

  function show(index) {
    var all = boards.querySelectorAll(".board");
    var dots = document.querySelectorAll(".dots .dot");
    if (!all.length) return;
    shown = index % all.length;
    all.forEach(function (b, i) { b.hidden = i !== shown; });
    dots.forEach(function (d, i) { d.classList.toggle("on", i === shown); });
  }
  setInterval(function () { show(shown + 1); }, rotate);
  setInterval(function () {
    clock.textContent = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }, 10000);

  var refreshing = null;
  function refresh() {
    if (refreshing) return;
    refreshing = setTimeout(function () {
      fetch(me.dataset.boards, { cache: "no-store" }).then(function (r) {
        return r.ok ? r.text() : null;
      }).then(function (html) {
        refreshing = null;
        if (html === null) return;
        var before = ranks();
        boards.innerHTML = html;
        climbed(before);
        show(shown);
      }).catch(function () { refreshing = null; });
    }, 300);
  }

  // Who climbed since the last refresh: "▲2" beside their name until the next one.
  function ranks() {
    var seen = {};
    boards.querySelectorAll(".board").forEach(function (b) {
      b.querySelectorAll(".row").forEach(function (r) { seen[b.dataset.board + "/" + r.dataset.id] = Number(r.dataset.rank); });
    });
    return seen;
  }
  function climbed(before) {
    boards.querySelectorAll(".board").forEach(function (b) {
      b.querySelectorAll(".row").forEach(function (r) {
        var was = before[b.dataset.board + "/" + r.dataset.id];
        var up = was === undefined ? 0 : was - Number(r.dataset.rank);
        if (up > 0) {
          var mark = r.querySelector(".moved");
          mark.textContent = "▲" + up;
          mark.setAttribute("aria-label", "up " + up);
        }
      });
    });
  }

  var hide = null;
  function celebrate(text) {
    banner.textContent = "★ " + text;
    banner.hidden = false;
    clearTimeout(hide);
    hide = setTimeout(function () { banner.hidden = true; }, 8000);
  }

  function tell(moment) {
    var quiet = moments.querySelector(".quiet");
    if (quiet) quiet.remove();
    var line = document.createElement("li");
    line.textContent = moment.text;
    moments.prepend(line);
    while (moments.children.length > 8) moments.lastElementChild.remove();
    if (moment.celebrate) celebrate(moment.text);
  }

  var source = new EventSource(me.dataset.feed);
  source.onmessage = function (e) { tell(JSON.parse(e.data)); };
  source.addEventListener("moved", refresh);
})();
