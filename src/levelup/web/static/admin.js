// The studio's editor: check the draft as you type (the server's own validation), show errors at their line and the diff.
(function () {
  "use strict";
  var form = document.getElementById("editor");
  if (!form) return;
  var text = document.getElementById("document");
  var errors = document.getElementById("errors");
  var diff = document.getElementById("diff");
  var timer = null;
  var asked = 0;

  function show(result) {
    errors.textContent = "";
    if (!result.errors.length) {
      var ok = document.createElement("p");
      ok.className = "muted";
      ok.textContent = "No errors.";
      errors.appendChild(ok);
    } else {
      var list = document.createElement("ul");
      list.className = "plain errors";
      result.errors.forEach(function (e) {
        var item = document.createElement("li");
        item.className = "minus";
        item.textContent = (e.line ? "Line " + e.line + ": " : "") + e.path + " — " + e.message;
        list.appendChild(item);
      });
      errors.appendChild(list);
    }
    diff.textContent = result.diff || "No change.";
    diff.closest("details").open = Boolean(result.diff);
  }

  function check() {
    var mine = ++asked;
    var body = new URLSearchParams(new FormData(form));
    fetch(form.dataset.check, { method: "POST", body: body, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (result) { if (result && mine === asked) show(result); });
  }

  text.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
})();
