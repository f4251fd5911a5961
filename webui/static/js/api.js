// The JSON API under /api/: every failure becomes an ApiError with the server's own message.

export class ApiError extends Error {
  constructor(status, message, retryAfter = null) {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.retryAfter = retryAfter; // seconds the server asks to wait (429, a busy 503), or null
  }
}

function retryAfterSeconds(response) {
  const seconds = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

const UNREACHABLE = "The whysim server does not answer. Is `whysim serve` still running?";

async function call(url, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: { Accept: "application/json", ...options.headers } });
  } catch {
    throw new ApiError(0, UNREACHABLE);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null; // not JSON: a proxy's page, a crash before Flask answered...
  }
  if (!response.ok) {
    const message = body && typeof body.error === "string" ? body.error : `HTTP ${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, retryAfterSeconds(response));
  }
  if (body === null) throw new ApiError(response.status, "the server's answer could not be read");
  return body;
}

function postJson(url, payload) {
  return call(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) });
}

export function stats() {
  return call("api/stats");
}

export function listImages(offset, limit, status = "indexed") {
  return call(`api/images?status=${status}&offset=${offset}&limit=${limit}`);
}

export function image(id) {
  return call(`api/images/${id}`);
}

// What a link dropped on the page searches with: an image of this server's own collection
// (its file, thumbnail or details URL, or a page URL ?id=) or one of its uploaded queries. Any
// other link is null: the page never fetches a URL it was given.
export function refFromLink(link) {
  let url;
  try {
    url = new URL(link, window.location.href);
  } catch {
    return null;
  }
  if (url.origin !== window.location.origin) return null;
  const image = url.pathname.match(/\/api\/images\/(\d+)(?:\/(?:thumbnail|file))?$/);
  if (image) return { image_id: Number(image[1]) };
  const upload = url.pathname.match(/\/api\/queries\/([0-9a-f]{64})\/image$/i);
  if (upload) return { query: upload[1].toLowerCase() };
  const id = Number(url.searchParams.get("id"));
  if (url.pathname === window.location.pathname && Number.isInteger(id) && id > 0) return { image_id: id };
  const digest = url.searchParams.get("q") || "";
  if (url.pathname === window.location.pathname && /^[0-9a-f]{64}$/i.test(digest)) return { query: digest.toLowerCase() };
  return null;
}

export function searchUpload(file, k) {
  const form = new FormData();
  form.append("image", file, file.name || "pasted image");
  form.append("k", String(k));
  return call("api/search", { method: "POST", body: form });
}

// ref: {image_id: <number>} or {query: <digest of an earlier upload>}
export function searchByRef(ref, k, offset = 0) {
  return postJson("api/search", { ...ref, k, offset });
}

export function explain(explainUrl) {
  return call(explainUrl);
}

// The overlay's colour map alone, for stacking over the image under an opacity slider.
export function heatmapUrl(overlayUrl) {
  const url = new URL(overlayUrl, window.location.href);
  url.searchParams.set("style", "heatmap");
  return url.pathname + url.search;
}
