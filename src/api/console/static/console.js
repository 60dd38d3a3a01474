// The console's only script (served from /ui/static/console.js; the Content-Security-Policy
// allows no inline script). Progressive enhancement: a page whose <main> carries
// data-refresh="N" (the overview, health) reloads its content every N seconds without a
// full page load; with JavaScript off the page works the same, without the refresh.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !main.dataset.refresh) { return; }
  var seconds = Math.max(5, parseInt(main.dataset.refresh, 10) || 30);
  function refresh() {
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("no page"); }
        return response.text();
      })
      .then(function (text) {
        var doc = new DOMParser().parseFromString(text, "text/html");
        var fresh = doc.getElementById("main");
        if (fresh) {
          main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
          main.setAttribute("data-refreshed", new Date().toISOString());
        }
      })
      .catch(function () { /* keep the page as it is; the next tick tries again */ });
  }
  window.setInterval(refresh, seconds * 1000);
})();
