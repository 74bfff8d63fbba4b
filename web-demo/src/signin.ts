/** The first screen: a portal token, or the guest. */
import { h } from "./dom.js";
import type { Session } from "./session.js";

export function signInView(onSignIn: (session: Session) => void, notice?: string): HTMLElement {
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    placeholder: "Paste a portal token",
    "data-testid": "token-input",
  });
  const form = h(
    "form",
    { class: "signin-form" },
    h("label", { for: "token" }, "Portal token"),
    input,
    h("p", { class: "hint" }, "A static token from the server's configuration, or a Backstage identity token (JWT)."),
    h("div", { class: "row" },
      h("button", { type: "submit", class: "button button-primary", "data-testid": "sign-in" }, "Sign in"),
      h("button", { type: "button", class: "button", "data-testid": "guest", onclick: () => onSignIn({ token: null }) }, "Continue as guest"),
    ),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      input.setCustomValidity("Enter a token, or continue as guest.");
      input.reportValidity();
      return;
    }
    onSignIn({ token });
  });
  input.addEventListener("input", () => input.setCustomValidity(""));
  return h(
    "main",
    { class: "signin" },
    h("section", { class: "card signin-card" },
      h("h1", {}, "Sign in to kubeportal"),
      h("p", { class: "muted" }, "Browse clusters, see a service's workloads and follow pod logs through the portal."),
      notice ? h("div", { class: "alert alert-warn", role: "status" }, notice) : null,
      form,
    ),
  );
}
