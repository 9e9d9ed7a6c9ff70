// handoff console: while a page says it is live (<main data-live="SECONDS">), fetch it again
// every so often and swap in the new <main> content: no full reload, no flicker. Nothing else.
(function () {
  "use strict";
  var main = document.getElementById("main");
  if (!main || !window.fetch || !window.DOMParser) return;
  function every() { return parseInt(main.getAttribute("data-live") || "0", 10) || 0; }
  function busy() {
    // Leave the page alone while someone is typing into one of its forms.
    var a = document.activeElement;
    return a && main.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName);
  }
  function schedule(seconds) { if (seconds > 0) setTimeout(poll, seconds * 1000); }
  function poll() {
    if (busy()) return schedule(every());
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "console-poll" } })
      .then(function (r) {
        // A redirect means the session ended: reload to show the login page.
        if (r.redirected) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return schedule(every() * 2);
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("main");
        if (next) {
          if (next.innerHTML !== main.innerHTML && !busy()) main.innerHTML = next.innerHTML;
          main.setAttribute("data-live", next.getAttribute("data-live") || "0");
        }
        schedule(every());
      })
      .catch(function () { schedule(Math.max(every(), 5) * 2); });
  }
  schedule(every());
})();
