// Refreshes the queue dashboard: every data-refresh-seconds, fetch the figures fragment and
// swap it in. Without JavaScript the page is still complete; a reload refreshes it.
// Skips while the tab is hidden, and never replaces the figures with an error page: after a
// failed fetch (server restarting, session expired) the last figures stay and a note says so.
(function () {
  "use strict";

  function start() {
    var container = document.getElementById("sidecar-dashboard");
    if (!container || !window.fetch) {
      return;
    }
    var url = container.dataset.refreshUrl;
    var seconds = Number(container.dataset.refreshSeconds) || 10;
    var busy = false;
    container.classList.add("sidecar-live");

    function refresh() {
      if (busy) {
        return Promise.resolve(false);
      }
      busy = true;
      return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
        .then(function (response) {
          if (!response.ok || response.redirected) {
            throw new Error("HTTP " + response.status);
          }
          return response.text();
        })
        .then(function (html) {
          container.innerHTML = html;
          container.dataset.refreshedAt = new Date().toISOString();
          return true;
        })
        .catch(function () {
          var note = container.querySelector(".sidecar-refresh-note");
          if (note) {
            note.textContent = " · could not refresh just now; showing the last figures (reload the page)";
          }
          return false;
        })
        .finally(function () {
          busy = false;
        });
    }

    window.setInterval(function () {
      if (!document.hidden) {
        refresh();
      }
    }, seconds * 1000);
    window.sidecarDashboard = { refresh: refresh };
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
