// The page: sign-in, uploads, the file list, a file's view (overview, data, SQL tabs), the
// session's active file, and live updates from the change feed. Every user-provided string reaches the DOM through
// textContent or a text node (the `el` helper), never as HTML.

import * as api from './api.js';
import { renderMarkdown } from './markdown.js';
import { columnChart } from './charts.js';
import { mountExplore } from './explore.js';
import { mountSql } from './sql.js';
import { mountShare } from './share.js';
import { el } from './grid.js';

const PAGE_SIZE = 50;
const PREVIEW_ROWS = 50;
const SESSION_KEY = 'file-service.session';
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const $ = (id) => document.getElementById(id);

const state = {
  offset: 0,
  prefix: '',
  total: 0,
  files: [],
  session: '',
  active: null,
  /** The file shown in the file view: its record, or null in the list view. */
  current: null,
  /** The file view's tabs: the one shown and the mounted Data and SQL tabs. */
  tab: 'overview',
  tabs: {},
  /** Changes of the active file made by this tab, so a slower read does not undo them. */
  activeChanges: 0,
  listRequest: 0,
  feed: null,
  /** Ids of files this tab uploaded or deleted: their feed entries are no news. */
  own: new Set(),
  expiryTimer: 0,
};

// ---------- formatting ----------

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const numberFormat = new Intl.NumberFormat();

function formatDate(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateFormat.format(date);
}

function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function formatValue(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'number') {
    if (Number.isInteger(value)) return numberFormat.format(value);
    return Math.abs(value) >= 1e6 || Math.abs(value) < 1e-3 ? value.toPrecision(4) : String(Number(value.toPrecision(6)));
  }
  return String(value);
}

function shape(record) {
  return `${numberFormat.format(record.row_count)} × ${numberFormat.format(record.column_count)}`;
}

function fileHref(name) {
  return `#/file/${encodeURIComponent(name)}`;
}

// ---------- messages ----------

function toast(message, kind = 'info') {
  const item = el('div', { className: `toast ${kind}`, text: message });
  $('toasts').append(item);
  setTimeout(() => item.remove(), kind === 'error' ? 8000 : 4000);
}

// ---------- sign-in ----------

function showSignIn(message) {
  stopFeed();
  clearTimeout(state.expiryTimer);
  for (const id of ['loading', 'list-view', 'file-view', 'session-bar', 'who']) $(id).hidden = true;
  $('signin').hidden = false;
  $('signin-message').textContent = message;
  $('signin-message').hidden = !message;
  $('token-input').value = '';
  $('token-input').focus();
}

/** Checks the stored token's shape and expiry before using it; returns an explanation
 *  when it cannot be used, else null. */
function tokenProblem() {
  const token = api.token();
  if (!token) return 'You are not signed in.';
  const claims = api.claims(token);
  if (!claims) return 'That is not a token: a token has three parts separated by dots (eyJ….eyJ….…).';
  if (typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now()) {
    return `Your sign-in expired at ${formatDate(claims.exp * 1000)}. Run file-service open again, or paste a new token.`;
  }
  return null;
}

function signedIn() {
  const problem = tokenProblem();
  if (problem) {
    api.clearToken();
    showSignIn(problem);
    return;
  }
  const claims = api.claims(api.token());
  $('signin').hidden = true;
  $('loading').hidden = true;
  $('who').hidden = false;
  $('session-bar').hidden = false;
  const until = typeof claims.exp === 'number' ? ` · until ${formatDate(claims.exp * 1000)}` : '';
  $('user-label').textContent = `User ${claims.sub}${until}`;
  clearTimeout(state.expiryTimer);
  if (typeof claims.exp === 'number') {
    // setTimeout's delay is a 32-bit number of milliseconds; a longer token is rechecked later.
    const delay = Math.min(claims.exp * 1000 - Date.now(), 2 ** 31 - 1);
    state.expiryTimer = setTimeout(() => {
      if (tokenProblem()) {
        api.clearToken();
        showSignIn(tokenProblem() || 'Your sign-in expired.');
      } else signedIn();
    }, delay);
  }
  refreshActive();
  route();
  startFeed();
}

api.setUnauthorizedHandler((error) => {
  api.clearToken();
  showSignIn(`The server refused the token (${error.message}). Run file-service open again, or paste a new token.`);
});

// ---------- session and active file ----------

