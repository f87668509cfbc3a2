// Small pieces shared by the pages.
import { html } from "./html.js";
import { pretty } from "./format.js";

export const JOB_STATUSES = ["pending", "queued", "running", "paused", "completed", "failed", "cancelled"];

export function Status({ value }) {
  return html`<span class=${`status status-${value}`}>${value}</span>`;
}

// The API's refusal as it said it: the sentence and, for validation, every message in order.
export function ApiErrorBox({ error, label = "The server refused" }) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    <p><strong>${label}${error.status ? ` (${error.status})` : ""}:</strong> ${error.message}</p>
    ${error.errors && error.errors.length > 0 &&
    html`<ul class="validation-errors">${error.errors.map((e) => html`<li>${e}</li>`)}</ul>`}
  </div>`;
}

export function Json({ value }) {
  return html`<pre class="json">${pretty(value)}</pre>`;
}

export function Loading({ state, what }) {
  if (state.error) return html`<${ApiErrorBox} error=${state.error} label=${`Could not load ${what}`} />`;
  if (state.loading && !state.data) return html`<p class="muted">Loading ${what}…</p>`;
  return null;
}
