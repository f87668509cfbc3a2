// Job page: graph with live agent status, controls, audit badge, result, sandboxes and the live timeline.
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { html } from "../html.js";
import { api, followEvents, isAbort } from "../api.js";
import { ApiErrorBox, Json, Loading, Status } from "../components.js";
import { useLoad, useThrottled } from "../live.js";
import { isTerminal, pretty, shortHash, time } from "../format.js";
import { JobGraph } from "../graph.js";
import { Audit } from "../audit.js";

const TERMINAL_EVENTS = new Set(["job_completed", "job_failed", "job_cancelled"]);
const SHOWN_AT_ONCE = 1000;

// Every event of the job, in sequence order: the history, then each new event as it commits.
function useJobEvents(jobId, onEvent) {
  const [state, setState] = useState({ events: [], done: false, error: null });
  const latest = useRef(onEvent);
  latest.current = onEvent;
  useEffect(() => {
    const controller = new AbortController();
    const { signal } = controller;
    const events = [];
    let pending = null;
    const flush = () => {
      pending = null;
      setState((s) => ({ ...s, events: events.slice() }));
    };
    (async () => {
      while (!signal.aborted) {
        const after = events.length ? events[events.length - 1].sequence : 0;
        try {
          await followEvents(`/api/v1/jobs/${encodeURIComponent(jobId)}/events`, {
            after, signal,
            onEvent: (event) => {
              events.push(event);
              if (pending === null) pending = setTimeout(flush, 50);
              latest.current(event);
            },
          });
        } catch (error) {
          if (isAbort(error) || signal.aborted) return;
          if (error.status) {
            setState((s) => ({ ...s, error }));
            return;
          }
        }
        const last = events[events.length - 1];
        if (last && TERMINAL_EVENTS.has(last.type)) {
          clearTimeout(pending);
          flush();
          setState((s) => ({ ...s, done: true }));
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 1000)); // dropped: follow again from `after`
      }
    })();
    return () => {
      controller.abort();
      clearTimeout(pending);
    };
  }, [jobId]);
  return state;
}

function Action({ label, run, disabled }) {
  return html`<button type="button" disabled=${disabled} onClick=${run}>${label}</button>`;
}

function Controls({ job, agents, onChange }) {
  const [outcome, setOutcome] = useState(null);
  const [agentId, setAgentId] = useState(agents.length ? agents[agents.length - 1].agent_id : "");
  const [message, setMessage] = useState(pretty({ type: "manual_result", payload: { text: "sent from the console" } }));
  const call = async (label, path, body) => {
    setOutcome({ pending: label });
    try {
      const answer = await api("POST", `/api/v1/jobs/${encodeURIComponent(job.job_id)}/${path}`, { body });
      setOutcome({ ok: `${label}: ${JSON.stringify(answer)}` });
      onChange();
    } catch (error) {
      setOutcome({ error });
    }
  };
  const send = (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(message);
    } catch (error) {
      setOutcome({ error: { message: `the message is not JSON: ${error.message}` } });
      return;
    }
    call("Message", "messages", { agent_id: agentId, message: parsed });
  };
  const status = job.status;
  return html`<section aria-labelledby="controls-title" class="controls">
    <h2 id="controls-title">Controls</h2>
    <div class="buttons">
      <${Action} label="Pause" disabled=${status !== "running"} run=${() => call("Pause", "pause")} />
      <${Action} label="Resume" disabled=${status !== "paused"} run=${() => call("Resume", "resume")} />
      <${Action} label="Cancel" disabled=${isTerminal(status)} run=${() => call("Cancel", "cancel")} />
    </div>
    <form class="message-form" onSubmit=${send}>
      <div class="field"><label for="message-agent">Send to agent</label>
        <select id="message-agent" value=${agentId} onChange=${(e) => setAgentId(e.target.value)}>
          ${agents.map((a) => html`<option value=${a.agent_id}>${a.agent_id}</option>`)}
        </select></div>
      <div class="field grow"><label for="message-body">Message (JSON)</label>
        <textarea id="message-body" rows="3" spellcheck="false" value=${message} onInput=${(e) => setMessage(e.target.value)}></textarea></div>
      <button type="submit">Send message</button>
    </form>
    <div class="outcome" aria-live="polite">
      ${outcome && outcome.pending && html`<p class="muted">${outcome.pending}…</p>`}
      ${outcome && outcome.ok && html`<p class="ok" role="status">${outcome.ok}</p>`}
      ${outcome && outcome.error && html`<${ApiErrorBox} error=${outcome.error} />`}
    </div>
  </section>`;
}