function newSessionId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function setSession(id) {
  state.session = id;
  localStorage.setItem(SESSION_KEY, id);
  $('session').value = id;
  $('session').removeAttribute('aria-invalid');
  refreshActive();
}

/** Reads the session's active file; an answer that a newer change in this tab (an upload,
 *  Make active) overtook is dropped. */
async function refreshActive() {
  const session = state.session;
  const known = state.activeChanges;
  let active = null;
  try {
    active = await api.getJson(`/files/active/${session}`);
  } catch (error) {
    if (error.status !== 404) {
      if (error.status !== 401) toast(`Could not read the active file: ${error.message}`, 'error');
      return;
    }
  }
  if (session !== state.session || known !== state.activeChanges) return;
  state.active = active;
  renderActive();
}

function renderActive() {
  const info = $('active-info');
  info.replaceChildren();
  if (state.active) {
    info.append('Active: ', el('a', { href: fileHref(state.active.file_name), text: state.active.file_name, id: 'active-name' }));
  } else {
    info.append(el('span', { className: 'muted', text: 'No active file' }));
  }
  for (const row of document.querySelectorAll('#files tbody tr')) {
    const isActive = Boolean(state.active) && row.dataset.id === state.active.id;
    row.classList.toggle('is-active', isActive);
    row.querySelector('.badge')?.toggleAttribute('hidden', !isActive);
  }
  if (state.current) renderActiveButton();
}

// ---------- routing ----------

/** `#/file/NAME?tab=…&…`: the file and its view's parameters. */
function fileRoute() {
  const match = /^#\/file\/([^?]+)(?:\?(.*))?$/.exec(location.hash);
  if (!match) return null;
  let name;
  try {
    name = decodeURIComponent(match[1]);
  } catch {
    name = match[1];
  }
  return { name, params: new URLSearchParams(match[2] || '') };
}

function route() {
  if (tokenProblem()) return;
  const target = fileRoute();
  if (target) showFile(target.name, target.params);
  else showList();
}

// ---------- the list ----------

function showList() {
  stopTabs();
  state.current = null;
  $('file-view').hidden = true;
  $('file-view').replaceChildren();
  $('list-view').hidden = false;
  document.title = 'Files · file-service';
  loadList();
}

async function loadList() {
  const request = ++state.listRequest;
  const params = new URLSearchParams({ limit: String(PAGE_SIZE), offset: String(state.offset) });
  if (state.prefix) params.set('name_prefix', state.prefix);
  let response;
  try {
    response = await api.request('GET', `/files/?${params}`);
  } catch (error) {
    if (error.status !== 401) toast(`Could not list the files: ${error.message}`, 'error');
    return;
  }
  const files = await response.json();
  if (request !== state.listRequest) return; // a newer listing was asked for meanwhile
  state.total = Number(response.headers.get('x-total-count') ?? files.length);
  if (files.length === 0 && state.offset > 0 && state.total > 0) {
    // The page emptied (files deleted elsewhere): go back to the last page there is.
    state.offset = Math.max(0, Math.floor((state.total - 1) / PAGE_SIZE) * PAGE_SIZE);
    loadList();
    return;
  }
  state.files = files;
  renderList();
}

function renderList() {
  // For measuring the page: when the first listing is on screen (tests/browser/first-paint.mjs).
  if (!performance.getEntriesByName('file-service:listed').length) performance.mark('file-service:listed');
  const body = $('files').tBodies[0];
  body.replaceChildren(
    ...state.files.map((file) => {
      const isActive = Boolean(state.active) && state.active.id === file.id;
      return el(
        'tr',
        { 'data-id': file.id, className: isActive ? 'is-active' : '' },
        el(
          'td',
          { className: 'name' },
          el('a', { href: fileHref(file.file_name), text: file.file_name }),
          ' ',
          el('span', { className: 'badge', text: 'active', hidden: !isActive }),
        ),
        el('td', { text: file.format }),
        el('td', { className: 'num', text: formatSize(file.size_bytes) }),
        el('td', { className: 'num', text: shape(file) }),
        el('td', { className: 'description', text: file.description, title: file.description || undefined }),
        el('td', { className: 'nowrap', text: formatDate(file.updated_at) }),
      );
    }),
  );
  const first = state.files.length ? state.offset + 1 : 0;
  const last = state.offset + state.files.length;
  $('count').textContent = state.prefix
    ? `${numberFormat.format(state.total)} matching “${state.prefix}”`
    : `${numberFormat.format(state.total)} file${state.total === 1 ? '' : 's'}`;
  $('page-info').textContent = state.total ? `${numberFormat.format(first)}–${numberFormat.format(last)} of ${numberFormat.format(state.total)}` : '';
  $('prev').disabled = state.offset === 0;
  $('next').disabled = last >= state.total;
  $('files').hidden = state.files.length === 0;
  $('empty').hidden = state.files.length > 0;
  $('empty').textContent = state.prefix
    ? `No file name starts with “${state.prefix}”.`
    : 'No files yet: drop some above, or put them in the storage folder.';
}

