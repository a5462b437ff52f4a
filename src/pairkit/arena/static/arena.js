// pairkit arena: keyboard shortcuts on the voting page, live refresh of the admin page (no build step).
"use strict";

function votePage() {
  const forms = document.querySelectorAll("form");
  for (const form of forms) {
    // A second submit of the same form (double click, key repeat) is harmless on the server; skip it here.
    form.addEventListener("submit", (event) => {
      if (form.dataset.sent) { event.preventDefault(); return; }
      form.dataset.sent = "1";
    });
  }
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT")) {
      if (event.key === "Escape") target.blur();  // back to the shortcuts
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const aliases = { "1": "a", "2": "b", "3": "t" };
    let key = aliases[event.key] || event.key;
    if (key.length === 1 && !event.shiftKey) key = key.toLowerCase();
    const button = document.querySelector(`button[data-key="${CSS.escape(key)}"]`);
    if (button && !button.disabled) {
      event.preventDefault();
      button.form.requestSubmit(button);
    }
  });
}

function adminPage() {
  const body = document.body;
  const board = document.getElementById("board");
  const live = document.getElementById("live");
  let pending = false;
  let stale = false;
  async function refresh() {
    // An update that arrives while a fetch is in flight must not be lost: fetch once more afterwards.
    if (pending) { stale = true; return; }
    pending = true;
    try {
      do {
        stale = false;
        const response = await fetch(body.dataset.board, { headers: { Accept: "text/html" } });
        if (response.ok) board.innerHTML = await response.text();
      } while (stale);
    } finally {
      pending = false;
    }
  }
  const events = new EventSource(body.dataset.events);
  events.addEventListener("update", refresh);
  events.addEventListener("open", () => { live.textContent = "live"; live.className = "live"; });
  events.addEventListener("error", () => { live.textContent = "reconnecting"; live.className = "live off"; });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "vote" || page === "done") votePage();
  if (page === "admin") adminPage();
});
