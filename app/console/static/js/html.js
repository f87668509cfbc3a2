// `html` tagged templates render Preact elements without a build step (htm).
import { h } from "preact";
import htm from "htm";

export const html = htm.bind(h);