function AgentsTable({ agents }) {
  return html`<div class="table-wrap"><table class="agents">
    <caption class="visually-hidden">Agents</caption>
    <thead><tr><th scope="col">Agent</th><th scope="col">Type</th><th scope="col">Status</th><th scope="col" class="num">Processed</th><th scope="col" class="num">Mailbox</th><th scope="col">Last error</th></tr></thead>
    <tbody>${agents.map((a) => html`<tr data-agent-id=${a.agent_id} data-status=${a.status}>
      <th scope="row" class="mono">${a.agent_id}</th><td>${a.agent_type}</td><td><${Status} value=${a.status} /></td>
      <td class="num" data-processed>${a.processed_messages}</td><td class="num" data-mailbox>${a.mailbox_depth}</td>
      <td class="small">${a.last_error || ""}</td></tr>`)}</tbody>
  </table></div>`;
}

// Where an executor run's stdout/stderr were recorded: its output message, or the failure result.
function runOutputs(events) {
  const outputs = {};
  const keep = (run) => {
    if (run && typeof run === "object" && typeof run.sandbox_name === "string") outputs[run.sandbox_name] = run;
  };
  for (const event of events) {
    const p = event.payload || {};
    if (event.type === "message_delivered") keep(p.message && p.message.body && p.message.body.sandbox);
    else if (event.type === "job_failed") keep(p.result && p.result.details);
    else if (event.type === "job_completed") keep(p.result && p.result.output && p.result.output.sandbox);
  }
  return outputs;
}

function Output({ label, text, truncated }) {
  if (!text) return html`<p class="muted small">${label}: empty</p>`;
  return html`<details><summary>${label}${truncated ? " (truncated)" : ""}</summary><pre class="output">${text}</pre></details>`;
}

function Sandboxes({ sandboxes, events }) {
  const outputs = useMemo(() => runOutputs(events), [events]);
  if (!sandboxes.length) return html`<p class="muted">No executor has run yet.</p>`;
  return html`<ul class="sandboxes">${sandboxes.map((s) => {
    const run = outputs[s.sandbox_name];
    return html`<li data-sandbox=${s.sandbox_name}>
      <p><strong class="mono">${s.agent_id}</strong> · <span class="mono small">${s.sandbox_name}</span> ·
        exit ${s.exit_code === null ? "—" : s.exit_code} · pool ${s.pool} · ${time(s.timestamp)}</p>
      ${run ? html`<${Output} label="stdout" text=${run.stdout} truncated=${run.stdout_truncated} />
        <${Output} label="stderr" text=${run.stderr} truncated=${run.stderr_truncated} />`
        : html`<p class="muted small">No event carries this run's output (its stdout was structured output, read as actions).</p>`}
    </li>`;
  })}</ul>`;
}

