// The results: what the query was, and a ranked grid of hits with their scores and actions.
import { byId, el, fileName, plural } from "./dom.js";
import { describeFile } from "./filesize.js";

const SKELETONS_MAX = 12;

// The match strength, as a whole percentage rounded down (as whysim.indexer.verdicts.match_percent):
// 50% and up is always "similar".
export function matchPercent(match) {
  return Math.floor(100 * match);
}

function matchBar(match) {
  const bar = el("span", { class: "score-fill" });
  bar.style.width = `${(Math.max(0, Math.min(1, match)) * 100).toFixed(1)}%`;
  return el("span", {
    class: "score-bar", role: "meter", "aria-label": "match strength", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(matchPercent(match)),
  }, bar, el("span", { class: "score-mid", "aria-hidden": "true" }));
}

function scoreRow(hit) {
  const details = `cosine similarity ${hit.score.toFixed(3)}`;
  if (hit.match === null || hit.match === undefined) {
    return el("div", { class: "score-row" }, el("span", { class: "score-value", text: hit.score.toFixed(3), title: details }));
  }
  return el("div", { class: "score-row", title: `Match strength: how strongly this result matches the query, on the `
      + `same scale for every collection (50% and up: similar). ${details}.` },
    el("span", { class: "score-value", text: `${matchPercent(hit.match)}% match` }),
    matchBar(hit.match));
}

