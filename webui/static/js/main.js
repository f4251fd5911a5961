// The search page: wires the query inputs (file, drop, paste, collection), the results, the
// explanation dialog and the URL (?q=<upload digest> or ?id=<image id>, with &k=).
import * as api from "./api.js";
import { byId, el, fileName } from "./dom.js";
import { createExplainer } from "./explain.js";
import { createDuplicates } from "./duplicates.js";
import { createGallery } from "./gallery.js";
import { createLightbox } from "./lightbox.js";
import { hideMessage, showError, showMessage } from "./message.js";
import { createResults } from "./results.js";
import { loadStatus } from "./status.js";

const kSelect = byId("k-select");
const fileInput = byId("file-input");
const dropzone = byId("dropzone");
const browse = byId("browse-button");

const search = {
  ref: null, // {image_id} or {query: digest}: what "Load more" and a new k search with
  label: "", // how the query is named in the explanation
  nextOffset: null,
  uploadName: null,
  serial: 0, // answers of superseded searches are dropped
};
let stats = null;

const explainer = createExplainer();
const lightbox = createLightbox();
const results = createResults({
  explain: (hit) => explainer.open(hit, search.label),
  moreLikeThis: (hit) => searchByRef({ image_id: hit.id }, { push: true }),
  view: (hit) => lightbox.open(() => results.hits(), hit),
});
const duplicates = createDuplicates({ search: (id) => searchByRef({ image_id: id }, { push: true }) });
const gallery = createGallery({
  total: () => stats?.status?.indexed ?? 0,
  onPick: (image) => {
    gallery.close();
    searchByRef({ image_id: image.id }, { push: true });
  },
});

function k() {
  return Number(kSelect.value);
}

function rememberInUrl(ref, push) {
  const params = new URLSearchParams();
  if (ref.image_id !== undefined) params.set("id", String(ref.image_id));
  else params.set("q", ref.query);
  params.set("k", String(k()));
  const url = `${window.location.pathname}?${params}`;
  if (url === `${window.location.pathname}${window.location.search}`) return;
  if (push) window.history.pushState(null, "", url);
  else window.history.replaceState(null, "", url);
}

function started(preview) {
  hideMessage();
  byId("welcome").hidden = true;
  results.loading(k(), preview);
  return ++search.serial;
}

function finished(body, { uploadName, push }) {
  const query = body.query;
  search.ref = query.kind === "upload" ? { query: query.key } : { image_id: query.id };
  search.label = query.kind === "upload" ? (uploadName ? `${uploadName} (uploaded)` : "your upload") : fileName(query.path);
  search.uploadName = uploadName;
  search.nextOffset = body.next_offset;
  results.show(body, { append: false, uploadName });
  rememberInUrl(search.ref, push);
  byId("results").scrollIntoView({ behavior: "smooth", block: "start" });
}

// The error shows above the results of the previous search, which stay (none: the results area hides).
function failed(error, what) {
  if (!results.restore()) results.hide();
  showError(error, what);
}

async function searchByUpload(file) {
  const preview = URL.createObjectURL(file);
  const serial = started(preview);
  const name = file.name || "pasted image";
  try {
    const body = await api.searchUpload(file, k());
    if (serial === search.serial) finished(body, { uploadName: name, push: true });
  } catch (error) {
    if (serial === search.serial) failed(error, name);
  } finally {
    setTimeout(() => URL.revokeObjectURL(preview), 10_000);
  }
}

async function searchByRef(ref, { push }) {
  const serial = started(null);
  try {
    const body = await api.searchByRef(ref, k());
    if (serial === search.serial) finished(body, { uploadName: ref.query ? search.uploadName : null, push });
  } catch (error) {
    if (serial === search.serial) failed(error);
  }
}

