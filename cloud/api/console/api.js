// The console's calls to /v1/console/*: the session cookie goes by itself (same origin, HttpOnly);
// the CSRF token, learnt at login or from /session, goes in a header on every state-changing call.

export class Unauthorized extends Error {}

let csrf = null;

export function setCsrf(token) {
  csrf = token;
}

export async function call(method, path, body, { text = false } = {}) {
  const headers = {};
  if (method !== "GET") headers["X-CSRF-Token"] = csrf ?? "";
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = text ? "text/yaml" : "application/json";
    payload = text ? body : JSON.stringify(body);
  }
  const response = await fetch(`/v1/console/${path}`, { method, headers, body: payload, credentials: "same-origin" });
  const parsed = response.status === 204 ? null : await response.json().catch(() => null);
  if (response.status === 401) throw new Unauthorized(parsed?.detail ?? "not logged in");
  return { status: response.status, ok: response.ok, body: parsed };
}

// A refusal's body ({error, detail}) as one line for the operator.
export function problemText(body) {
  if (!body) return "no answer";
  const detail = body.detail;
  if (Array.isArray(detail)) return detail.map((d) => `${d.field}: ${d.reason}`).join("; ");
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}
