// The "matched regions" row of the explanation dialog: the top pairs of regions as numbered,
// colour-matched boxes on query and hit joined by lines, and hover/tap correspondence: pointing
// into a top pair's box lights up that pair's box on the other image; pointing anywhere else
// lights up the cell of the other image that the pointed cell matches (from /api/explain's
// `correspondence`, at the feature grid's resolution).
import { byId, el, loaded } from "./dom.js";

// As the CLI's panel (search/explain/overlays.py MATCH_COLOURS): Okabe-Ito, colour-blind friendly.
const COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#FFFFFF"];
const SVG = "http://www.w3.org/2000/svg";
const OTHER = { query: "hit", hit: "query" };

function colour(match) {
  return COLOURS[(match.rank - 1) % COLOURS.length];
}

function percentBox(node, [x0, y0, x1, y1], [width, height]) {
  node.style.left = `${(100 * x0) / width}%`;
  node.style.top = `${(100 * y0) / height}%`;
  node.style.width = `${(100 * (x1 - x0)) / width}%`;
  node.style.height = `${(100 * (y1 - y0)) / height}%`;
}

function cellBox(cell, [rows, columns], [width, height]) {
  const row = Math.floor(cell / columns);
  const column = cell % columns;
  return [(column * width) / columns, (row * height) / rows, ((column + 1) * width) / columns,
    ((row + 1) * height) / rows];
}

export function createMatches() {
  const row = byId("match-row");
  // Pairs that add to the similarity and pairs that take from it, each with its share of all the
  // evidence on that side (0-100 %), in the order they are drawn.
  const groups = { true: byId("match-for"), false: byId("match-against") };
  const links = row.querySelector(".match-links");
  const figures = Object.fromEntries(Array.from(row.querySelectorAll(".match-figure"))
    .map((figure) => [figure.dataset.side, figure]));
  let shown = null; // the explanation body on display

  function clear() {
    shown = null;
    for (const group of Object.values(groups)) {
      group.hidden = true;
      group.querySelector(".match-list").replaceChildren();
    }
    links.replaceChildren();
    for (const figure of Object.values(figures)) {
      figure.querySelector(".match-boxes").replaceChildren();
      figure.querySelector(".match-image").removeAttribute("src");
      for (const highlight of figure.querySelectorAll(".match-highlight")) highlight.hidden = true;
    }
  }

  function sizes(side) {
    return shown.correspondence[`${side}_size`];
  }

  function grid(side) {
    return shown.correspondence[`${side}_grid`];
  }

  function drawLinks() {
    links.replaceChildren();
    if (!shown) return;
    const origin = row.getBoundingClientRect();
    links.setAttribute("viewBox", `0 0 ${origin.width} ${origin.height}`);
    for (const match of shown.matches) {
      const [from, to] = ["query", "hit"].map((side) => figures[side]
        .querySelector(`.match-box[data-rank="${match.rank}"]`).getBoundingClientRect());
      if (!from.width || !to.width) continue;
      const line = document.createElementNS(SVG, "line");
      line.setAttribute("x1", from.left + from.width / 2 - origin.left);
      line.setAttribute("y1", from.top + from.height / 2 - origin.top);
      line.setAttribute("x2", to.left + to.width / 2 - origin.left);
      line.setAttribute("y2", to.top + to.height / 2 - origin.top);
      line.setAttribute("stroke", colour(match));
      line.dataset.rank = String(match.rank);
      links.append(line);
    }
  }

  function light(where, role, cells, box, rank) {
    const node = figures[where].querySelector(".match-highlight");
    node.hidden = false;
    node.dataset.cells = cells.join(",");
    node.dataset.role = role;
    if (rank) node.dataset.rank = String(rank);
    else delete node.dataset.rank;
    percentBox(node, box, sizes(where));
  }

  function highlight(side, cell) {
    const other = OTHER[side];
    const match = shown.matches.find((pair) => pair[`${side}_cells`].includes(cell));
    if (match) {
      lightPair(side, match);
      return;
    }
    const matched = shown.correspondence[`${side}_to_${other}`][cell];
    light(side, "source", [cell], cellBox(cell, grid(side), sizes(side)));
    light(other, "target", [matched], cellBox(matched, grid(other), sizes(other)));
  }

  // A top pair, from `side`: pointing into its box, or focusing the box from the keyboard.
  function lightPair(side, match) {
    if (!shown) return;
    const other = OTHER[side];
    light(side, "source", match[`${side}_cells`], match[`${side}_box`], match.rank);
    light(other, "target", match[`${other}_cells`], match[`${other}_box`], match.rank);
  }

  function unhighlight() {
    for (const figure of Object.values(figures)) figure.querySelector(".match-highlight").hidden = true;
  }

  function pointAt(side, event) {
    if (!shown) return;
    const image = figures[side].querySelector(".match-image");
    const rect = image.getBoundingClientRect();
    const x = (event.clientX - rect.left) / rect.width;
    const y = (event.clientY - rect.top) / rect.height;
    if (x < 0 || y < 0 || x >= 1 || y >= 1) return;
    const [rows, columns] = grid(side);
    highlight(side, Math.floor(y * rows) * columns + Math.floor(x * columns));
  }

  for (const [side, figure] of Object.entries(figures)) {
    const stack = figure.querySelector(".match-stack");
    stack.addEventListener("pointermove", (event) => pointAt(side, event));
    stack.addEventListener("pointerdown", (event) => pointAt(side, event)); // a tap on a touch screen
    stack.addEventListener("pointerleave", (event) => {
      if (event.pointerType === "mouse") unhighlight();
    });
  }

  async function show(body, images) {
    shown = body;
    // Colours go through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    for (const [supports, group] of Object.entries(groups)) {
      const members = body.matches.filter((match) => String(match.supports) === supports);
      const carried = members.reduce((sum, match) => sum + match.evidence_share, 0);
      const side = supports === "true" ? "for" : "against";
      group.hidden = members.length === 0;
      // Each pair's part of what the listed pairs carry (the list adds up to 100%); the tooltip
      // gives its part of all the evidence on that side, spread over every pair of cells.
      group.querySelector(".match-list").replaceChildren(...members.map((match) => {
        const swatch = el("span", { class: "match-swatch" });
        swatch.style.background = colour(match);
        const part = carried > 0 ? (100 * match.evidence_share) / carried : 100 / members.length;
        return el("li", {
          "data-rank": match.rank,
          title: `${(100 * match.evidence_share).toFixed(1)}% of all the evidence ${side} the match`,
        }, swatch, `${match.rank}: ${part.toFixed(0)}%`);
      }));
    }
    for (const side of ["query", "hit"]) {
      const figure = figures[side];
      const image = figure.querySelector(".match-image");
      image.src = images[side];
      figure.querySelector(".match-boxes").replaceChildren(...body.matches.map((match) => {
        const box = el("span", {
          class: "match-box", "data-rank": match.rank, tabindex: "0", role: "button",
          "aria-label": `Region ${match.rank} of the ${side}: shows the ${OTHER[side]} region it matches`,
        }, el("span", { text: match.rank }));
        box.addEventListener("focus", () => lightPair(side, match));
        box.addEventListener("blur", unhighlight);
        box.style.setProperty("--match-colour", colour(match));
        percentBox(box, match[`${side}_box`], sizes(side));
        return box;
      }));
    }
    try {
      await Promise.all(Object.values(figures).map((figure) => loaded(figure.querySelector(".match-image"))));
    } catch {
      return; // the map figures say when an image cannot be shown
    }
    if (shown === body) drawLinks();
  }

  new ResizeObserver(drawLinks).observe(row);
  return { clear, show };
}
