// Jobs: the list with status and graph filters, keyset paging by next_cursor, kept live by the feed.
import { useState } from "preact/hooks";
import { html } from "../html.js";
import { api } from "../api.js";
import { JOB_STATUSES, Loading } from "../components.js";
import { useFeed, useLoad, useNow, useThrottled } from "../live.js";
import { JobTable } from "./overview.js";

const PAGE_SIZE = 25;

function query(filters, cursor) {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (filters.statuses.length) params.set("status", filters.statuses.join(","));
  if (filters.graphId) params.set("graph_id", filters.graphId);
  if (cursor) params.set("cursor", cursor);
  return `/api/v1/jobs?${params}`;
}

function Filters({ filters, onChange }) {
  const [graphId, setGraphId] = useState(filters.graphId);
  const toggle = (status) => {
    const statuses = filters.statuses.includes(status)
      ? filters.statuses.filter((s) => s !== status)
      : [...filters.statuses, status];
    onChange({ ...filters, statuses });
  };
  return html`<form class="filters" onSubmit=${(e) => { e.preventDefault(); onChange({ ...filters, graphId: graphId.trim() }); }}>
    <fieldset><legend>Status</legend>
      ${JOB_STATUSES.map((s) => html`<label class="check"><input type="checkbox" name="status" value=${s}
        checked=${filters.statuses.includes(s)} onChange=${() => toggle(s)} /> ${s}</label>`)}
    </fieldset>
    <div class="field"><label for="graph-filter">Graph id</label>
      <input id="graph-filter" name="graph_id" value=${graphId} onInput=${(e) => setGraphId(e.target.value)} placeholder="any graph" />
      <button type="submit">Filter</button></div>
  </form>`;
}

export function Jobs({ status, graphId }) {
  const now = useNow();
  const [filters, setFilters] = useState({ statuses: status ? status.split(",") : [], graphId: graphId || "" });
  const [cursors, setCursors] = useState([null]); // the cursor of every page up to the current one
  const cursor = cursors[cursors.length - 1];
  const [state, reload] = useLoad(() => api("GET", query(filters, cursor)), [filters, cursor]);
  const refresh = useThrottled(reload, 500);
  useFeed(refresh);
  const change = (next) => {
    setFilters(next);
    setCursors([null]);
  };
  const page = state.data;
  return html`<h1>Jobs</h1>
    <${Filters} filters=${filters} onChange=${change} />
    <${Loading} state=${state} what="jobs" />
    ${page && html`<${JobTable} jobs=${page.data} now=${now} caption="Jobs, most recently updated first" />`}
    <nav class="pager" aria-label="Pages">
      <button type="button" disabled=${cursors.length === 1} onClick=${() => setCursors(cursors.slice(0, -1))}>← Newer</button>
      <span class="muted">Page ${cursors.length}</span>
      <button type="button" disabled=${!page || !page.next_cursor} onClick=${() => setCursors([...cursors, page.next_cursor])}>Older →</button>
    </nav>`;
}
