// The explanation dialog: query and hit side by side, their matched regions (matches.js), each
// with its factual and counterfactual map stacked over the image (CSS opacity from the slider),
// the verdict and the score.
import * as api from "./api.js";
import { byId, fileName, loaded } from "./dom.js";
import { createMatches } from "./matches.js";
import { matchPercent } from "./results.js";
import { explainError } from "./message.js";

const OPPOSITE = { similar: "not similar", dissimilar: "similar" };
// An empty map is a finding, not a failure: nothing on that side pulls that way. "Empty" as
// in the CLI's panel (search/explain/overlays.py EMPTY_MAP_PEAK): a peak below 1e-3 of the scale.
const EMPTY_MAP_PEAK = 1e-3;
const EMPTY_NOTE = {
  factual: "Empty map: no region here supports the verdict.",
  counterfactual: "Empty map: no region here argues against the verdict.",
};

function isEmptyMap(grid) {
  return Array.isArray(grid) && grid.every((row) => row.every((value) => value < EMPTY_MAP_PEAK));
}

// One plain sentence: what the verdict is, the match strength that decided it, and what "similar"
// means for this collection (the rule's own words). No scores next to cuts on another scale.
export function verdictSentence(body) {
  const percent = matchPercent(body.match);
  const called = body.verdict === "similar" ? "similar" : "not similar";
  const meaning = (body.verdict_rule || {}).description;
  return `whysim calls these two images ${called}: they match at ${percent}%, and 50% or more means similar.`
    + (meaning ? ` ${meaning.charAt(0).toUpperCase()}${meaning.slice(1)}.` : "");
}

export function createExplainer() {
  const dialog = byId("explain-dialog");
  const badge = byId("verdict-badge");
  const score = byId("verdict-score");
  const text = byId("verdict-text");
  const problem = byId("explain-error");
  const slider = byId("opacity-slider");
  const output = byId("opacity-value");
  const figures = Array.from(dialog.querySelectorAll(".map-figure"));
  const matches = createMatches();
  let current = 0; // the explanation being shown; answers for older ones are dropped

  function setOpacity() {
    dialog.style.setProperty("--overlay-opacity", String(slider.value / 100));
    output.textContent = `${slider.value}%`;
  }

  function reset(hit, queryLabel) {
    badge.textContent = "computing…";
    badge.dataset.verdict = "";
    score.textContent = "";
    text.textContent = "Computing the Grad-CAM maps of the query and the hit…";
    problem.hidden = true;
    byId("query-column").textContent = `Query: ${queryLabel}`;
    byId("hit-column").textContent = `Hit #${hit.rank}: ${fileName(hit.path)}`;
    dialog.querySelector('.match-figure[data-side="query"] .match-name').textContent = queryLabel;
    dialog.querySelector('.match-figure[data-side="hit"] .match-name').textContent = `#${hit.rank} ${fileName(hit.path)}`;
    byId("factual-sentence").textContent = "";
    byId("counterfactual-sentence").textContent = "";
    matches.clear();
    for (const figure of figures) {
      figure.querySelector(".map-note").hidden = true;
      figure.classList.add("is-loading");
      figure.classList.remove("is-broken");
      for (const image of figure.querySelectorAll("img")) image.removeAttribute("src");
    }
  }

  async function showFigure(figure, side, raw) {
    const [base, overlay] = figure.querySelectorAll("img");
    const note = figure.querySelector(".map-note");
    const kind = figure.dataset.kind;
    note.textContent = EMPTY_NOTE[kind];
    note.hidden = !isEmptyMap(raw?.[kind]);
    base.width = overlay.width = side.width;
    base.height = overlay.height = side.height;
    base.src = side.image_url;
    overlay.src = api.heatmapUrl(side[`${kind}_url`]);
    try {
      await Promise.all([loaded(base), loaded(overlay)]);
    } catch {
      figure.classList.add("is-broken");
    } finally {
      figure.classList.remove("is-loading");
    }
  }

  function fill(body) {
    badge.textContent = body.verdict === "similar" ? "similar" : "not similar";
    badge.dataset.verdict = body.verdict;
    score.textContent = `${matchPercent(body.match)}% match`;
    score.title = `cosine similarity ${body.similarity.toFixed(3)}`;
    text.textContent = verdictSentence(body);
    const called = body.verdict === "similar" ? "similar" : "not similar";
    byId("factual-sentence").textContent = `Regions that support the verdict (${called}).`;
    byId("counterfactual-sentence").textContent =
      `Regions that argue against it (they point towards ${OPPOSITE[body.verdict] || "the other verdict"}).`;
    for (const figure of figures) showFigure(figure, body[figure.dataset.side], body.raw?.[figure.dataset.side]);
    matches.show(body, { query: body.query.image_url, hit: body.hit.image_url });
  }

  // queryLabel: how the page names the query ("your image", a file name).
  async function open(hit, queryLabel) {
    const mine = ++current;
    reset(hit, queryLabel);
    if (!dialog.open) dialog.showModal();
    try {
      const body = await api.explain(hit.explain_url);
      if (mine === current) fill(body);
    } catch (error) {
      if (mine !== current) return;
      const [title, sentence] = explainError(error);
      badge.textContent = "no explanation";
      text.textContent = "";
      problem.textContent = `${title}: ${sentence}`;
      problem.hidden = false;
      for (const figure of figures) figure.classList.replace("is-loading", "is-broken");
    }
  }

  slider.addEventListener("input", setOpacity);
  byId("explain-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // the backdrop: the content fills the dialog's box
  });
  dialog.addEventListener("close", () => {
    current += 1;
  });
  setOpacity();
  return { open };
}
