// The public API, with the key kept in this tab's sessionStorage (never in a URL, never in
// localStorage): closing the tab signs out.

const STORAGE_KEY = 'receptionist.apiKey';

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export function setKey(key) {
  sessionStorage.setItem(STORAGE_KEY, key);
}

export function clearKey() {
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // storage disabled: nothing to clear
  }
}

/** An error answered by the API: `{"error": {"code", "message", "field"}}`. */
export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

const unauthorizedListeners = new Set();

/** Called when the API refuses the signed-in key (revoked meanwhile). */
export function onUnauthorized(fn) {
  unauthorizedListeners.add(fn);
  return () => unauthorizedListeners.delete(fn);
}

/**
 * One API request. `body` is sent as JSON; answers are parsed JSON (null for 204). `raw: true`
 * answers the Response itself (recordings).
 */
export async function api(method, path, body, { key = getKey(), raw = false, signal } = {}) {
  const headers = { Authorization: `Bearer ${key || ''}` };
  let payload;
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body: payload, signal, cache: 'no-store' });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server. Check the connection and try again.');
  }
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not the API's JSON (a proxy's page): keep the status
    }
    if (response.status === 401 && key && key === getKey()) {
      unauthorizedListeners.forEach((fn) => fn());
    }
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || response.statusText || `HTTP ${response.status}`,
      error.field,
    );
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

export const get = (path, opts) => api('GET', path, undefined, opts);
export const post = (path, body, opts) => api('POST', path, body, opts);
export const put = (path, body, opts) => api('PUT', path, body, opts);
export const patch = (path, body, opts) => api('PATCH', path, body, opts);
export const del = (path, opts) => api('DELETE', path, undefined, opts);

/** `?a=1&b=2` from the non-empty values of `params` ('' when none). */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** A path segment from an id the API gave (ids are opaque; never trust them to be URL-safe). */
export const seg = (id) => encodeURIComponent(String(id));
