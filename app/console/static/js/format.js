// How times, durations and hashes are written on the page.

export function time(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

export function seconds(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  const s = Math.max(0, ms / 1000);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

export function ago(iso, now) {
  return iso ? `${seconds(now - Date.parse(iso))} ago` : "—";
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

// Submitted to the last lifecycle event for a finished job, to now for a live one.
export function jobDuration(job, now) {
  const end = isTerminal(job.status) ? Date.parse(job.updated_at) : now;
  return seconds(end - Date.parse(job.submitted_at));
}

export function shortHash(hash) {
  return hash ? `${hash.slice(0, 12)}…` : "—";
}

export function pretty(value) {
  return JSON.stringify(value, null, 2);
}
