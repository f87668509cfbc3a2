// The console's shell: navigation, the hash router and the token prompt.
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { html } from "./html.js";
import { onUnauthorized, setToken, token } from "./api.js";
import { Overview } from "./pages/overview.js";
import { Jobs } from "./pages/jobs.js";
import { Job } from "./pages/job.js";
import { Run } from "./pages/run.js";
import { Bundles } from "./pages/bundles.js";

const PAGES = [
  { href: "#/", label: "Overview", match: (p) => p === "/" },
  { href: "#/jobs", label: "Jobs", match: (p) => p.startsWith("/jobs") },
  { href: "#/run", label: "Run", match: (p) => p.startsWith("/run") },
  { href: "#/bundles", label: "Bundles", match: (p) => p.startsWith("/bundles") },
];

function currentRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

function page(route) {
  const job = route.path.match(/^\/jobs\/(.+)$/);
  if (job) return html`<${Job} jobId=${decodeURIComponent(job[1])} />`;
  if (route.path === "/jobs") return html`<${Jobs} status=${route.params.get("status")} graphId=${route.params.get("graph_id")} />`;
  if (route.path === "/run") return html`<${Run} bundle=${route.params.get("bundle")} />`;
  if (route.path === "/bundles") return html`<${Bundles} />`;
  if (route.path === "/") return html`<${Overview} />`;
  return html`<p>There is no page ${route.path}. <a href="#/">Go to the overview</a>.</p>`;
}

function TokenPrompt({ refused, onDone }) {
  const input = useRef(null);
  useEffect(() => input.current && input.current.focus(), []);
  const submit = (event) => {
    event.preventDefault();
    setToken(input.current.value.trim());
    onDone();
  };
  return html`<div class="overlay">
    <form class="dialog" role="dialog" aria-modal="true" aria-labelledby="token-title" onSubmit=${submit}>
      <h2 id="token-title">API token</h2>
      <p>${refused ? "The server refused the token. Enter a valid one." : "This server needs a bearer token."}</p>
      <p class="muted">It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer.</p>
      <label for="token-input">Token</label>
      <input id="token-input" name="token" type="password" autocomplete="off" ref=${input} required />
      <div class="actions"><button type="submit">Use this token</button></div>
    </form>
  </div>`;
}

function App() {
  const [route, setRoute] = useState(currentRoute());
  const [prompt, setPrompt] = useState(null); // null, or {refused: bool}
  const [session, setSession] = useState(0); // bumped when a token is entered: pages load again
  useEffect(() => {
    const listener = () => setRoute(currentRoute());
    addEventListener("hashchange", listener);
    onUnauthorized((sentToken) => {
      setToken(null);
      setPrompt((shown) => ({ refused: sentToken || Boolean(shown && shown.refused) }));
    });
    return () => removeEventListener("hashchange", listener);
  }, []);
  useEffect(() => {
    const main = document.getElementById("main");
    if (main) main.focus({ preventScroll: true });
  }, [route.path]);
  const done = () => {
    setPrompt(null);
    setSession((n) => n + 1);
  };
  return html`
    <a class="skip" href="#main" onClick=${(e) => { e.preventDefault(); document.getElementById("main").focus(); }}>Skip to content</a>
    <header class="top">
      <a class="brand" href="#/">MirrorNeuron</a>
      <nav aria-label="Console">
        ${PAGES.map((p) => html`<a href=${p.href} aria-current=${p.match(route.path) ? "page" : null}>${p.label}</a>`)}
      </nav>
      <button type="button" class="link token-button" onClick=${() => setPrompt({ refused: false })}>
        ${token() ? "Change token" : "Set token"}
      </button>
    </header>
    <main id="main" tabindex="-1" key=${`${session}:${route.path}`}>${page(route)}</main>
    ${prompt && html`<${TokenPrompt} refused=${prompt.refused} onDone=${done} />`}
  `;
}

const root = document.getElementById("app");
root.textContent = ""; // the "Loading" line of index.html
render(html`<${App} />`, root);
