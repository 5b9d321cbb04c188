// Vigil console: the little behaviour the server-rendered pages need.
// Loaded from 'self' only: the Content-Security-Policy allows no inline
// script, so every handler is attached here.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Buttons that change something ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (ev) => {
      if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
    });
  }
  // The main landmark takes focus after "Skip to content".
  const skip = document.querySelector(".skip");
  if (skip) skip.addEventListener("click", () => document.getElementById("main").focus());
});
