// Bundles: the registered bundles, each with its version history, and reload.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { api } from "../api.js";
import { ApiErrorBox, Loading } from "../components.js";
import { useLoad } from "../live.js";
import { shortHash, time } from "../format.js";

function History({ bundleId }) {
  const [state] = useLoad(() => api("GET", `/api/v1/bundles/${encodeURIComponent(bundleId)}`), [bundleId]);
  const detail = state.data;
  return html`<${Loading} state=${state} what="the bundle" />
    ${detail && html`<div class="table-wrap"><table class="history">
      <caption>Versions of ${bundleId}</caption>
      <thead><tr><th scope="col">Version</th><th scope="col">Event</th><th scope="col">Reason</th><th scope="col">Fingerprint</th><th scope="col">Time</th></tr></thead>
      <tbody>${detail.history.map((h) => html`<tr><td>${h.version}</td><td class="mono small">${h.event}</td><td>${h.reason}</td>
        <td class="mono small" title=${h.fingerprint}>${shortHash(h.fingerprint)}</td><td>${time(h.timestamp)}</td></tr>`)}</tbody>
    </table></div>
    <p class="small">Payload files: ${detail.payload_files.length ? detail.payload_files.join(", ") : "none"}</p>`}`;
}

function Bundle({ bundle, onReloaded }) {
  const [open, setOpen] = useState(false);
  const [outcome, setOutcome] = useState(null);
  const reload = async () => {
    try {
      const answer = await api("POST", `/api/v1/bundles/${encodeURIComponent(bundle.bundle_id)}/reload`);
      setOutcome({ ok: answer.message });
      onReloaded();
    } catch (error) {
      setOutcome({ error });
    }
  };
  return html`<article class=${`card bundle${open ? " open" : ""}`} data-bundle-id=${bundle.bundle_id}>
    <h2>${bundle.bundle_id} <span class="tag">v${bundle.version}</span></h2>
    <dl class="facts">
      <dt>Job name</dt><dd>${bundle.job_name}</dd>
      <dt>Fingerprint</dt><dd class="mono small" title=${bundle.fingerprint}>${shortHash(bundle.fingerprint)}</dd>
      <dt>Last reloaded</dt><dd>${time(bundle.last_reloaded)}</dd>
      <dt>Reload</dt><dd>${bundle.reload.mode}${bundle.reload.mode === "interval" ? ` every ${bundle.reload.interval_seconds} s` : ""}</dd>
      <dt>Path</dt><dd class="mono small">${bundle.path}</dd>
    </dl>
    ${bundle.last_reload_error && html`<${ApiErrorBox} label="Last reload was rejected"
      error=${{ message: time(bundle.last_reload_error.timestamp), errors: bundle.last_reload_error.errors }} />`}
    <div class="buttons">
      <a class="button secondary" href=${`#/run?bundle=${encodeURIComponent(bundle.bundle_id)}`}>Run…</a>
      <button type="button" class="secondary" onClick=${reload}>Reload from disk</button>
      <button type="button" class="secondary" aria-expanded=${open} onClick=${() => setOpen(!open)}>${open ? "Hide" : "Show"} versions</button>
    </div>
    <div aria-live="polite">
      ${outcome && outcome.ok && html`<p class="ok" role="status">${outcome.ok}</p>`}
      ${outcome && outcome.error && html`<${ApiErrorBox} error=${outcome.error} />`}
    </div>
    ${open && html`<${History} bundleId=${bundle.bundle_id} key=${bundle.version} />`}
  </article>`;
}

export function Bundles() {
  const [state, reload] = useLoad(() => api("GET", "/api/v1/bundles"), []);
  const bundles = state.data ? state.data.data : [];
  return html`<h1>Bundles</h1>
    <${Loading} state=${state} what="bundles" />
    ${state.data && !bundles.length && html`<p class="muted">No bundle is registered. Set MIRROR_NEURON_BUNDLES_DIR or upload one on the <a href="#/run">Run</a> page.</p>`}
    <div class="cards">${bundles.map((b) => html`<${Bundle} bundle=${b} onReloaded=${reload} />`)}</div>`;
}