let filterTimer = 0;
function onFilterInput() {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    state.prefix = $('filter').value;
    state.offset = 0;
    loadList();
  }, 150);
}

// ---------- uploads ----------

/** A file name the API accepts, made from a picked file's name (its extension dropped). */
function suggestedName(fileName) {
  const stem = fileName.replace(/\.[^.]*$/, '') || fileName;
  let name = stem.replace(/[^\p{L}\p{N} _.()-]/gu, '_').replace(/^[. ]+/, '');
  name = Array.from(name).slice(0, 128).join('');
  while (new TextEncoder().encode(name).length > 200) name = Array.from(name).slice(0, -1).join('');
  return name || 'file';
}

const queue = [];

function addToQueue(files) {
  for (const file of files) {
    const item = { file, status: 'ready' };
    const id = `q${Math.random().toString(36).slice(2, 10)}`;
    item.name = el('input', { id: `${id}-name`, className: 'grow', value: suggestedName(file.name), spellcheck: 'false', autocomplete: 'off' });
    item.description = el('input', { id: `${id}-description`, className: 'grow', placeholder: 'What is in it (optional)', autocomplete: 'off' });
    item.progress = el('progress', { max: '100', value: '0', 'aria-label': `Upload progress of ${file.name}` });
    item.message = el('p', { className: 'message', 'aria-live': 'polite' });
    item.button = el('button', { type: 'button', text: 'Upload', onclick: () => uploadItem(item) });
    item.remove = el('button', { type: 'button', text: 'Remove', 'aria-label': `Remove ${file.name} from the list`, onclick: () => removeFromQueue(item) });
    item.element = el(
      'li',
      { className: 'queue-item' },
      el('div', { className: 'queue-file' }, el('strong', { text: file.name }), el('span', { className: 'muted', text: ` ${formatSize(file.size)}` })),
      el('div', { className: 'fields' },
        el('label', { for: `${id}-name`, text: 'Name' }), item.name,
        el('label', { for: `${id}-description`, text: 'Description' }), item.description),
      el('div', { className: 'progress-row' }, item.progress, item.button, item.remove),
      item.message,
    );
    queue.push(item);
    $('queue-items').append(item.element);
  }
  $('queue').hidden = queue.length === 0;
  queue.find((item) => item.status === 'ready')?.name.focus();
}

function removeFromQueue(item) {
  if (item.status === 'uploading') return;
  queue.splice(queue.indexOf(item), 1);
  item.element.remove();
  $('queue').hidden = queue.length === 0;
}

async function uploadItem(item) {
  if (item.status === 'uploading' || item.status === 'done') return;
  item.status = 'uploading';
  item.element.className = 'queue-item uploading';
  item.button.disabled = true;
  item.remove.disabled = true;
  item.progress.value = 0;
  item.message.textContent = 'Uploading…';
  const control = {};
  const cancel = el('button', { type: 'button', text: 'Cancel', 'aria-label': `Cancel the upload of ${item.file.name}`, onclick: () => control.cancel?.() });
  item.button.after(cancel);
  try {
    const record = await api.upload(
      { file: item.file, name: item.name.value.trim(), description: item.description.value, session: state.session },
      (fraction) => {
        item.progress.value = Math.round(fraction * 100);
        if (fraction >= 1) {
          item.message.textContent = 'Sent; the server is summarizing it…';
          // Every byte is there: the server is committing the file, which cannot be undone.
          cancel.remove();
        }
      },
      control,
    );
    cancel.remove();
    state.own.add(record.id);
    item.status = 'done';
    item.progress.value = 100;
    item.button.hidden = true;
    item.element.className = 'queue-item done';
    item.message.replaceChildren(
      'Uploaded as ',
      el('a', { href: fileHref(record.file_name), text: record.file_name }),
      ` · ${shape(record)} · active in this session`,
    );
    item.name.disabled = true;
    item.description.disabled = true;
    item.remove.disabled = false;
    state.active = record;
    state.activeChanges += 1;
    renderActive();
    loadList();
  } catch (error) {
    cancel.remove();
    item.status = 'failed';
    // An empty bar: a full one would read as success.
    item.progress.value = 0;
    item.element.className = 'queue-item failed';
    item.button.disabled = false;
    item.button.textContent = 'Try again';
    item.remove.disabled = false;
    const why = {
      0: error.code === 'aborted' ? 'Cancelled' : 'Cut off',
      409: error.code === 'upload_in_progress' ? 'Unfinished upload' : 'Name taken',
      413: 'Too large',
      422: 'Refused',
      503: 'Server busy, try again',
    }[error.status] || 'Failed';
    item.message.textContent = `${why}: ${error.message}`;
    if (error.code === 'upload_in_progress' && error.upload) {
      // An earlier upload of this name never finished (cancelled before the server
      // answered, or left by a reload): offer to discard it and send this file instead.
      item.message.append(' ', el('button', {
        type: 'button',
        text: 'Discard the unfinished upload and send this file',
        onclick: async () => {
          try {
            await api.terminateUpload(error.upload);
            uploadItem(item);
          } catch (e) {
            item.message.textContent = `Failed: ${e.message}`;
          }
        },
      }));
    }
  }
}

