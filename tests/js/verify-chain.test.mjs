// node --test for the console's chain verifier (app/console/static/js/verify-chain.js).
// Self-contained vectors run alone; the cases pytest writes (tests/unit/test_js_verifier.py,
// tests/e2e/test_verifiers.py) run when VERIFY_CHAIN_CASES names their file.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { canonicalize, verifyChain } from "../../app/console/static/js/verify-chain.js";

test("numbers are written as ECMAScript writes them (RFC 8785 §3.2.2.3)", () => {
  const cases = [
    ["1.0", "1"], ["-0.0", "0"], ["1e16", "10000000000000000"], ["1e21", "1e+21"], ["1e-7", "1e-7"],
    ["0.000001", "0.000001"], ["123456789012345680000", "123456789012345680000"],
    ["4.50", "4.5"], ["2e-3", "0.002"], ["0.000001234", "0.000001234"], ["1.5e300", "1.5e+300"],
    ["5e-324", "5e-324"], ["1.7976931348623157e308", "1.7976931348623157e+308"],
    ["9007199254740993", "9007199254740992"],
  ];
  for (const [input, expected] of cases) assert.equal(canonicalize(JSON.parse(input)), expected, input);
});

test("keys sort by UTF-16 code units and strings escape as RFC 8785 §3.2.2.2 says", () => {
  const value = { "\u{1F600}": 1, "\uFB33": 2, "a": 3, "A": 4, "\u20ac": 5 };
  assert.equal(canonicalize(value), '{"A":4,"a":3,"\u20ac":5,"\u{1F600}":1,"\uFB33":2}');
  assert.equal(canonicalize("\u0000\b\t\n\f\r\u001f\"\\/\u007f\u2028"), '"\\u0000\\b\\t\\n\\f\\r\\u001f\\"\\\\/\u007f\u2028"');
  assert.equal(canonicalize([null, true, false, [], {}]), "[null,true,false,[],{}]");
  assert.throws(() => canonicalize("\ud800"), /lone surrogate/);
  assert.throws(() => canonicalize(Infinity), /not a JSON number/);
});

test("an empty history verifies and has no head", async () => {
  assert.deepEqual(await verifyChain([]), { ok: true, count: 0, head: null, verified: 0, legacy: [], firstBad: null });
});

const casesFile = process.env.VERIFY_CHAIN_CASES;
const fixtures = casesFile ? JSON.parse(readFileSync(casesFile, "utf8")) : { canonical: [], chains: [] };

test("canonical text equals the Python rfc8785 package's", { skip: !casesFile && "VERIFY_CHAIN_CASES not set" }, () => {
  for (const { input, expected } of fixtures.canonical) {
    assert.equal(canonicalize(JSON.parse(input)), expected, input);
  }
});

for (const { name, events, expect } of fixtures.chains) {
  test(`chain: ${name}`, async () => {
    const report = await verifyChain(events);
    const seen = Object.fromEntries(Object.keys(expect).map((k) => [k, report[k]]));
    if (seen.firstBad && expect.firstBad) seen.firstBad = { sequence: report.firstBad.sequence };
    assert.deepEqual(seen, expect, JSON.stringify(report));
  });
}
