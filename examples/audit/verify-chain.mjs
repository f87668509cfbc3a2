#!/usr/bin/env node
// Verify a MirrorNeuron job's hash chain from Node (>= 20) with the web console's verifier:
//
//   node examples/audit/verify-chain.mjs <job_id> [--url http://127.0.0.1:4000] [--token TOKEN]
//
// Prints `OK ...` (exit 0) or `BAD <sequence>: <reason>` (exit 1); 2 when the server cannot be
// read. pyjson-sha256 events it cannot check (written before v1.1) are named, not failed.
import { verifyChain } from "../../app/console/static/js/verify-chain.js";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(name);
  return at >= 0 ? args.splice(at, 2)[1] : fallback;
};
const base = option("--url", "http://127.0.0.1:4000").replace(/\/+$/, "");
const token = option("--token", process.env.MIRROR_NEURON_API_TOKEN);
const [jobId] = args;
if (!jobId) {
  console.error("usage: verify-chain.mjs <job_id> [--url URL] [--token TOKEN]");
  process.exit(2);
}

let events;
try {
  const response = await fetch(`${base}/api/v1/jobs/${encodeURIComponent(jobId)}/events`, {
    headers: token ? { Authorization: `Bearer ${token}` } : {},
  });
  if (!response.ok) throw new Error(`${response.status} ${await response.text()}`);
  events = (await response.json()).data;
} catch (error) {
  console.error(`cannot read the events of ${jobId}: ${error.message}`);
  process.exit(2);
}
const report = await verifyChain(events);
if (report.legacy.length) console.log(`not checked (pyjson-sha256): ${report.legacy.join(", ")}`);
if (!report.ok) {
  console.log(`BAD ${report.firstBad.sequence}: ${report.firstBad.reason}`);
  process.exit(1);
}
if (report.count === 0) {
  console.log(`BAD 1: ${jobId} has no events`);
  process.exit(1);
}
console.log(`OK ${report.count} events (${report.verified} verified), head ${report.head}`);