async function uploadAll() {
  for (const item of queue.filter((i) => i.status === 'ready' || i.status === 'failed')) await uploadItem(item);
}

function clearFinished() {
  for (const item of queue.filter((i) => i.status === 'done')) removeFromQueue(item);
}

function setUpDropzone() {
  const zone = $('dropzone');
  let depth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer?.types || []).includes('Files');
  document.addEventListener('dragenter', (event) => {
    if (!hasFiles(event) || $('list-view').hidden) return;
    depth += 1;
    zone.classList.add('over');
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (depth === 0) zone.classList.remove('over');
  });
  document.addEventListener('dragover', (event) => {
    if (hasFiles(event)) event.preventDefault();
  });
  document.addEventListener('drop', (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    depth = 0;
    zone.classList.remove('over');
    if ($('list-view').hidden) location.hash = '#/';
    addToQueue(Array.from(event.dataTransfer.files));
  });
  $('choose-files').addEventListener('click', () => $('file-input').click());
  $('file-input').addEventListener('change', () => {
    addToQueue(Array.from($('file-input').files));
    $('file-input').value = '';
  });
}

// ---------- one file ----------

function stopTabs() {
  for (const tab of Object.values(state.tabs)) tab.stop();
  state.tabs = {};
}

/** Shows a file's view; the same file again (a changed address) only changes its tab and
 *  view, unless `reload`. */
async function showFile(name, params = new URLSearchParams(), { reload = false } = {}) {
  if (!reload && state.current?.file_name === name && $('file-tabs')) {
    selectTab(params.get('tab'), params);
    return;
  }
  stopTabs();
  $('list-view').hidden = true;
  const view = $('file-view');
  view.hidden = false;
  view.replaceChildren(el('p', { className: 'muted', text: 'Loading…' }));
  const path = `/files/${api.segment(name)}`;
  let record;
  try {
    record = await api.getJson(path);
  } catch (error) {
    if (error.status === 401) return;
    view.replaceChildren(
      el('p', { className: 'notice', text: error.status === 404 ? `There is no file named “${name}” (any more).` : error.message }),
      el('p', {}, el('a', { href: '#/', text: '← All files' })),
    );
    return;
  }
  state.current = record;
  document.title = `${record.file_name} · file-service`;
  renderFile(record);
  selectTab(params.get('tab'), params, { focus: false });
  const [profile, preview] = await Promise.allSettled([
    api.getJson(`${path}/profile`),
    api.getJson(`${path}/preview?rows=${PREVIEW_ROWS}`),
  ]);
  if (state.current?.id !== record.id) return;
  renderProfile(profile, record);
  renderPreview(preview);
}

