// The job's graph: the manifest's agents and edges laid out as a DAG by dagre, drawn as SVG, each
// agent coloured by its live status with its processed and mailbox counts.
import { useMemo } from "preact/hooks";
import dagre from "dagre";
import { html } from "./html.js";

const NODE_WIDTH = 176;
const NODE_HEIGHT = 58;
const CHAR_WIDTH = 6.6; // edge labels are 11px monospace

function layout(manifest) {
  const graph = new dagre.graphlib.Graph({ multigraph: true });
  graph.setGraph({ rankdir: "LR", nodesep: 18, ranksep: 70, edgesep: 12, marginx: 12, marginy: 12 });
  for (const node of manifest.nodes) graph.setNode(node.node_id, { width: NODE_WIDTH, height: NODE_HEIGHT });
  manifest.edges.forEach((edge, index) => {
    const label = edge.message_type;
    graph.setEdge(edge.from_node, edge.to_node,
      { label, width: label.length * CHAR_WIDTH + 8, height: 14, labelpos: "c", edge }, `e${index}`);
  });
  dagre.layout(graph);
  const size = graph.graph();
  return {
    width: size.width,
    height: size.height,
    nodes: graph.nodes().map((id) => ({ id, ...graph.node(id) })),
    edges: graph.edges().map((e) => graph.edge(e)),
  };
}

function path(points) {
  return points.map((p, i) => `${i ? "L" : "M"}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" ");
}

export function JobGraph({ manifest, agents }) {
  const drawn = useMemo(() => layout(manifest), [manifest]);
  const byId = Object.fromEntries((agents || []).map((a) => [a.agent_id, a]));
  const types = Object.fromEntries(manifest.nodes.map((n) => [n.node_id, n.agent_type]));
  return html`<div class="graph-wrap">
    <svg class="graph" role="img" aria-labelledby="graph-title" width=${drawn.width} height=${drawn.height}
      viewBox=${`0 0 ${drawn.width} ${drawn.height}`}>
      <title id="graph-title">Graph of ${manifest.graph_id}: ${manifest.nodes.length} agents, ${manifest.edges.length} edges</title>
      <defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M0,0 L10,5 L0,10 z" class="arrow-head" /></marker></defs>
      ${drawn.edges.map(({ points, x, y, label, edge }) => html`<g class="edge" data-from=${edge.from_node} data-to=${edge.to_node} data-type=${edge.message_type}>
        <path d=${path(points)} marker-end="url(#arrow)" />
        <text x=${x} y=${y + 4} text-anchor="middle">${label}</text>
      </g>`)}
      ${drawn.nodes.map(({ id, x, y, width, height }) => {
        const agent = byId[id];
        const status = agent ? agent.status : "unknown";
        return html`<g class=${`agent agent-${status}`} data-agent-id=${id} data-status=${status}
            transform=${`translate(${x - width / 2},${y - height / 2})`}>
          <title>${id}: ${status}${agent && agent.last_error ? ` — ${agent.last_error}` : ""}</title>
          <rect width=${width} height=${height} rx="8" />
          <text x="10" y="19" class="agent-name">${id.length > 24 ? `${id.slice(0, 23)}…` : id}</text>
          <text x="10" y="34" class="agent-meta">${types[id]} · ${status}</text>
          <text x="10" y="49" class="agent-meta" data-counts>${agent ? `processed ${agent.processed_messages} · mailbox ${agent.mailbox_depth}` : ""}</text>
        </g>`;
      })}
    </svg>
  </div>`;
}
