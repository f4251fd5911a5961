// The browsable collection: pages of indexed images; choosing one searches with it.
import * as api from "./api.js";
import { byId, el, fileName, formatCount } from "./dom.js";
import { showError } from "./message.js";

export const GALLERY_PAGE_SIZE = 24;

export function createGallery({ onPick, total }) {
  const section = byId("gallery");
  const grid = byId("gallery-grid");
  const range = byId("gallery-range");
  const prev = byId("gallery-prev");
  const next = byId("gallery-next");
  const toggle = byId("browse-button");
  let offset = 0;
  let nextOffset = null;
  let loadedOnce = false;

  function item(image) {
    const name = fileName(image.path);
    return el("li", {},
      el("button", { class: "gallery-item", type: "button", title: image.path, "aria-label": `Search with ${name}`,
        onclick: () => onPick(image) },
        el("img", { src: image.thumbnail_url, alt: `collection image: ${name}`, loading: "lazy", decoding: "async" }),
        el("span", { class: "gallery-caption", text: image.label || name })));
  }

  async function load(at) {
    grid.setAttribute("aria-busy", "true");
    prev.disabled = next.disabled = true;
    try {
      const page = await api.listImages(at, GALLERY_PAGE_SIZE);
      offset = page.offset;
      nextOffset = page.next_offset;
      grid.replaceChildren(...page.images.map(item));
      const last = offset + page.images.length;
      const of = total() ? ` of ${formatCount(total())}` : "";
      range.textContent = page.images.length ? `Images ${formatCount(offset + 1)}–${formatCount(last)}${of}` : "No images";
      prev.disabled = offset === 0;
      next.disabled = nextOffset === null;
      loadedOnce = true;
    } catch (error) {
      showError(error);
    } finally {
      grid.setAttribute("aria-busy", "false");
    }
  }

  function setOpen(open) {
    section.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    toggle.textContent = open ? "Hide the collection" : "Pick from the collection";
    if (open && !loadedOnce) load(0);
  }

  toggle.addEventListener("click", () => setOpen(section.hidden));
  prev.addEventListener("click", () => load(Math.max(0, offset - GALLERY_PAGE_SIZE)));
  next.addEventListener("click", () => nextOffset !== null && load(nextOffset));
  return { close: () => setOpen(false) };
}