function renderFile(record) {
  const view = $('file-view');
  const title = el('h1', { tabindex: '-1', id: 'file-title', text: record.file_name });
  view.replaceChildren(
    el('p', { className: 'crumbs' }, el('a', { href: '#/', text: '← All files' })),
    title,
    el('p', { className: 'description-text', id: 'file-description', text: record.description || 'No description.' }),
    el('dl', { className: 'facts' },
      fact('Format', record.format),
      fact('Size', `${formatSize(record.size_bytes)} (${numberFormat.format(record.size_bytes)} bytes)`),
      fact('Rows × columns', shape(record)),
      fact('Updated', formatDate(record.updated_at)),
      fact('Created', formatDate(record.created_at)),
      fact('SHA-256', record.sha256.slice(0, 16) + '…', record.sha256)),
    el('div', { className: 'actions', role: 'toolbar', 'aria-label': 'File actions' },
      el('button', { type: 'button', id: 'make-active', className: 'primary', onclick: () => makeActive(record) }),
      el('button', { type: 'button', id: 'download', text: 'Download', onclick: () => download(record) }),
      el('button', { type: 'button', id: 'rename', text: 'Rename', 'aria-expanded': 'false', onclick: () => openEditor('rename') }),
      el('button', { type: 'button', id: 'describe', text: 'Describe', 'aria-expanded': 'false', onclick: () => openEditor('describe') }),
      el('button', { type: 'button', id: 'share', text: 'Share…', 'aria-expanded': 'false', onclick: () => openShare(record) }),
      el('button', { type: 'button', id: 'delete', className: 'danger', text: 'Delete…', onclick: () => confirmDelete(record) })),
    el('div', { id: 'editor' }),
    el('div', { className: 'tabs', role: 'tablist', id: 'file-tabs', 'aria-label': 'Views of the file' },
      TABS.map(([key, label]) => el('button', {
        type: 'button', role: 'tab', id: `tab-${key}`, 'aria-controls': `panel-${key}`, 'aria-selected': 'false', text: label,
        onclick: () => selectTab(key, null),
      }))),
    el('div', { role: 'tabpanel', id: 'panel-data', 'aria-labelledby': 'tab-data', className: 'panel', hidden: true }),
    el('div', { role: 'tabpanel', id: 'panel-sql', 'aria-labelledby': 'tab-sql', className: 'panel', hidden: true }),
    el('div', { role: 'tabpanel', id: 'panel-overview', 'aria-labelledby': 'tab-overview', className: 'panel' },
    el('nav', { className: 'sections', 'aria-label': 'Sections' },
      el('a', { href: '#summary', text: 'Summary', onclick: jump }), ' · ',
      el('a', { href: '#profile', text: 'Profile', onclick: jump }), ' · ',
      el('a', { href: '#preview', text: 'Preview', onclick: jump })),
    el('section', { id: 'summary', 'aria-labelledby': 'summary-title' },
      el('h2', { id: 'summary-title', text: 'Summary' }),
      el('div', { className: 'markdown' }, renderMarkdown(record.summary))),
    el('section', { id: 'profile', 'aria-labelledby': 'profile-title' },
      el('h2', { id: 'profile-title', text: 'Profile' }), el('p', { className: 'muted', text: 'Loading…' })),
    el('section', { id: 'preview', 'aria-labelledby': 'preview-title' },
      el('h2', { id: 'preview-title', text: 'Preview' }), el('p', { className: 'muted', text: 'Loading…' }))),
  );
  renderActiveButton();
  title.focus({ preventScroll: true });
}

const TABS = [['overview', 'Overview'], ['data', 'Data'], ['sql', 'SQL']];

