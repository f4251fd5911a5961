// The status line in the header, in a user's words: how many images, how they are searched, and
// (a button) which files are duplicates; the model and index details are on hover (and in
// `whysim stats`).
import * as api from "./api.js";
import { byId, el, formatCount, plural } from "./dom.js";

const SEARCH_WORDS = { flat: "exact search", hnsw: "fast approximate search", ivfpq: "compact approximate search" };

function modelWords(card) {
  if (!card) return "";
  if (card.weights === "imagenet") return "general-purpose photo model";
  if (card.weights === "none") return "untrained model";
  return "model trained for this collection";
}

function describe(stats) {
  const counts = stats.status || {};
  const parts = [plural(counts.indexed || 0, "image")];
  if (counts.failed) parts.push(`${formatCount(counts.failed)} unreadable`);
  parts.push(modelWords(stats.model_card), SEARCH_WORDS[stats.index_type] || "");
  return parts.filter(Boolean).join(" · ");
}

function details(stats) {
  const lines = [`model ${stats.model}`, `${stats.index_type} index, ${formatCount(stats.vectors)} vectors`,
    stats.data_dir ? `data directory ${stats.data_dir}` : ""].filter(Boolean);
  for (const root of stats.collections || []) lines.push(`collection ${root}`);
  return lines.join("\n");
}

// Shows the status; resolves to the stats (ready or not), or to null when the server cannot say.
// onDuplicates: called when the duplicates count is clicked.
export async function loadStatus(onDuplicates) {
  const line = byId("status");
  const text = line.querySelector(".status-text");
  try {
    const stats = await api.stats();
    line.dataset.state = stats.ready ? "ready" : "empty";
    text.textContent = stats.ready ? describe(stats) : "No index yet";
    line.title = details(stats);
    const duplicates = stats.status?.duplicate || 0;
    if (stats.ready && duplicates) {
      text.append(" · ", el("button", {
        id: "duplicates-button", class: "link-button", type: "button", text: plural(duplicates, "duplicate"),
        "aria-controls": "duplicates", onclick: onDuplicates,
      }));
    }
    return stats;
  } catch (error) {
    line.dataset.state = "error";
    text.textContent = "Status unavailable";
    line.title = error.message;
    return null;
  }
}
