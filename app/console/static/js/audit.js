// The audit badge: the browser recomputes the job's whole hash chain (the RFC 8785 verifier,
// WebCrypto SHA-256) and says whether it holds, naming legacy events and the first bad sequence.
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./html.js";
import { shortHash } from "./format.js";
import { useThrottled } from "./live.js";

const VERIFY_EVERY_MS = 700;
let verifier = null; // the verifier module, loaded by the first job page that needs it

export function Audit({ events, done, lastHash, lastSequence, onResult }) {
  const [result, setResult] = useState(null);
  useEffect(() => onResult && onResult(result), [result]);
  const latest = useRef(events);
  latest.current = events;
  const verify = useThrottled(async () => {
    const list = latest.current;
    try {
      verifier = verifier || import("./verify-chain.js");
      setResult(await (await verifier).verifyChain(list));
    } catch (error) {
      setResult({ ok: false, count: list.length, firstBad: null, failure: String(error) });
    }
  }, VERIFY_EVERY_MS);
  useEffect(() => {
    if (events.length) verify();
  }, [events, done]);
  if (!result) return html`<p class="audit audit-pending" role="status">Verifying the hash chain…</p>`;
  const legacy = result.legacy || [];
  const stale = done && result.ok && lastSequence === result.count && lastHash !== result.head;
  if (!result.ok || stale) {
    const where = result.firstBad
      ? `at sequence ${result.firstBad.sequence}: ${result.firstBad.reason}`
      : stale ? `: the API's head ${shortHash(lastHash)} differs from the events' ${shortHash(result.head)}` : `: ${result.failure}`;
    return html`<p class="audit audit-bad" role="alert" data-audit="bad" data-bad-sequence=${result.firstBad ? result.firstBad.sequence : ""}>
      ✗ chain broken ${where}</p>`;
  }
  return html`<p class="audit audit-ok" role="status" data-audit="ok">
    ✓ chain verified: ${result.verified} events, head <span class="mono" title=${result.head}>${shortHash(result.head)}</span>
    ${legacy.length > 0 && html`<span class="legacy"> · ${legacy.length} legacy (pyjson-sha256) events not checked: sequence ${legacy.join(", ")}</span>`}
  </p>`;
}
