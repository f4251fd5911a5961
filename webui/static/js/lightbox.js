// A larger view of a result without leaving the page: the full image, its name, size and
// dimensions; ← and → (or the buttons) step through the results shown, Esc closes.
import { byId } from "./dom.js";
import { describeFile } from "./filesize.js";

export function createLightbox() {
  const dialog = byId("lightbox");
  const image = byId("lightbox-image");
  let hits = () => [];
  let index = 0;

  function show(at) {
    const all = hits();
    if (!all.length) return;
    index = (at + all.length) % all.length;
    const hit = all[index];
    image.src = hit.image_url;
    image.alt = `Result ${hit.rank}: ${hit.path}`;
    byId("lightbox-name").textContent = `#${hit.rank} ${hit.path}`;
    byId("lightbox-meta").textContent = [hit.label, describeFile(hit)].filter(Boolean).join(" · ");
    byId("lightbox-open").href = hit.image_url;
  }

  byId("lightbox-prev").addEventListener("click", () => show(index - 1));
  byId("lightbox-next").addEventListener("click", () => show(index + 1));
  byId("lightbox-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("keydown", (event) => {
    if (event.key === "ArrowLeft") show(index - 1);
    else if (event.key === "ArrowRight") show(index + 1);
    else return;
    event.preventDefault();
  });
  dialog.addEventListener("close", () => {
    const hit = hits()[index];
    if (hit) document.querySelector(`#hits .hit[data-id="${hit.id}"] .thumb`)?.focus();
  });

  return {
    // listHits: the results on the page, in order; hit: the one to show first.
    open(listHits, hit) {
      hits = listHits;
      show(Math.max(0, hits().findIndex((shown) => shown.id === hit.id)));
      if (!dialog.open) dialog.showModal();
    },
  };
}