async function loadMore() {
  if (!search.ref || search.nextOffset === null) return;
  const serial = search.serial;
  results.loadingMore();
  try {
    const body = await api.searchByRef(search.ref, k(), search.nextOffset);
    if (serial !== search.serial) return;
    search.nextOffset = body.next_offset;
    results.show(body, { append: true });
  } catch (error) {
    results.moreFailed();
    showError(error);
  }
}

function firstImageFile(items) {
  for (const item of items || []) {
    const file = item instanceof File ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file) return file;
  }
  return null;
}

function useFile(file) {
  if (!file) {
    showMessage("Nothing to search with", "Drop or paste an image file.", "info");
    return;
  }
  searchByUpload(file);
}

// A drop: an image file, or a link to one of this collection's images (a result dragged here, or
// from another tab of this page), searched by its id; never a fetch of the dropped URL.
function useDrop(transfer) {
  const file = firstImageFile(transfer.files);
  if (file) {
    useFile(file);
    return;
  }
  const link = (transfer.getData("text/uri-list") || transfer.getData("text/plain") || "")
    .split(/\r?\n/).find((line) => line && !line.startsWith("#"));
  if (!link) {
    useFile(null);
    return;
  }
  const ref = api.refFromLink(link.trim());
  if (ref) searchByRef(ref, { push: true });
  else {
    showMessage("Only this collection's images can be dropped as links",
      "Drag a result or a collection image, or drop the image file itself (save it first).", "info");
  }
}

function searchFromUrl() {
  const params = new URLSearchParams(window.location.search);
  const wanted = Number(params.get("k"));
  if (Array.from(kSelect.options).some((option) => Number(option.value) === wanted)) kSelect.value = String(wanted);
  const id = Number(params.get("id"));
  if (Number.isInteger(id) && id > 0) searchByRef({ image_id: id }, { push: false });
  else if (/^[0-9a-f]{64}$/i.test(params.get("q") || "")) searchByRef({ query: params.get("q") }, { push: false });
  else showWelcome();
}

function showWelcome() {
  search.serial += 1;
  search.ref = null;
  results.hide();
  hideMessage();
  byId("welcome").hidden = false;
}

function setEnabled(enabled) {
  fileInput.disabled = !enabled;
  browse.disabled = !enabled;
  dropzone.classList.toggle("is-disabled", !enabled);
}

function wireInputs() {
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    fileInput.value = ""; // choosing the same file again still searches
    if (file) useFile(file);
  });
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    event.preventDefault();
    dragDepth += 1;
    dropzone.classList.add("is-dragging");
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) dropzone.classList.remove("is-dragging");
  });
  document.addEventListener("dragover", (event) => event.preventDefault()); // allows dropping anywhere
  document.addEventListener("drop", (event) => {
    event.preventDefault(); // never navigate away to the dropped file
    dragDepth = 0;
    dropzone.classList.remove("is-dragging");
    if (!fileInput.disabled) useDrop(event.dataTransfer);
  });
  document.addEventListener("paste", (event) => {
    const file = firstImageFile(event.clipboardData?.items);
    if (file && !fileInput.disabled) useFile(file);
  });
  kSelect.addEventListener("change", () => search.ref && searchByRef(search.ref, { push: false }));
  byId("more-button").addEventListener("click", loadMore);
  window.addEventListener("popstate", searchFromUrl);
}

async function start() {
  wireInputs();
  stats = await loadStatus(() => duplicates.open());
  if (stats && !stats.ready) {
    setEnabled(false);
    if (stats.status?.indexed) {
      showMessage("The index is not ready", "It is being rebuilt or cannot be read. Reload this page in a moment.");
    } else {
      showMessage("No images are indexed yet", [
        "Index a folder first, for example ",
        el("code", { text: `whysim index PHOTOS/${stats.data_dir ? ` --data-dir ${stats.data_dir}` : ""}` }),
        ", then reload this page.",
      ], "info");
    }
    return;
  }
  if (stats === null) {
    showMessage("The server cannot say what it holds", "Its status is unavailable; searches may fail.");
  }
  searchFromUrl();
}

start();
