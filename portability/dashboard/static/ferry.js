// Ferry dashboard: small enhancements; every form and link works without this script.
(function () {
  "use strict";

  // Copy buttons: hidden without JavaScript (the text can still be selected by hand).
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent).then(function () {
        var label = button.firstChild.nodeValue;
        button.firstChild.nodeValue = "Copied";
        setTimeout(function () { button.firstChild.nodeValue = label; }, 2000);
      });
    });
  });

  // Show only the chosen bucket's folders in the credential form.
  var bucketSelect = document.querySelector("[data-bucket-select]");
  if (bucketSelect) {
    var showFolders = function () {
      document.querySelectorAll("fieldset[data-bucket]").forEach(function (set) {
        set.hidden = set.getAttribute("data-bucket") !== bucketSelect.value;
      });
    };
    bucketSelect.addEventListener("change", showFolders);
    showFolders();
  }

  // Show only the options of the chosen kind of request.
  var kinds = document.querySelectorAll("input[name=kind]");
  if (kinds.length) {
    var showKind = function () {
      var chosen = document.querySelector("input[name=kind]:checked");
      document.querySelectorAll("fieldset[data-kind]").forEach(function (set) {
        set.hidden = !chosen || set.getAttribute("data-kind") !== chosen.value;
      });
    };
    kinds.forEach(function (k) { k.addEventListener("change", showKind); });
    showKind();
  }

  // "Test connection" without leaving the page (the button also works as a plain submit).
  var tester = document.querySelector("[data-test-destination]");
  if (tester && window.fetch) {
    tester.addEventListener("click", function (event) {
      event.preventDefault();
      var out = document.querySelector("[data-field=check]");
      out.className = "";
      out.textContent = "Testing\u2026";
      fetch(tester.getAttribute("formaction"), {
        method: "POST", credentials: "same-origin", headers: { accept: "application/json" },
        body: new URLSearchParams(new FormData(tester.form))
      }).then(function (r) { return r.json(); }).then(function (answer) {
        out.className = answer.ok ? "notice" : "error";
        out.textContent = answer.message;
      }).catch(function () {
        out.className = "error";
        out.textContent = "The test could not be run; try again.";
      });
    });
  }

  // A hand-off file goes into the hand-off field (which also takes a pasted document).
  var handoffFile = document.querySelector("[data-handoff-file]");
  if (handoffFile && window.FileReader) {
    handoffFile.hidden = false;
    handoffFile.addEventListener("change", function () {
      var file = handoffFile.files[0];
      if (!file) return;
      var reader = new FileReader();
      reader.onload = function () { document.getElementById("handoff").value = reader.result; };
      reader.readAsText(file);
    });
  }

  // Expiry countdowns tick once a minute.
  function remaining(iso) {
    var left = Math.floor((Date.parse(iso) - Date.now()) / 1000);
    if (left <= 0) return "expired";
    var d = Math.floor(left / 86400), h = Math.floor(left % 86400 / 3600), m = Math.floor(left % 3600 / 60);
    if (d) return "in " + d + " d " + h + " h";
    if (h) return "in " + h + " h " + m + " min";
    return "in " + m + " min " + (left % 60) + " s";
  }
  function tick() {
    document.querySelectorAll("time[data-countdown]").forEach(function (t) {
      t.textContent = remaining(t.getAttribute("datetime"));
    });
  }
  if (document.querySelector("time[data-countdown]")) setInterval(tick, 30000);

  // A request's page follows its progress until it is done, then reloads for the report.
  var live = document.querySelector("[data-live]");
  if (live) {
    var size = function (n) {
      var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
      n = Number(n || 0);
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
      return i ? n.toFixed(1) + " " + units[i] : n + " B";
    };
    var set = function (name, text) {
      var el = live.querySelector("[data-field=" + name + "]");
      if (el) el.textContent = text;
    };
    var poll = function () {
      fetch(live.getAttribute("data-live"), { credentials: "same-origin", headers: { accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); })
        .then(function (item) {
          var p = item.progress;
          set("status", item.status);
          live.querySelector("[data-field=status]").className = "status status-" + item.status;
          set("percent", item.percent);
          live.querySelector("[data-field=bar]").value = item.percent;
          set("bytes", size(p.bytes_done) + " of " + size(p.bytes_total));
          set("objects", p.objects_done + " of " + p.objects_total);
          set("rate", size(p.bytes_per_second) + "/s");
          set("eta", p.eta_seconds == null ? "\u2013" : Math.round(p.eta_seconds) + " s");
          if (item.status !== live.getAttribute("data-status")) {
            window.location.reload();
          } else if (item.active) {
            setTimeout(poll, 1000);
          }
        })
        .catch(function () { set("live", "Live updates stopped; reload the page to see the latest state."); });
    };
    if (["pending", "processing"].indexOf(live.getAttribute("data-status")) >= 0) {
      set("live", "Updating live.");
      setTimeout(poll, 1000);
    }
  }
})();
