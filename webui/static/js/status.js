// The status line in the header: collection size, model and index type, from /api/stats.
import * as api from "./api.js";
import { byId, formatCount, plural } from "./dom.js";

function describe(stats) {
  const counts = stats.status || {};
  const parts = [plural(counts.indexed || 0, "image") + " indexed"];
  if (counts.duplicate) parts.push(plural(counts.duplicate, "duplicate"));
  if (counts.failed) parts.push(`${formatCount(counts.failed)} unreadable`);
  parts.push(`model ${stats.model}`, `${stats.index_type} index`);
  return parts.join(" · ");
}

function details(stats) {
  const lines = [`${formatCount(stats.vectors)} vectors`, `data directory ${stats.data_dir}`];
  for (const root of stats.collections || []) lines.push(`collection ${root}`);
  return lines.join("\n");
}

// Shows the status; resolves to the stats (ready or not), or to null when the server cannot say.
export async function loadStatus() {
  const line = byId("status");
  const text = line.querySelector(".status-text");
  try {
    const stats = await api.stats();
    line.dataset.state = stats.ready ? "ready" : "empty";
    text.textContent = stats.ready ? describe(stats) : "No index yet";
    line.title = details(stats);
    return stats;
  } catch (error) {
    line.dataset.state = "error";
    text.textContent = "Status unavailable";
    line.title = error.message;
    return null;
  }
}
