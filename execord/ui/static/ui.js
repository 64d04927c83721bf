// The viewer's only script: while an execution runs, its page listens to the execution's
// stream and swaps in a fresh copy of the page's live part after each event. Everything
// else (filters, approve, reject, cancel, exports) is plain links and forms.
(function () {
  "use strict";
  // Someone is filling in a form of the live part (a comment, a cancel reason): wait.
  function busy(root) {
    var el = document.activeElement;
    return el && root.contains(el) && el.closest("form") !== null;
  }
  function start() {
    var root = document.getElementById("live");
    if (!root || !root.dataset.stream || !window.EventSource) return;
    var source = new EventSource(root.dataset.stream, { withCredentials: true });
    var pending = null, fetching = false, ended = false;
    function refresh() {
      pending = null;
      if (fetching) { pending = setTimeout(refresh, 250); return; }
      var live = document.getElementById("live");
      if (busy(live)) { pending = setTimeout(refresh, 1000); return; }
      fetching = true;
      fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (!html) return;
          var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
          if (!fresh) return;
          if (busy(live)) { pending = setTimeout(refresh, 1000); return; }  // typing began meanwhile
          var open = {};
          live.querySelectorAll("details[id][open]").forEach(function (d) { open[d.id] = true; });
          var said = live.querySelector("#live-status").textContent;
          var focused = document.activeElement && live.contains(document.activeElement) ? document.activeElement.id : "";
          live.innerHTML = fresh.innerHTML;
          if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
          live.dataset.status = fresh.dataset.status;
          live.querySelectorAll("details[id]").forEach(function (d) { if (open[d.id]) d.open = true; });
          live.querySelector("#live-status").textContent = said;
        })
        .finally(function () { fetching = false; });
    }
    source.addEventListener("append", function (msg) {
      var e = JSON.parse(msg.data);
      var status = document.getElementById("live-status");
      if (status) status.textContent = e.type + (e.what ? ": " + e.what : "");
      if (e.type === "execution.ended") { ended = true; source.close(); }
      if (ended) { clearTimeout(pending); pending = setTimeout(refresh, 0); }
      else if (!pending) pending = setTimeout(refresh, 400);
    });
    source.onerror = function () { if (ended) source.close(); };
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
