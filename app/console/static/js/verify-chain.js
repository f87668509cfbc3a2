// Hash-chain verifier for MirrorNeuron job events (SPEC §1.3, Appendix C.1), sharing no code with
// the server. Plain ES module: no dependencies, runs in browsers (WebCrypto) and in Node >= 20.
//
//   import { canonicalize, verifyChain } from "./verify-chain.js";
//   const page = await (await fetch(`/api/v1/jobs/${id}/events`, {headers})).json();
//   const report = await verifyChain(page.data);   // {ok, count, head, verified, legacy, firstBad}
//
// An event's `hash` is the SHA-256 (lower-case hex) of the RFC 8785 (JCS) text of
//   {agent_id, event_id, payload, prev_hash, sequence, stream_id, timestamp, type}
// where prev_hash is the previous event's stored hash ("" for sequence 1) and stream_id is the
// job id. JSON.parse reads every number as a double, and a `jcs-sha256` payload's stored text is
// exactly JCS of that value, so canonicalizing the parsed record reproduces the hashed bytes.
// Events labelled `pyjson-sha256` were hashed over Python's json.dumps text (SPEC Appendix B.2);
// that text is the JCS text unless the payload holds floats written differently (`1.0`, `1e-05`)
// or keys that sort differently by code point, so such an event is checked with JCS and, if the
// hashes differ, reported in `legacy` (not checked) and its stored hash carried forward; if they
// match over text that json.dumps could not have written, its label was changed (tampering).

const JCS = "jcs-sha256";
const PYJSON = "pyjson-sha256";

function serializeString(text) {
  // JSON.stringify escapes exactly as RFC 8785 §3.2.2.2 asks (\b \t \n \f \r \" \\ short,
  // other controls as lower-case \u00xx, everything else as is) for well-formed strings.
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit >= 0xd800 && unit <= 0xdfff) {
      const next = text.charCodeAt(i + 1);
      if (unit <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      throw new TypeError("JCS: string holds a lone surrogate");
    }
  }
  return JSON.stringify(text);
}

function serializeNumber(value) {
  if (!Number.isFinite(value)) throw new TypeError(`JCS: ${value} is not a JSON number`);
  // Number.prototype.toString is the RFC 8785 number form (-0 becomes "0").
  return String(value);
}

/** The RFC 8785 (JSON Canonicalization Scheme) text of a JSON value. */
export function canonicalize(value) {
  if (value === null) return "null";
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      return serializeNumber(value);
    case "string":
      return serializeString(value);
    case "object":
      break;
    default:
      throw new TypeError(`JCS: a ${typeof value} is not a JSON value`);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalize).join(",")}]`;
  // Keys sorted by UTF-16 code units: what Array.prototype.sort compares strings by.
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${serializeString(k)}:${canonicalize(value[k])}`).join(",")}}`;
}

// Could Python's json.dumps (sorted keys) have written this JCS text? Its integers, yes; its floats
// only in repr's forms (fixed notation from 1e-4 up to 1e16, else an exponent of two digits or
// more: `1e-07`, never `1e-7` or `0.000001`); its objects only when code-point order is UTF-16
// order. A pyjson-sha256 event whose hash JCS reproduces over text json.dumps cannot write was
// hashed as JCS: its label was changed.
function pyjsonCouldWrite(value) {
  if (typeof value === "number") {
    const text = String(Math.abs(value));
    if (/^\d+$/.test(text)) return true;
    const exponent = text.indexOf("e");
    if (exponent >= 0) return text.length - exponent - 2 >= 2;
    return Math.abs(value) >= 1e-4;
  }
  if (value === null || typeof value !== "object") return true;
  if (Array.isArray(value)) return value.every(pyjsonCouldWrite);
  const keys = Object.keys(value).sort();
  const byCodePoint = [...keys].sort((a, b) => {
    const [x, y] = [Array.from(a), Array.from(b)];
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      const d = x[i].codePointAt(0) - y[i].codePointAt(0);
      if (d !== 0) return d;
    }
    return x.length - y.length;
  });
  return keys.every((k, i) => k === byCodePoint[i]) && keys.every((k) => pyjsonCouldWrite(value[k]));
}

async function sha256Hex(text) {
  const subtle = globalThis.crypto && globalThis.crypto.subtle;
  if (!subtle) throw new Error("WebCrypto (crypto.subtle) is not available here");
  const digest = await subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The text an event's hash is computed over, given the previous event's hash. */
export function hashInput(event, prevHash) {
  return canonicalize({
    agent_id: event.agent_id,
    event_id: event.event_id,
    payload: event.payload,
    prev_hash: prevHash,
    sequence: event.sequence,
    stream_id: event.job_id,
    timestamp: event.timestamp,
    type: event.type,
  });
}

/**
 * Verify a job's events (API records of GET /jobs/{id}/events, in sequence order, from sequence 1
 * unless `options.prevHash` gives the hash before the first one).
 *
 * Returns {ok, count, head, verified, legacy, firstBad}: `head` is the last stored hash,
 * `verified` how many hashes were recomputed and matched, `legacy` the sequences of
 * pyjson-sha256 events that could not be checked here (their stored hash is carried forward),
 * `firstBad` the first event found wrong ({sequence, reason}) or null.
 */
export async function verifyChain(events, options = {}) {
  let prev = options.prevHash ?? "";
  let expected = null;
  let seenJcs = false;
  let verified = 0;
  const legacy = [];
  const report = (firstBad) => ({
    ok: firstBad === null,
    count: events.length,
    head: events.length ? events[events.length - 1].hash ?? null : null,
    verified,
    legacy,
    firstBad,
  });
  for (const event of events) {
    const sequence = event.sequence;
    if (expected === null) expected = options.prevHash === undefined ? 1 : sequence;
    if (sequence !== expected) {
      return report({ sequence, reason: `expected sequence ${expected}, found ${sequence}` });
    }
    expected += 1;
    if (event.hash_alg !== JCS && event.hash_alg !== PYJSON) {
      return report({ sequence, reason: `unknown hash_alg ${JSON.stringify(event.hash_alg)}` });
    }
    if (event.hash_alg === PYJSON && seenJcs) {
      return report({ sequence, reason: "pyjson-sha256 event after a jcs-sha256 event" });
    }
    seenJcs = seenJcs || event.hash_alg === JCS;
    let recomputed;
    try {
      recomputed = await sha256Hex(hashInput(event, prev));
    } catch (error) {
      if (event.hash_alg === PYJSON) {
        legacy.push(sequence);
        prev = event.hash;
        continue;
      }
      return report({ sequence, reason: `cannot canonicalize: ${error.message}` });
    }
    if (recomputed === event.hash && event.hash_alg === PYJSON && !pyjsonCouldWrite(event.payload)) {
      return report({ sequence, reason: "labelled pyjson-sha256 but hashed as jcs-sha256" });
    } else if (recomputed === event.hash) {
      verified += 1;
    } else if (event.hash_alg === PYJSON) {
      legacy.push(sequence);
    } else {
      return report({ sequence, reason: `hash mismatch: recorded ${event.hash}, recomputed ${recomputed}` });
    }
    prev = event.hash;
  }
  return report(null);
}
