// Gantry's one script, served from the binary. Every page works without it; with it,
// a running deployment's log grows on its promotion page without reloading, and the
// page reloads once when the deployment ends. Lines are added as text, never as HTML.
(function () {
  'use strict';
  var live = document.querySelector('[data-live]');
  if (!live) {
    return;
  }
  var url = live.getAttribute('data-live');
  var after = Number(live.getAttribute('data-after') || '0');
  var status = live.querySelector('[data-live-status]');
  var log = live.querySelector('pre');
  if (!log) {
    log = document.createElement('pre');
    log.className = 'log';
    log.tabIndex = 0;
    log.setAttribute('aria-label', 'Deployment log lines');
    live.appendChild(log);
  }
  if (status) {
    status.textContent = 'This deployment is running; its log grows below as it runs.';
  }
  function poll() {
    fetch(url + '?after=' + after, {
      credentials: 'same-origin',
      headers: { accept: 'application/json' }
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error('HTTP ' + response.status);
        }
        return response.json();
      })
      .then(function (update) {
        update.lines.forEach(function (line) {
          log.appendChild(document.createTextNode(line.text + '\n'));
          after = line.seq;
        });
        if (update.running) {
          window.setTimeout(poll, 1500);
        } else {
          window.location.reload();
        }
      })
      .catch(function () {
        if (status) {
          status.textContent = 'Live updates stopped; reload the page to see more.';
        }
      });
  }
  window.setTimeout(poll, 1500);
})();