function Timeline({ events, done, badSequence }) {
  const [agent, setAgent] = useState("");
  const [type, setType] = useState("");
  const [all, setAll] = useState(false);
  const agents = useMemo(() => [...new Set(events.map((e) => e.agent_id).filter(Boolean))].sort(), [events]);
  const types = useMemo(() => [...new Set(events.map((e) => e.type))].sort(), [events]);
  const shown = events.filter((e) =>
    (!agent || (agent === "-" ? e.agent_id === null : e.agent_id === agent)) && (!type || e.type === type));
  const visible = all ? shown : shown.slice(0, SHOWN_AT_ONCE);
  return html`<section aria-labelledby="timeline-title">
    <h2 id="timeline-title">Events <span class="muted small">(${events.length}${done ? ", complete" : ", following live"})</span></h2>
    <div class="filters inline">
      <div class="field"><label for="filter-agent">Agent</label>
        <select id="filter-agent" value=${agent} onChange=${(e) => setAgent(e.target.value)}>
          <option value="">every agent</option><option value="-">job-level events</option>
          ${agents.map((a) => html`<option value=${a}>${a}</option>`)}</select></div>
      <div class="field"><label for="filter-type">Type</label>
        <select id="filter-type" value=${type} onChange=${(e) => setType(e.target.value)}>
          <option value="">every type</option>${types.map((t) => html`<option value=${t}>${t}</option>`)}</select></div>
    </div>
    <ol class="timeline">${visible.map((e) => html`<li class=${e.sequence === badSequence ? "event bad" : "event"} data-sequence=${e.sequence} data-type=${e.type} data-agent-id=${e.agent_id || ""}>
      <details><summary><span class="seq">#${e.sequence}</span> <span class="mono">${e.type}</span>
        ${e.sequence === badSequence && html`<strong class="error-text"> ✗ the chain breaks here</strong>`}
        ${e.agent_id && html`<span class="tag">${e.agent_id}</span>`} <span class="muted small">${time(e.timestamp)}</span></summary>
        <${Json} value=${e.payload} />
        <p class="muted small mono">event ${e.event_id} · position ${e.position} · hash ${e.hash}${e.hash_alg ? ` (${e.hash_alg})` : ""}</p>
      </details></li>`)}</ol>
    ${shown.length > visible.length && html`<button type="button" onClick=${() => setAll(true)}>Show all ${shown.length} events</button>`}
  </section>`;
}

export function Job({ jobId }) {
  const path = `/api/v1/jobs/${encodeURIComponent(jobId)}`;
  const [details, reload] = useLoad(() => api("GET", path), [jobId]);
  const refresh = useThrottled(reload, 300);
  const stream = useJobEvents(jobId, refresh);
  const [audit, setAudit] = useState(null);
  useEffect(() => { if (stream.done) reload(); }, [stream.done]);
  const submitted = stream.events.length && stream.events[0].type === "job_submitted" ? stream.events[0] : null;
  const manifest = submitted ? submitted.payload.manifest : null;
  const data = details.data;
  const job = data && data.job;
  return html`
    <${Loading} state=${details} what=${`job ${jobId}`} />
    ${job && html`
      <header class="job-head">
        <h1>${job.job_name} <${Status} value=${job.status} /></h1>
        <p class="mono small">${job.job_id}</p>
        <dl class="facts wide">
          <dt>Graph</dt><dd>${job.graph_id}</dd>
          <dt>Submitted</dt><dd>${time(job.submitted_at)}</dd>
          <dt>Updated</dt><dd>${time(job.updated_at)}</dd>
          <dt>Node</dt><dd>${job.node || "—"}</dd>
          ${job.bundle && html`<dt>Bundle</dt><dd>${job.bundle.bundle_id} <span class="mono small">${shortHash(job.bundle.fingerprint)}</span></dd>`}
          ${job.status_reason && html`<dt>Reason</dt><dd>${job.status_reason}</dd>`}
        </dl>
        <${Audit} events=${stream.events} done=${stream.done} lastHash=${job.last_hash}
          lastSequence=${job.last_sequence} onResult=${setAudit} />
      </header>
      <${Controls} job=${job} agents=${data.agents} onChange=${refresh} />
      <section aria-labelledby="graph-h"><h2 id="graph-h">Graph</h2>
        ${manifest ? html`<${JobGraph} manifest=${manifest} agents=${data.agents} />` : html`<p class="muted">Loading the manifest…</p>`}
        <${AgentsTable} agents=${data.agents} />
      </section>
      ${job.result !== null && html`<section aria-labelledby="result-h" class=${`result result-${job.status}`}>
        <h2 id="result-h">${job.status === "completed" ? "Result" : job.status === "failed" ? "Error" : "Outcome"}</h2>
        ${job.result.error && html`<p class="error-text" role="alert">${job.result.error}</p>`}
        <${Json} value=${job.result} /></section>`}
      <section aria-labelledby="sandboxes-h"><h2 id="sandboxes-h">Executor sandboxes</h2>
        <${Sandboxes} sandboxes=${data.sandboxes} events=${stream.events} /></section>`}
    ${job && stream.error && html`<${ApiErrorBox} error=${stream.error} label="The event stream stopped" />`}
    ${job && html`<${Timeline} events=${stream.events} done=${stream.done}
      badSequence=${audit && audit.firstBad ? audit.firstBad.sequence : null} />`}`;
}
