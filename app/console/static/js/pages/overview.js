// Overview: nodes with their executor pools, job counts by status, recent jobs; kept live.
import { html } from "../html.js";
import { api } from "../api.js";
import { JOB_STATUSES, Loading, Status } from "../components.js";
import { useFeed, useLoad, useNow, useThrottled } from "../live.js";
import { ago, jobDuration, time } from "../format.js";
import { useEffect } from "preact/hooks";

// Node rows are not events: their heartbeat is re-read every few seconds besides the feed.
const NODE_REFRESH_MS = 5000;

function Pool({ name, pool }) {
  const used = pool.in_use || 0;
  const capacity = pool.capacity || 0;
  return html`<div class="pool" data-pool=${name}>
    <div class="pool-label"><span>${name}</span><span>${used} / ${capacity} in use${pool.queued ? `, ${pool.queued} queued` : ""}</span></div>
    <progress max=${Math.max(capacity, 1)} value=${used} aria-label=${`pool ${name}: ${used} of ${capacity} slots in use`}></progress>
  </div>`;
}

function Node({ node, now }) {
  const pools = Object.entries(node.executor_pools || {});
  return html`<article class="card node" data-node=${node.name}>
    <h3>${node.name} <span class=${`status status-${node.status}`}>${node.status}</span>${node["self?"] ? html` <span class="tag">this node</span>` : ""}</h3>
    <dl class="facts">
      <dt>Heartbeat</dt><dd>${ago(node.last_heartbeat_at, now)}</dd>
      <dt>Started</dt><dd>${time(node.started_at)}</dd>
      <dt>Active jobs</dt><dd>${node.active_jobs}</dd>
      <dt>Roles</dt><dd>${[node.api_enabled && "api", node.runtime_enabled && "runtime"].filter(Boolean).join(", ") || "—"}</dd>
    </dl>
    ${pools.length ? pools.map(([name, pool]) => html`<${Pool} name=${name} pool=${pool} />`) : html`<p class="muted">No executor pools.</p>`}
  </article>`;
}

export function JobTable({ jobs, now, caption }) {
  if (!jobs.length) return html`<p class="muted">No jobs.</p>`;
  return html`<div class="table-wrap"><table class="jobs">
    <caption class="visually-hidden">${caption}</caption>
    <thead><tr><th scope="col">Status</th><th scope="col">Job</th><th scope="col">Graph</th><th scope="col">Submitted</th><th scope="col">Duration</th><th scope="col">Last event</th></tr></thead>
    <tbody>${jobs.map((job) => html`<tr data-job-id=${job.job_id} data-status=${job.status}>
      <td><${Status} value=${job.status} /></td>
      <td><a href=${`#/jobs/${encodeURIComponent(job.job_id)}`}>${job.job_name}</a><div class="muted small mono">${job.job_id}</div></td>
      <td>${job.graph_id}</td>
      <td>${time(job.submitted_at)}</td>
      <td>${jobDuration(job, now)}</td>
      <td class="mono small">${job.last_event || "—"}</td>
    </tr>`)}</tbody>
  </table></div>`;
}

export function Overview() {
  const now = useNow();
  const [state, reload] = useLoad(() => api("GET", "/api/v1/system/summary"), []);
  const refresh = useThrottled(reload, 500);
  useFeed(refresh);
  useEffect(() => {
    const timer = setInterval(refresh, NODE_REFRESH_MS);
    return () => clearInterval(timer);
  }, []);
  const summary = state.data;
  return html`<h1>Overview</h1>
    <${Loading} state=${state} what="the system summary" />
    ${summary && html`
      <section aria-labelledby="counts-title">
        <h2 id="counts-title">Jobs by status <span class="muted small">(${summary.jobs_total} in all)</span></h2>
        <ul class="counts">${JOB_STATUSES.map((s) => html`<li data-count=${s}>
          <a href=${`#/jobs?status=${s}`}><span class="count">${summary.job_counts[s]}</span> <${Status} value=${s} /></a></li>`)}</ul>
      </section>
      <section aria-labelledby="nodes-title">
        <h2 id="nodes-title">Nodes</h2>
        ${summary.nodes.length ? html`<div class="cards">${summary.nodes.map((n) => html`<${Node} node=${n} now=${now} />`)}</div>`
          : html`<p class="muted">No node is registered.</p>`}
      </section>
      <section aria-labelledby="recent-title">
        <h2 id="recent-title">Recent jobs</h2>
        <${JobTable} jobs=${summary.jobs.slice(0, 10)} now=${now} caption="Recently updated jobs" />
        <p><a href="#/jobs">All jobs →</a></p>
      </section>`}`;
}
