// The console's only script: checks a payload is JSON before it is sent, enables Purge once
// the queue's name is typed, sends an action's form once however often it is clicked, and
// follows a running job. The server checks the first two again; pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const area of document.querySelectorAll("textarea[data-json]")) {
    const form = area.form;
    const problem = form.querySelector("[data-json-problem]");
    const check = () => {
      try {
        JSON.parse(area.value);
        problem.hidden = true;
        problem.textContent = "";
        area.removeAttribute("aria-invalid");
        return true;
      } catch (error) {
        problem.hidden = false;
        problem.textContent = "Not valid JSON: " + error.message;
        area.setAttribute("aria-invalid", "true");
        return false;
      }
    };
    area.addEventListener("input", check);
    form.addEventListener("submit", (event) => {
      if (!check()) {
        event.preventDefault();
        area.focus();
      }
    });
  }
  for (const form of document.querySelectorAll("form[data-confirm-name]")) {
    const input = form.querySelector("input[name=confirm]");
    const button = form.querySelector("button[type=submit]");
    const update = () => { button.disabled = input.value !== form.dataset.confirmName; };
    input.addEventListener("input", update);
    update();
  }
  // An action's form is sent once: a double click would send it twice, and the browser shows
  // the second answer only (a replay's "not replayed: attempt 1 has no outcome yet", a
  // resend's "not resent: being resent") while the first did what was asked.
  const sent = new WeakSet();
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (event.defaultPrevented || form.method !== "post") return;
    if (sent.has(form)) event.preventDefault();
    else sent.add(form);
  });
  // Back to this page from the browser's cache: its forms may be sent again (the server
  // decides what a second send does).
  window.addEventListener("pageshow", (event) => {
    if (event.persisted) for (const form of document.forms) sent.delete(form);
  });
  // A running job: its page again every second, #job-now swapped in place (focus and reading
  // stay where they are); the end is said once, through #job-said.
  const now = document.querySelector("#job-now[data-follow]");
  const follow = async () => {
    let fresh = null;
    try {
      const response = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (!response.ok) {
        location.reload(); // the page says what went wrong
        return;
      }
      const page = new DOMParser().parseFromString(await response.text(), "text/html");
      fresh = page.getElementById("job-now");
    } catch (error) {
      // not answered this time: try again
    }
    if (fresh) {
      now.replaceChildren(...fresh.childNodes);
      if (!fresh.hasAttribute("data-follow")) {
        now.removeAttribute("data-follow");
        document.getElementById("job-said").textContent = document.getElementById("job-line").textContent;
        return;
      }
    }
    setTimeout(follow, 1000);
  };
  if (now) setTimeout(follow, 1000);
});
