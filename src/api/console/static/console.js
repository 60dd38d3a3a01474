// The console's only script (served from /ui/static/console.js; the Content-Security-Policy
// allows no inline script). Progressive enhancement only; with JavaScript off every page
// works the same, by plain links and form submissions:
// - a page whose <main> carries data-refresh="N" (the overview, health) reloads its content
//   every N seconds without a full page load;
// - a list's filter form (form.filters, method GET) replaces the list in place and keeps the
//   address (history.pushState), so a filtered list can still be bookmarked and reloaded.
(function () {
  "use strict";

  function fetchMain(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok || response.redirected) { throw new Error("no page"); }
        return response.text();
      })
      .then(function (text) {
        return new DOMParser().parseFromString(text, "text/html").getElementById("main");
      });
  }

  function replaceMain(fresh) {
    var main = document.getElementById("main");
    if (!main || !fresh) { return false; }
    main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
    main.setAttribute("data-refreshed", new Date().toISOString());
    enhanceFilters();
    return true;
  }

  function enhanceFilters() {
    var forms = document.querySelectorAll("form.filters");
    Array.prototype.forEach.call(forms, function (form) {
      if (form.dataset.enhanced) { return; }
      form.dataset.enhanced = "1";
      form.addEventListener("submit", function (event) {
        var params = new URLSearchParams(new FormData(form));
        Array.from(params.keys()).forEach(function (k) {
          if (!params.get(k)) { params.delete(k); }
        });
        var query = params.toString();
        var url = form.action + (query ? "?" + query : "");
        event.preventDefault();
        fetchMain(url)
          .then(function (fresh) {
            if (replaceMain(fresh)) { window.history.pushState({}, "", url); }
            else { window.location.href = url; }
          })
          .catch(function () { window.location.href = url; });
      });
    });
  }

  enhanceFilters();
  window.addEventListener("popstate", function () { window.location.reload(); });

  var main = document.getElementById("main");
  if (main && main.dataset.refresh) {
    var seconds = Math.max(5, parseInt(main.dataset.refresh, 10) || 30);
    window.setInterval(function () {
      fetchMain(window.location.href)
        .then(replaceMain)
        .catch(function () { /* keep the page as it is; the next tick tries again */ });
    }, seconds * 1000);
  }
})();