/** The address of the file view: the file, its tab and that tab's view. */
function writeAddress(tab, params) {
  const record = state.current;
  if (!record) return;
  const all = new URLSearchParams();
  if (tab !== 'overview') all.set('tab', tab);
  for (const [key, value] of params || []) all.append(key, value);
  const query = all.toString();
  const hash = `${fileHref(record.file_name)}${query ? `?${query}` : ''}`;
  // Replaced, not pushed: paging through a file does not fill the history.
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

/** Shows a tab; `params` (from the address) sets its view, null keeps the view it has. */
function selectTab(requested, params, { focus = true } = {}) {
  const record = state.current;
  const tab = TABS.some(([key]) => key === requested) ? requested : 'overview';
  state.tab = tab;
  for (const [key] of TABS) {
    const button = $(`tab-${key}`);
    button.setAttribute('aria-selected', String(key === tab));
    button.tabIndex = key === tab ? 0 : -1;
    $(`panel-${key}`).hidden = key !== tab;
  }
  const save = (viewParams) => {
    if (state.current === record && state.tab === tab) writeAddress(tab, viewParams);
  };
  const mounted = state.tabs[tab];
  if (tab === 'overview') {
    writeAddress(tab, null);
  } else if (!mounted) {
    const mount = tab === 'data' ? mountExplore : mountSql;
    state.tabs[tab] = mount($(`panel-${tab}`), record, params || new URLSearchParams(), save);
    if (!params) writeAddress(tab, state.tabs[tab].params?.());
  } else if (params) {
    mounted.apply(params);
  } else {
    writeAddress(tab, mounted.params?.());
  }
  if (focus && !params) $(`tab-${tab}`).focus();
}

/** Arrow keys move between tabs (the ARIA tabs pattern). */
function onTabKey(event) {
  const index = TABS.findIndex(([key]) => key === state.tab);
  const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (!step || !event.target.closest?.('#file-tabs')) return;
  event.preventDefault();
  selectTab(TABS[(index + step + TABS.length) % TABS.length][0], null);
}

/** In-page section links without touching the address's fragment (it holds the route). */
function jump(event) {
  event.preventDefault();
  const target = document.getElementById(event.currentTarget.getAttribute('href').slice(1));
  target?.scrollIntoView({ behavior: 'smooth', block: 'start' });
  target?.querySelector('h2')?.setAttribute('tabindex', '-1');
  target?.querySelector('h2')?.focus({ preventScroll: true });
}

function fact(label, value, title) {
  return el('div', {}, el('dt', { text: label }), el('dd', { text: value, title }));
}

function renderActiveButton() {
  const button = $('make-active');
  if (!button || !state.current) return;
  const isActive = Boolean(state.active) && state.active.id === state.current.id;
  button.textContent = isActive ? 'Active in this session ✓' : 'Make active';
  button.disabled = isActive;
}

async function makeActive(record) {
  try {
    const response = await api.request('POST', `/files/active/${state.session}`, { json: { file_name: record.file_name } });
    state.active = await response.json();
    state.activeChanges += 1;
    renderActive();
    toast(`“${record.file_name}” is now the active file of this session.`);
  } catch (error) {
    if (error.status !== 401) toast(`Could not make it active: ${error.message}`, 'error');
  }
}

async function download(record) {
  try {
    const response = await api.request('GET', `/files/${api.segment(record.file_name)}/content`);
    const url = URL.createObjectURL(await response.blob());
    const link = el('a', { href: url, download: `${record.file_name}.${record.format}` });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (error) {
    if (error.status !== 401) toast(`Could not download it: ${error.message}`, 'error');
  }
}

/** The buttons that open a panel in `#editor`, one at a time. */
const EDITORS = ['rename', 'describe', 'share'];

/** The share panel: make, copy, list and revoke the file's share links. */
function openShare(record) {
  const editor = $('editor');
  const close = () => {
    editor.replaceChildren();
    for (const id of EDITORS) $(id)?.setAttribute('aria-expanded', 'false');
    $('share')?.focus();
  };
  mountShare(editor, record, { toast, formatDate, onClose: close });
  for (const id of EDITORS) $(id)?.setAttribute('aria-expanded', String(id === 'share'));
}

function openEditor(kind) {
  const record = state.current;
  const editor = $('editor');
  const isRename = kind === 'rename';
  const field = isRename
    ? el('input', { id: 'edit-field', className: 'grow', value: record.file_name, spellcheck: 'false', autocomplete: 'off' })
    : el('textarea', { id: 'edit-field', className: 'grow', rows: '3' });
  if (!isRename) field.value = record.description;
  const message = el('p', { className: 'message error-text', id: 'edit-message', 'aria-live': 'polite' });
  const close = () => {
    editor.replaceChildren();
    for (const id of EDITORS) $(id)?.setAttribute('aria-expanded', 'false');
    $(kind)?.focus();
  };
  const form = el(
    'form',
    { className: 'editor card', onsubmit: (event) => save(event) },
    el('label', { for: 'edit-field', text: isRename ? 'New name' : 'Description' }),
    el('div', { className: 'row' }, field, el('button', { type: 'submit', className: 'primary', text: 'Save' }), el('button', { type: 'button', text: 'Cancel', onclick: close })),
    message,
  );
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') close();
  });
  async function save(event) {
    event.preventDefault();
    const change = isRename ? { file_name: field.value.trim() } : { description: field.value };
    try {
      const response = await api.request('PATCH', `/files/${api.segment(record.file_name)}`, { json: change });
      const updated = await response.json();
      if (state.active?.id === updated.id) state.active = updated;
      renderActive();
      if (isRename) {
        toast(`Renamed to “${updated.file_name}”.`);
        location.hash = fileHref(updated.file_name);
      } else {
        toast('Description saved.');
        showFile(updated.file_name, fileRoute()?.params, { reload: true });
      }
    } catch (error) {
      if (error.status !== 401) message.textContent = error.message;
    }
  }
  editor.replaceChildren(form);
  for (const id of EDITORS) $(id)?.setAttribute('aria-expanded', String(id === kind));
  field.focus();
  if (isRename) field.select();
}

