// The public HTTP API (/api/v1) as the page uses it: the tab's bearer token, JSON calls,
// resumable uploads with progress (tus), and errors carrying the server's `detail`.

const TOKEN_KEY = 'file-service.token';

/** A refused request: the HTTP status and the server's words for it. */
export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code || '';
  }
}

/** Moves a token from the address's fragment (`#token=…`, as `file-service open` makes it)
 *  into this tab's sessionStorage and clears the fragment, so it is neither bookmarked nor
 *  left in the history. Returns true when one was taken. */
export function takeTokenFromFragment() {
  const match = /^#(?:.*&)?token=([^&]*)/.exec(location.hash);
  if (!match) return false;
  const token = decodeURIComponent(match[1]).trim();
  history.replaceState(null, '', location.pathname + location.search);
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  return Boolean(token);
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value.trim());
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** The token's claims ({sub, exp, …}) read without checking the signature (the server
 *  checks it); null when it is not a JWT. Only used to show who is signed in and until when. */
export function claims(value) {
  const parts = value.split('.');
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    const parsed = JSON.parse(new TextDecoder().decode(bytes));
    return parsed && typeof parsed === 'object' ? parsed : null;
  } catch {
    return null;
  }
}

/** Called with the ApiError of any 401, so the page can ask for a new token. */
let onUnauthorized = () => {};
export function setUnauthorizedHandler(handler) {
  onUnauthorized = handler;
}

/** A file name as one path segment. */
export function segment(name) {
  return encodeURIComponent(name);
}

async function errorOf(response) {
  let detail = `${response.status} ${response.statusText}`.trim();
  let code = '';
  try {
    const body = await response.json();
    if (body && typeof body.detail === 'string') detail = body.detail;
    if (body && typeof body.code === 'string') code = body.code;
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, detail, code);
}

/** Sends a request to `/api/v1${path}`; resolves the Response when it is 2xx, else
 *  rejects with an ApiError. `json` is sent as a JSON body. */
export async function request(method, path, { json, signal } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  let body;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(`/api/v1${path}`, { method, headers, body, signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'the server does not answer; is file-service still running?', 'network');
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return response;
}

/** Runs `call` again while the server answers 503 busy (its query slots are taken, often by
 *  requests this page has just abandoned: a slot is held until the work stops), waiting
 *  250 ms, then twice as long each time, six times at most; stops when `signal` aborts. */
export async function retryBusy(call, signal) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await call();
    } catch (error) {
      if (error.status !== 503 || attempt >= 6 || signal?.aborted) throw error;
      await new Promise((resolve, reject) => {
        const timer = setTimeout(resolve, 250 * 2 ** attempt);
        signal?.addEventListener('abort', () => {
          clearTimeout(timer);
          reject(new DOMException('aborted', 'AbortError'));
        }, { once: true });
      });
    }
  }
}

export async function getJson(path, options) {
  return (await request('GET', path, options)).json();
}

/** Uploads one file through the tus endpoint with tus-js-client (served from the binary,
 *  `window.tus`), so a cut connection or a reload loses nothing: the client retries, and a
 *  new upload of the same file under the same name and session goes on from the server's
 *  offset. Reports progress as a fraction of the bytes sent and resolves with the file's
 *  record once the server has committed it. `control.cancel()` stops the upload and
 *  removes what the server had of it. */
export function upload({ file, name, description, session }, onProgress, control = {}) {
  return new Promise((resolve, reject) => {
    let cancelled = false;
    const tusUpload = new window.tus.Upload(file, {
      endpoint: '/api/v1/uploads/',
      headers: { Authorization: `Bearer ${token()}` },
      metadata: { file_name: name, session_id: session, description, filename: file.name },
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
      // A previous upload is resumed only for the same file, name and session.
      fingerprint: async (f) => ['file-service', f.name, f.size, f.lastModified, name, session].join('/'),
      onProgress: (sent, total) => {
        if (total > 0) onProgress(sent / total);
      },
      // Retry what a retry can fix: a cut connection, a busy or restarting server, another
      // request still holding the upload, an offset the server moved on from.
      onShouldRetry: (err) => {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        if (status === 0 || status === 423 || status === 503 || status === 502 || status === 504) return true;
        return status === 409 && tusErrorBody(err)?.code === 'offset_mismatch';
      },
      onError: (err) => {
        if (!cancelled) reject(tusError(err));
      },
      onSuccess: async () => {
        try {
          const id = tusUpload.url.split('/').pop();
          const status = await getJson(`/uploads/${encodeURIComponent(id)}`);
          if (status.state === 'done' && status.file) resolve(status.file);
          else reject(new ApiError(0, status.error?.detail || `the upload ended ${status.state}`, status.error?.code));
        } catch (error) {
          reject(error);
        }
      },
    });
    control.cancel = async () => {
      cancelled = true;
      try {
        await tusUpload.abort(true);
      } finally {
        reject(new ApiError(0, 'the upload was cancelled', 'aborted'));
      }
    };
    tusUpload
      .findPreviousUploads()
      .then((previous) => {
        if (previous.length) tusUpload.resumeFromPreviousUpload(previous[0]);
        tusUpload.start();
      })
      .catch((err) => reject(tusError(err)));
  });
}

function tusErrorBody(err) {
  try {
    return JSON.parse(err.originalResponse.getBody());
  } catch {
    return null;
  }
}

/** A tus-js-client error as an ApiError with the server's words. */
function tusError(err) {
  const response = err && err.originalResponse;
  if (!response) return new ApiError(0, 'the upload was cut off; is file-service still running?', 'network');
  const status = response.getStatus();
  const body = tusErrorBody(err);
  const detail = body && typeof body.detail === 'string' ? body.detail : `${status}`;
  const error = new ApiError(status, detail, body && body.code);
  // An unfinished upload holding the name: where it is, to terminate it.
  if (error.code === 'upload_in_progress') error.upload = (body && body.upload) || '';
  if (status === 401) onUnauthorized(error);
  return error;
}

/** Terminates an unfinished upload (its address, as `upload_in_progress` gives it): every
 *  byte of it is removed and its name is free again. */
export async function terminateUpload(address) {
  const id = address.split('/').pop();
  let response;
  try {
    response = await fetch(`/api/v1/uploads/${encodeURIComponent(id)}`, {
      method: 'DELETE',
      headers: { Authorization: `Bearer ${token()}`, 'Tus-Resumable': '1.0.0' },
    });
  } catch {
    throw new ApiError(0, 'the server does not answer; is file-service still running?', 'network');
  }
  if (!response.ok && response.status !== 404) throw await errorOf(response);
}

/** The sequence number of the newest change the caller can see, found with the public
 *  feed alone: `GET /changes?since=S&limit=1` says whether anything follows S, so an
 *  exponential then binary search needs about 2·log2(head) tiny requests, instead of
 *  reading every file's history at page load. */
export async function feedHead(signal) {
  const after = async (since) => {
    const page = await getJson(`/changes?since=${since}&limit=1&wait=0`, { signal });
    return page.changes.length || page.more ? page.last_seq : null;
  };
  let low = await after(0);
  if (low === null) return 0;
  let step = 1024;
  let high;
  for (;;) {
    const next = await after(low + step);
    if (next === null) {
      high = low + step;
      break;
    }
    low = next;
    step *= 2;
  }
  // A change exists at `low`; none after `high`.
  while (low < high) {
    const middle = Math.floor((low + high) / 2);
    const next = await after(middle);
    if (next === null) high = middle;
    else low = next;
  }
  return low;
}