function hitCard(hit, actions) {
  const name = fileName(hit.path);
  const image = el("img", {
    src: hit.thumbnail_url, alt: `Result ${hit.rank}: ${name}${hit.label ? ` (${hit.label})` : ""}`,
    loading: "lazy", decoding: "async",
  });
  image.addEventListener("error", () => image.closest(".thumb").classList.add("is-broken"), { once: true });
  return el("li", { class: "hit", "data-id": hit.id, "data-rank": hit.rank },
    el("a", {
      class: "thumb", href: hit.image_url, target: "_blank", rel: "noopener",
      title: "View larger (drag it onto the drop area to search with it)",
      onclick: (event) => {
        if (event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
        event.preventDefault(); // a plain click views it here; a modified click still opens a tab
        actions.view(hit);
      },
    }, image, el("span", { class: "thumb-fallback", text: "preview unavailable" })),
    el("span", { class: "rank", text: `#${hit.rank}` }),
    el("div", { class: "hit-body" },
      scoreRow(hit),
      hit.verdict ? el("p", {
        class: "hit-verdict", "data-verdict": hit.verdict, text: hit.verdict === "similar" ? "similar" : "not similar",
      }) : null,
      el("p", { class: "hit-name", title: hit.path, text: name }),
      hit.label ? el("p", { class: "chip", text: hit.label }) : el("p", { class: "chip chip-empty", text: "no label" }),
      el("p", { class: "hit-file muted", text: describeFile(hit) }),
      el("div", { class: "hit-actions" },
        el("button", { class: "button button-small button-primary", type: "button", text: "Explain",
          "aria-label": `Explain result ${hit.rank}, ${name}`, onclick: () => actions.explain(hit) }),
        el("button", { class: "button button-small", type: "button", text: "More like this",
          "aria-label": `More like this: ${name}`, onclick: () => actions.moreLikeThis(hit) }))));
}

// Arrow keys move between the results' thumbnails: left and right in reading order, up and
// down to the result above or below in the grid.
function stepFocus(grid, event) {
  const cards = Array.from(grid.querySelectorAll(".hit:not(.skeleton)"));
  const at = cards.indexOf(event.target.closest(".hit"));
  if (at < 0) return;
  const columns = Math.max(1, cards.filter((card) => card.offsetTop === cards[0].offsetTop).length);
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[event.key];
  if (step === undefined) return;
  const target = cards[at + step];
  event.preventDefault();
  target?.querySelector(".thumb").focus();
}

export function createResults(actions) {
  const section = byId("results");
  const grid = byId("hits");
  const more = byId("more-button");
  const endNote = byId("end-note");
  const queryImage = byId("query-image");
  const heading = byId("results-heading");
  const meta = byId("query-meta");
  const counter = byId("results-count");

  let hits = []; // the hits shown, in order
  let previous = null; // the page before a search started: put back if that search fails

  function count() {
    return grid.querySelectorAll(".hit").length;
  }

  grid.addEventListener("keydown", (event) => stepFocus(grid, event));

  return {
    hits: () => hits,

    // The results from before the search that just failed, as they were (false when there were none).
    restore() {
      if (!previous) return false;
      grid.replaceChildren(...previous.cards);
      [heading.textContent, meta.textContent, counter.textContent] = previous.texts;
      [queryImage.src, queryImage.alt] = previous.image;
      more.hidden = previous.moreHidden;
      endNote.hidden = previous.endHidden;
      hits = previous.hits;
      grid.setAttribute("aria-busy", "false");
      section.hidden = false;
      previous = null;
      return true;
    },

    // Placeholders while a new search runs; `preview` shows the query at once (an object URL).
    loading(k, preview) {
      const shown = !section.hidden && grid.querySelector(".hit:not(.skeleton)");
      previous = shown ? {
        cards: Array.from(grid.children), texts: [heading.textContent, meta.textContent, counter.textContent],
        image: [queryImage.src, queryImage.alt], moreHidden: more.hidden, endHidden: endNote.hidden, hits,
      } : null;
      section.hidden = false;
      grid.setAttribute("aria-busy", "true");
      grid.replaceChildren(...Array.from({ length: Math.min(k, SKELETONS_MAX) }, () => el("li", { class: "hit skeleton" })));
      more.hidden = true;
      endNote.hidden = true;
      heading.textContent = "Searching…";
      meta.textContent = "";
      counter.textContent = "";
      if (preview) {
        queryImage.src = preview;
        queryImage.alt = "query: the image being searched for";
      }
    },

    hide() {
      previous = null;
      section.hidden = true;
      grid.setAttribute("aria-busy", "false");
    },

    // A new first page (append false) or the next one.
    show(body, { append, uploadName }) {
      const query = body.query;
      if (!append) {
        if (query.kind === "upload") {
          queryImage.src = query.image_url;
          queryImage.alt = `query: ${uploadName ? `your upload ${uploadName}` : "your uploaded image"}`;
          heading.textContent = "Most similar to your image";
          meta.textContent = [uploadName, `${query.width} × ${query.height} px`, "uploaded"].filter(Boolean).join(" · ");
        } else {
          const name = fileName(query.path);
          queryImage.src = query.thumbnail_url;
          queryImage.alt = `query: ${name}`;
          heading.textContent = `More like ${name}`;
          meta.textContent = [query.label, query.path, query.width && `${query.width} × ${query.height} px`]
            .filter(Boolean).join(" · ");
        }
        grid.replaceChildren();
        hits = [];
        previous = null;
      }
      hits = [...hits, ...body.hits];
      grid.append(...body.hits.map((hit) => hitCard(hit, actions)));
      grid.setAttribute("aria-busy", "false");
      section.hidden = false;
      more.hidden = body.next_offset === null;
      more.disabled = false;
      more.textContent = "Load more";
      const shown = count();
      counter.textContent = shown ? `${plural(shown, "result")}, best first` : "";
      endNote.hidden = body.next_offset !== null;
      endNote.textContent = shown === 0 ? "No other image in the collection to compare with."
        : `All ${plural(shown, "result")} shown, ranked by cosine similarity.`;
      const rule = byId("verdict-rule");
      if (rule && body.verdict_rule) rule.textContent = `Verdicts: ${body.verdict_rule.description}.`;
    },

    loadingMore() {
      more.disabled = true;
      more.textContent = "Loading…";
    },

    moreFailed() {
      more.disabled = false;
      more.textContent = "Load more";
    },
  };
}