function confirmDelete(record) {
  const dialog = $('confirm-delete');
  $('confirm-text').textContent = `“${record.file_name}” and its bytes will be removed, and it stops being the active file of every session. This cannot be undone.`;
  dialog.showModal();
}

async function deleteCurrent() {
  const record = state.current;
  $('confirm-delete').close();
  if (!record) return;
  // Its feed entry (which may come before this response) is no news.
  state.own.add(record.id);
  try {
    await api.request('DELETE', `/files/${api.segment(record.file_name)}`);
    toast(`Deleted “${record.file_name}”.`);
    if (state.active?.id === record.id) state.active = null;
    renderActive();
    location.hash = '#/';
  } catch (error) {
    if (error.status !== 401) toast(`Could not delete it: ${error.message}`, 'error');
  }
}

function renderProfile(result, record) {
  const section = $('profile');
  if (!section) return;
  const heading = section.querySelector('h2');
  if (result.status === 'rejected') {
    section.replaceChildren(heading, el('p', { className: 'notice', text: `No profile: ${result.reason.message}` }));
    return;
  }
  const profile = result.value;
  const columns = profile.columns || [];
  const notes = [];
  if (profile.encoding) notes.push(`encoding ${profile.encoding}`);
  if (profile.delimiter) notes.push(`delimiter ${profile.delimiter === '\t' ? 'tab' : `“${profile.delimiter}”`}`);
  if (profile.header_line === 0) notes.push('no header row');
  else if (profile.header_line > 1) notes.push(`header on line ${profile.header_line}`);
  if (profile.footer_lines) notes.push(`${profile.footer_lines} footer line${profile.footer_lines === 1 ? '' : 's'} left out`);
  const rows = columns.map((c) => {
    const chart = columnChart(c, record.row_count, formatValue);
    const estimate = (flag) => (flag ? ' ≈' : '');
    return el(
      'tr',
      {},
      el('th', { scope: 'row', className: 'name', text: c.name }),
      el('td', {}, el('code', { text: c.dtype })),
      el('td', { className: 'num', text: `${numberFormat.format(c.null_count)}` }),
      el('td', { className: 'num', text: `${numberFormat.format(c.unique_count)}${estimate(c.unique_count_is_estimate)}` }),
      el('td', { className: 'num', text: formatValue(c.min) }),
      el('td', { className: 'num', text: formatValue(c.max) }),
      el('td', { className: 'num', text: formatValue(c.mean) }),
      el('td', { className: 'chart-cell' }, chart || el('span', { className: 'muted', text: '—' })),
    );
  });
  section.replaceChildren(
    heading,
    el('p', { className: 'muted', text: notes.join(' · ') }),
    el('div', { className: 'table-wrap' },
      el('table', { className: 'profile' },
        el('thead', {}, el('tr', {}, ...['Column', 'Type', 'Missing', 'Distinct', 'Min', 'Max', 'Mean', 'Distribution · top values'].map((h, i) =>
          el('th', { scope: 'col', className: i >= 2 && i <= 6 ? 'num' : '', text: h })))),
        el('tbody', {}, rows))),
  );
}

