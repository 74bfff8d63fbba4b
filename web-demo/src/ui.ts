/** Small building blocks shared by the views. */
import { h, type Child } from "./dom.js";
import { describeError, type Tone } from "./format.js";

export function badge(label: string, tone: Tone, testId?: string): HTMLElement {
  return h("span", { class: `badge badge-${tone}`, "data-testid": testId }, label);
}

export function loading(what: string): HTMLElement {
  return h("div", { class: "loading", role: "status", "aria-live": "polite" }, h("span", { class: "spinner", "aria-hidden": "true" }), `Loading ${what}…`);
}

export function errorAlert(error: unknown, ...actions: Child[]): HTMLElement {
  const { title, detail } = describeError(error);
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": "error" },
    h("strong", {}, title),
    h("p", {}, detail),
    actions.length > 0 ? h("div", { class: "alert-actions" }, actions) : null,
  );
}

export function empty(text: string): HTMLElement {
  return h("p", { class: "empty" }, text);
}

/** A table with a header row; `rows` are arrays of cells. */
export function table(headers: string[], rows: Child[][], testId?: string): HTMLElement {
  return h(
    "table",
    { class: "table", "data-testid": testId },
    h("thead", {}, h("tr", {}, headers.map((header) => h("th", { scope: "col" }, header)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))),
  );
}
