// The node's /v1 API as the page uses it: the bearer token (from #token=…, the form, or
// sessionStorage) and JSON requests whose failures carry the API's error code and field.

const TOKEN_KEY = "xchg.token";

let token = "";
try {
  token = sessionStorage.getItem(TOKEN_KEY) ?? "";
} catch {
  token = "";
}

/** The token in use, or "". */
export function getToken() {
  return token;
}

/** Uses `next` from now on and keeps it in this browser. */
export function setToken(next) {
  token = (next ?? "").trim();
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // Without storage the token lasts until the page is closed.
  }
}

/**
 * Takes a token from the address (`#token=…`), keeps it, and removes it from the address bar
 * and the history so it is not bookmarked or shared by accident.
 */
export function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ""));
  const fromUrl = params.get("token");
  if (fromUrl === null) return;
  setToken(fromUrl);
  history.replaceState(null, "", location.pathname + location.search);
}

/** A failed API call: HTTP status (0 when the node could not be reached) and the error body. */
class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
  }
}

/** GETs `path` with the token; resolves to the JSON body or rejects with an ApiError. */
export async function get(path) {
  let resp;
  try {
    resp = await fetch(path, {
      headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
      cache: "no-store",
    });
  } catch (e) {
    throw new ApiError(0, "network", e?.message ?? String(e));
  }
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  if (!resp.ok) {
    const err = body?.error ?? {};
    throw new ApiError(resp.status, err.code ?? `http_${resp.status}`, err.message ?? resp.statusText, err.field);
  }
  return body;
}

/** A query string from the non-empty entries of `params` ("" when there are none). */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}
