// Vigil console: the end of a SAML sign-in. The ACS put the token (or the
// refusal) in the URL fragment, which no server sees; take it out of the
// address bar at once and post it to the console with the form's token.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sso-form");
  if (!form) return;
  const params = new URLSearchParams(location.hash.slice(1));
  history.replaceState(null, "", location.pathname);
  if (params.get("token")) {
    form.elements.token.value = params.get("token");
  } else {
    form.elements.error.value = params.get("message") || params.get("error") || "no token came back from the identity provider";
  }
  form.submit();
});
