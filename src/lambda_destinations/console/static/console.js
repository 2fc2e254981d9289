// The console's only script: checks a payload is JSON before it is sent, and enables Purge
// once the queue's name is typed. The server checks both again; pages work without it.
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
        return true;
      } catch (error) {
        problem.hidden = false;
        problem.textContent = "Not valid JSON: " + error.message;
        return false;
      }
    };
    area.addEventListener("input", check);
    form.addEventListener("submit", (event) => { if (!check()) event.preventDefault(); });
  }
  for (const form of document.querySelectorAll("form[data-confirm-name]")) {
    const input = form.querySelector("input[name=confirm]");
    const button = form.querySelector("button[type=submit]");
    const update = () => { button.disabled = input.value !== form.dataset.confirmName; };
    input.addEventListener("input", update);
    update();
  }
});