function renderPreview(result) {
  const section = $('preview');
  if (!section) return;
  const heading = section.querySelector('h2');
  if (result.status === 'rejected') {
    section.replaceChildren(heading, el('p', { className: 'notice', text: `No preview: ${result.reason.message}` }));
    return;
  }
  const { columns, rows } = result.value;
  const total = state.current?.row_count ?? rows.length;
  section.replaceChildren(
    heading,
    el('p', { className: 'muted', text: `The first ${numberFormat.format(rows.length)} of ${numberFormat.format(total)} rows.` }),
    el('div', { className: 'table-wrap grid-wrap' },
      el('table', { className: 'grid' },
        el('thead', {}, el('tr', {}, el('th', { scope: 'col', className: 'rownum', text: '#' }), ...columns.map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, rows.map((row, index) =>
          el('tr', {}, el('th', { scope: 'row', className: 'rownum', text: String(index + 1) }), ...row.map((cell) =>
            cell === null ? el('td', { className: 'null', text: 'NA', title: 'missing' }) : el('td', { text: cell }))))))),
  );
}

// ---------- live updates ----------

function stopFeed() {
  state.feed?.abort();
  state.feed = null;
}

/** Follows the change feed (long-polls of 25 s) from the newest change at sign-in: files
 *  that arrive by themselves (dropped in the storage folder, synced) or change in another
 *  tab show up without a reload. */
async function startFeed() {
  stopFeed();
  const controller = new AbortController();
  state.feed = controller;
  const { signal } = controller;
  let since;
  let backoff = 1000;
  while (!signal.aborted) {
    try {
      if (since === undefined) since = await api.feedHead(signal);
      const page = await api.getJson(`/changes?since=${since}&wait=25&limit=200`, { signal });
      since = page.last_seq;
      backoff = 1000;
      if (page.changes.length) onChanges(page.changes);
    } catch (error) {
      if (signal.aborted || error.status === 401) return;
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, 30_000);
    }
  }
}

let changeTimer = 0;
let pendingChanges = [];
function onChanges(changes) {
  for (const change of changes) {
    const file = change.file;
    if (state.current && state.current.id === file.id) {
      if (change.op === 'delete') {
        if (!state.own.has(file.id)) toast(`“${state.current.file_name}” was deleted.`);
        location.hash = '#/';
      } else if (file.file_name !== state.current.file_name) {
        location.hash = fileHref(file.file_name);
      } else if (Date.parse(file.updated_at) !== Date.parse(state.current.updated_at)) {
        showFile(file.file_name, fileRoute()?.params, { reload: true });
      }
    }
  }
  // A burst of changes (a folder of files) refreshes the list once. Announced after a
  // moment, so this tab's own upload (whose 201 may come after its feed entry) is known.
  pendingChanges.push(...changes);
  clearTimeout(changeTimer);
  changeTimer = setTimeout(() => {
    const shown = new Set(state.files.map((f) => f.id));
    const arrived = pendingChanges.filter((c) => c.op === 'upsert' && !shown.has(c.file.id) && !state.own.has(c.file.id));
    pendingChanges = [];
    if (arrived.length === 1) toast(`New: “${arrived[0].file.file_name}”`);
    else if (arrived.length > 1) toast(`${arrived.length} new files`);
    if (!$('list-view').hidden) loadList();
    refreshActive();
  }, 300);
}

// ---------- start ----------

function start() {
  api.takeTokenFromFragment();
  const stored = localStorage.getItem(SESSION_KEY);
  state.session = stored && UUID.test(stored) ? stored : newSessionId();
  localStorage.setItem(SESSION_KEY, state.session);
  $('session').value = state.session;
  $('session').addEventListener('change', () => {
    const value = $('session').value.trim();
    if (UUID.test(value)) setSession(value.toLowerCase());
    else {
      $('session').setAttribute('aria-invalid', 'true');
      toast('A session id is a UUID, like 7d4a3f0e-9c1b-4a8e-bf6a-2f0f4b1f6c11.', 'error');
    }
  });
  $('new-session').addEventListener('click', () => {
    setSession(newSessionId());
    toast('New session: no file is active in it yet.');
  });
  $('sign-out').addEventListener('click', () => {
    api.clearToken();
    showSignIn('Signed out.');
  });
  $('signin-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    api.setToken(value.replace(/^Bearer\s+/i, ''));
    signedIn();
  });
  $('filter').addEventListener('input', onFilterInput);
  $('prev').addEventListener('click', () => {
    state.offset = Math.max(0, state.offset - PAGE_SIZE);
    loadList();
  });
  $('next').addEventListener('click', () => {
    state.offset += PAGE_SIZE;
    loadList();
  });
  $('upload-all').addEventListener('click', uploadAll);
  $('clear-queue').addEventListener('click', clearFinished);
  $('confirm-yes').addEventListener('click', deleteCurrent);
  $('confirm-no').addEventListener('click', () => $('confirm-delete').close());
  document.addEventListener('keydown', (event) => {
    const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement?.tagName || '');
    if (event.key === '/' && !typing && !$('list-view').hidden) {
      event.preventDefault();
      $('filter').focus();
    }
  });
  setUpDropzone();
  document.addEventListener('keydown', onTabKey);
  window.addEventListener('hashchange', () => {
    if (api.takeTokenFromFragment()) signedIn();
    else route();
  });
  signedIn();
}

start();
