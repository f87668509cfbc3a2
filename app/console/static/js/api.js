// The console's only way to the server: the public /api/v1 with the bearer token of this tab.
//
// The token lives in sessionStorage (this tab only, gone when it closes). Any 401 clears it and asks
// again through the listener the app registers. Event streams are read with fetch (NDJSON), not
// EventSource, because EventSource cannot send an Authorization header.

const TOKEN_KEY = "mirror-neuron-token";
let unauthorizedListener = () => {};

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export function onUnauthorized(listener) {
  unauthorizedListener = listener;
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.errors = Array.isArray(this.body.errors) ? this.body.errors : [];
  }
}

function headers(extra) {
  const result = { ...extra };
  const value = token();
  if (value) result.Authorization = `Bearer ${value}`;
  return result;
}

// A 401 asks for a token again; `sent` says whether this request carried one (then it was refused).
function refused(response, sent) {
  if (response.status !== 401) return false;
  unauthorizedListener(Boolean(sent));
  return true;
}

async function readJson(response) {
  const text = await response.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return { error: text.slice(0, 200) };
  }
}

// One API call; resolves to the JSON body of a 2xx answer, rejects with ApiError otherwise.
// `body` may be a string (sent as JSON text), FormData (multipart) or any JSON value.
export async function api(method, path, { body, signal } = {}) {
  const init = { method, signal, headers: headers({ Accept: "application/json" }) };
  const sent = token();
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  const parsed = await readJson(response);
  if (refused(response, sent) || !response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

// Follow an event stream (NDJSON over fetch) from `after`, calling onEvent for each event, until
// the server ends it (a job's terminal event) or `signal` aborts. Resolves to the last event seen.
export async function followEvents(path, { after = 0, onEvent, signal }) {
  const separator = path.includes("?") ? "&" : "?";
  const sent = token();
  const response = await fetch(`${path}${separator}follow=true&after=${after}`, {
    signal,
    headers: headers({ Accept: "application/x-ndjson" }),
  });
  if (refused(response, sent) || !response.ok) throw new ApiError(response.status, await readJson(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let last = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return last;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) {
        last = JSON.parse(line); // empty lines are keep-alives
        onEvent(last);
      }
    }
  }
}

// The position of the newest event of the global feed, found by doubling then halving `after`
// (about 2·log2(head) small indexed reads), so a dashboard follows from now instead of replaying
// the whole history.
export async function feedHead(signal) {
  const more = async (after) =>
    (await api("GET", `/api/v1/events?after=${after}&limit=1`, { signal })).data.length > 0;
  if (!(await more(0))) return 0;
  let low = 0;
  let high = 1;
  while (await more(high)) {
    low = high;
    high *= 2;
  }
  while (high - low > 1) {
    const middle = Math.floor((low + high) / 2);
    if (await more(middle)) low = middle;
    else high = middle;
  }
  return high;
}

export function isAbort(error) {
  return error && error.name === "AbortError";
}
