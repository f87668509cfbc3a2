// Run: submit a registered bundle (optional initial inputs), a pasted manifest, or an uploaded bundle zip.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { api } from "../api.js";
import { ApiErrorBox, Json, Loading } from "../components.js";
import { useLoad } from "../live.js";

function openJob(answer) {
  location.hash = `#/jobs/${encodeURIComponent(answer.job_id)}`;
}

function useSubmit() {
  const [state, setState] = useState({ busy: false, error: null });
  const submit = async (body) => {
    setState({ busy: true, error: null });
    try {
      openJob(await api("POST", "/api/v1/jobs", { body }));
    } catch (error) {
      setState({ busy: false, error });
    }
  };
  return [state, submit];
}

function BundleForm({ bundle }) {
  const [bundles] = useLoad(() => api("GET", "/api/v1/bundles"), []);
  const [chosen, setChosen] = useState(bundle || "");
  const [inputs, setInputs] = useState("");
  const [state, submit] = useSubmit();
  const list = bundles.data ? bundles.data.data : [];
  const selected = chosen || (list.length ? list[0].bundle_id : "");
  const send = (event) => {
    event.preventDefault();
    let body = `{"bundle_id": ${JSON.stringify(selected)}}`;
    if (inputs.trim()) body = `{"bundle_id": ${JSON.stringify(selected)}, "initial_inputs": ${inputs}}`;
    submit(body); // the inputs go as typed: a JSON mistake is the server's to name
  };
  return html`<section aria-labelledby="run-bundle-h" class="card">
    <h2 id="run-bundle-h">A registered bundle</h2>
    <${Loading} state=${bundles} what="bundles" />
    <form onSubmit=${send}>
      <div class="field"><label for="run-bundle">Bundle</label>
        <select id="run-bundle" value=${selected} onChange=${(e) => setChosen(e.target.value)}>
          ${list.map((b) => html`<option value=${b.bundle_id}>${b.bundle_id} (v${b.version})</option>`)}</select></div>
      <div class="field"><label for="run-inputs">Initial inputs (JSON, optional)</label>
        <textarea id="run-inputs" rows="4" spellcheck="false" placeholder='{"agent_id": [{"key": "value"}]}'
          value=${inputs} onInput=${(e) => setInputs(e.target.value)}></textarea></div>
      <button type="submit" disabled=${state.busy || !selected}>Run bundle</button>
    </form>
    <${ApiErrorBox} error=${state.error} />
  </section>`;
}

function ManifestForm() {
  const [text, setText] = useState("");
  const [state, submit] = useSubmit();
  return html`<section aria-labelledby="run-manifest-h" class="card">
    <h2 id="run-manifest-h">A manifest</h2>
    <form onSubmit=${(e) => { e.preventDefault(); submit(text); }}>
      <div class="field"><label for="run-manifest">Manifest (JSON)</label>
        <textarea id="run-manifest" class="editor" rows="14" spellcheck="false" value=${text}
          aria-describedby="run-manifest-errors" onInput=${(e) => setText(e.target.value)}></textarea></div>
      <button type="submit" disabled=${state.busy || !text.trim()}>Submit manifest</button>
    </form>
    <div id="run-manifest-errors"><${ApiErrorBox} error=${state.error} /></div>
  </section>`;
}

function UploadForm() {
  const [state, setState] = useState({ busy: false, error: null, answer: null });
  const [run, submit] = useSubmit();
  const upload = async (event) => {
    event.preventDefault();
    const form = new FormData(event.target);
    setState({ busy: true, error: null, answer: null });
    try {
      setState({ busy: false, error: null, answer: await api("POST", "/api/v1/bundles/upload", { body: form }) });
    } catch (error) {
      setState({ busy: false, error, answer: null });
    }
  };
  const answer = state.answer;
  return html`<section aria-labelledby="run-upload-h" class="card">
    <h2 id="run-upload-h">A bundle zip</h2>
    <form onSubmit=${upload}>
      <div class="field"><label for="run-upload">Bundle archive (.zip)</label>
        <input id="run-upload" name="bundle" type="file" accept=".zip,application/zip" required /></div>
      <button type="submit" disabled=${state.busy}>Upload</button>
    </form>
    <${ApiErrorBox} error=${state.error} />
    ${answer && html`<div class="ok" role="status" data-upload=${answer.bundle_id}>
      <p>Bundle <strong>${answer.bundle_id}</strong> ${answer.changed ? "stored as a new version" : "unchanged"}:${" "}
        <span class="mono small">${answer.bundle_path}</span></p>
      <button type="button" disabled=${run.busy} onClick=${() => submit({ _bundle_path: answer.bundle_path })}>Run this version</button>
      <details><summary>Manifest</summary><${Json} value=${answer.manifest} /></details>
    </div>`}
    <${ApiErrorBox} error=${run.error} />
  </section>`;
}

export function Run({ bundle }) {
  return html`<h1>Run a job</h1><div class="run-grid">
    <${BundleForm} bundle=${bundle} /><${UploadForm} /><${ManifestForm} /></div>`;
}
