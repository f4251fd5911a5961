// The page's one message area (role="alert"): errors and empty states, in words a person can act on.
import { ApiError } from "./api.js";
import { byId } from "./dom.js";

// text: a string, or a list of strings and nodes (e.g. a <code> command).
export function showMessage(title, text, tone = "error") {
  const box = byId("message");
  box.dataset.tone = tone;
  box.querySelector(".message-title").textContent = title;
  box.querySelector(".message-text").replaceChildren(...(Array.isArray(text) ? text : [text]));
  box.hidden = false;
}

export function hideMessage() {
  byId("message").hidden = true;
}

function sentence(text) {
  const trimmed = String(text).trim();
  if (!trimmed) return "";
  const capital = trimmed[0].toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

// 429 (this browser asked too often) and a busy 503 (the model's queue is full) say how long to wait.
function waitSentence(error) {
  const seconds = error.retryAfter ?? 1;
  const reason = error.status === 429 ? "This browser has sent too many of these requests for now."
    : "The server is working on other people's requests.";
  return `${reason} Try again in ${seconds} ${seconds === 1 ? "second" : "seconds"}.`;
}

// A title and a sentence for a failed request; `what` names the query (e.g. a file name).
export function explainError(error, what) {
  if (!(error instanceof ApiError)) return ["Something went wrong in the page", sentence(error.message || error)];
  const text = sentence(error.message);
  if (error.status === 0) return ["The server cannot be reached", text];
  if (error.status === 400) return [what ? `“${what}” cannot be used as a query` : "The request was not accepted", text];
  if (error.status === 404) return ["Not found", text];
  if (error.status === 413) return [what ? `“${what}” is too large` : "Too large", text];
  if (error.status === 429) return ["Please wait a moment", waitSentence(error)];
  if (error.status === 503 && error.retryAfter !== null) return ["The server is busy", waitSentence(error)];
  if (error.status === 503) return ["The index is not ready", text];
  if (error.status >= 500) {
    return ["The server ran into an error", `${text} Try again; if it keeps happening, the server's log says why.`];
  }
  return [`The request failed (HTTP ${error.status})`, text];
}

export function showError(error, what) {
  const [title, text] = explainError(error, what);
  showMessage(title, text, "error");
}
