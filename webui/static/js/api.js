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

export function listImages(offset, limit) {
  return call(`api/images?status=indexed&offset=${offset}&limit=${limit}`);
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
