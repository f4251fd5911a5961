// The duplicates the header counts: each file with the same bytes as an indexed image, and which
// image that is (a link searches with it).
import * as api from "./api.js";
import { byId, el } from "./dom.js";

const LISTED = 200;

export function createDuplicates({ search }) {
  const panel = byId("duplicates");
  const list = byId("duplicates-list");
  byId("duplicates-close").addEventListener("click", () => {
    panel.hidden = true;
  });

  async function row(duplicate) {
    let original = null;
    try {
      original = duplicate.duplicate_of ? await api.image(duplicate.duplicate_of) : null;
    } catch {
      original = null; // removed since: the row still names the duplicate
    }
    const target = original ? original.path : `image ${duplicate.duplicate_of}`;
    return el("li", {},
      el("span", { class: "duplicate-path", text: duplicate.path }), " — same bytes as ",
      el("a", {
        href: `?id=${duplicate.duplicate_of}`, text: target,
        onclick: (event) => {
          event.preventDefault();
          search(duplicate.duplicate_of);
        },
      }));
  }

  return {
    async open() {
      panel.hidden = false;
      list.replaceChildren(el("li", { class: "muted", text: "Loading…" }));
      try {
        const body = await api.listImages(0, LISTED, "duplicate");
        list.replaceChildren(...await Promise.all(body.images.map(row)));
      } catch (error) {
        list.replaceChildren(el("li", { class: "muted", text: `The duplicates cannot be listed: ${error.message}` }));
      }
      panel.scrollIntoView({ behavior: "smooth", block: "start" });
    },
  };
}
