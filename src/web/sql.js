// The SQL tab: a query over the file (table `data`) with POST /files/{name}/query, run with
// Ctrl+Enter or the Run button, its result in the grid, the whole result as a download
// (?format=), pages of a long result (Previous/Next run it again with `offset`), the file's
// columns at hand and recent queries remembered in this browser.

import * as api from './api.js';
import { el, renderGrid } from './grid.js';
import { FORMATS, saveResponse } from './explore.js';

const RECENT_KEY = 'file-service.recent-sql';
const RECENT_MAX = 10;
/** Rows of a result a page shows; the download has them all. */
const PAGE_ROWS = 1000;
const RESERVED = new Set(['select', 'from', 'where', 'group', 'order', 'by', 'limit', 'and', 'or', 'not', 'null', 'as', 'on', 'join',
  'table', 'data', 'case', 'when', 'then', 'else', 'end', 'in', 'is', 'like', 'having', 'distinct', 'union', 'all', 'with', 'true', 'false',
  'date', 'time', 'timestamp', 'interval', 'offset', 'asc', 'desc', 'between', 'left', 'right', 'inner', 'outer', 'cross', 'natural', 'using']);

const numberFormat = new Intl.NumberFormat();

/** A column name as SQL: bare when it is a plain lower-case word, else double-quoted. */
export function sqlName(name) {
  return /^[a-z_][a-z0-9_]*$/.test(name) && !RESERVED.has(name) ? name : `"${name.replace(/"/g, '""')}"`;
}

export function recentQueries() {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) || '[]');
    return Array.isArray(list) ? list.filter((s) => typeof s === 'string') : [];
  } catch {
    return [];
  }
}

function remember(sql) {
  const list = [sql, ...recentQueries().filter((s) => s !== sql)].slice(0, RECENT_MAX);
  localStorage.setItem(RECENT_KEY, JSON.stringify(list));
}

/** The SQL tab in `container`; `save(params)` keeps the query text in the address. */
export function mountSql(container, record, params, save) {
  const path = `/files/${api.segment(record.file_name)}`;
  let running = null;
  const editor = el('textarea', {
    id: 'sql-editor', className: 'mono sql-editor', rows: '6', spellcheck: 'false', autocomplete: 'off',
    'aria-label': 'SQL query (Ctrl+Enter runs it)', 'aria-describedby': 'sql-help',
  });
  editor.value = params.get('sql') || 'SELECT * FROM data LIMIT 100';
  const runButton = el('button', { type: 'button', id: 'sql-run', className: 'primary', text: 'Run' });
  const format = el('select', { id: 'sql-format', 'aria-label': 'Download format' }, FORMATS.map((f) => el('option', { value: f, text: f })));
  const downloadButton = el('button', { type: 'button', id: 'sql-download', text: 'Download result' });
  const columns = el('div', { className: 'sql-columns', id: 'sql-columns', 'aria-label': 'Columns (click to insert)' });
  const recent = el('ol', { className: 'recent', id: 'sql-recent' });
  const error = el('pre', { className: 'notice sql-error', id: 'sql-error', role: 'alert', hidden: true });
  const status = el('p', { className: 'muted', id: 'sql-status', 'aria-live': 'polite' });
  const result = el('div', { className: 'table-wrap grid-wrap', id: 'sql-result' });
  const previousButton = el('button', { type: 'button', id: 'sql-previous', text: '‹ Previous' });
  const nextButton = el('button', { type: 'button', id: 'sql-next', text: 'Next ›' });
  const pager = el('div', { className: 'pager', id: 'sql-pager', hidden: true }, previousButton, nextButton);
  /** The query and the offset of the page on show (the pager re-runs that query). */
  let shown = { sql: '', offset: 0 };

  container.replaceChildren(
    el('div', { className: 'sql-layout' },
      el('div', { className: 'sql-main' },
        editor,
        el('div', { className: 'sql-actions' }, runButton,
          el('span', { id: 'sql-help', className: 'muted small', text: 'Ctrl+Enter runs it. The file is the table data; other files by their quoted name.' }),
          el('span', { className: 'download-view' }, format, downloadButton))),
      el('div', { className: 'sql-side' },
        el('h3', { text: 'Columns' }), columns,
        el('h3', { text: 'Recent' }), recent)),
    error,
    status,
    pager,
    result,
  );

  function insert(text) {
    const start = editor.selectionStart;
    const end = editor.selectionEnd;
    editor.setRangeText(text, start, end, 'end');
    editor.focus();
  }

  function renderRecent() {
    const list = recentQueries();
    recent.replaceChildren(
      ...(list.length
        ? list.map((sql) => el('li', {}, el('button', {
          type: 'button', className: 'recent-query mono', title: sql, text: sql,
          onclick: () => {
            editor.value = sql;
            editor.focus();
          },
        })))
        : [el('li', { className: 'muted small', text: 'Queries you run show up here.' })]),
    );
  }

  function showError(err) {
    error.hidden = false;
    error.textContent = err.message;
  }

  async function run(page = null) {
    const sql = page ? page.sql : editor.value.trim();
    const offset = page ? page.offset : 0;
    if (!sql) return;
    running?.abort();
    const controller = new AbortController();
    running = controller;
    error.hidden = true;
    status.textContent = 'Running…';
    runButton.disabled = true;
    previousButton.disabled = true;
    nextButton.disabled = true;
    if (!page) {
      const next = new URLSearchParams();
      next.set('sql', sql);
      save(next);
    }
    try {
      const response = await api.retryBusy(
        () => api.request('POST', `${path}/query`, { json: { sql, limit: PAGE_ROWS, offset }, signal: controller.signal }),
        controller.signal,
      );
      const answer = await response.json();
      if (controller !== running) return;
      if (!page) {
        remember(sql);
        renderRecent();
      }
      shown = { sql, offset };
      renderGrid(result, answer, { caption: 'Query result', firstRow: offset + 1, empty: offset ? 'No rows past this point.' : 'The query returned no rows.' });
      const paged = offset > 0 || answer.truncated;
      const rows = paged
        ? `rows ${numberFormat.format(offset + 1)}–${numberFormat.format(offset + answer.row_count)}${answer.truncated ? ' (more follow; the download has them all)' : ' (the last)'}`
        : `${numberFormat.format(answer.row_count)} row${answer.row_count === 1 ? '' : 's'}`;
      status.textContent = `${rows} · ${numberFormat.format(Math.round(answer.elapsed_ms))} ms`;
      pager.hidden = !paged;
      previousButton.disabled = offset === 0;
      nextButton.disabled = !answer.truncated;
    } catch (err) {
      if (err.name === 'AbortError' || controller !== running) return;
      if (err.status === 401) return;
      status.textContent = '';
      result.replaceChildren();
      pager.hidden = true;
      showError(err);
    } finally {
      if (controller === running) runButton.disabled = false;
    }
  }

  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run();
    }
  });
  runButton.addEventListener('click', () => run());
  previousButton.addEventListener('click', () => run({ sql: shown.sql, offset: Math.max(0, shown.offset - PAGE_ROWS) }));
  nextButton.addEventListener('click', () => run({ sql: shown.sql, offset: shown.offset + PAGE_ROWS }));
  downloadButton.addEventListener('click', async () => {
    const sql = editor.value.trim();
    if (!sql) return;
    downloadButton.disabled = true;
    try {
      const response = await api.request('POST', `${path}/query?format=${encodeURIComponent(format.value)}`, { json: { sql } });
      await saveResponse(response, `${record.file_name}-query.${format.value}`);
      error.hidden = true;
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      downloadButton.disabled = false;
    }
  });

  renderRecent();
  api.retryBusy(() => api.getJson(`${path}/rows?limit=1`)).then(
    (schema) => {
      columns.replaceChildren(
        ...schema.columns.map((c) => el('button', {
          type: 'button', className: 'column-chip', 'data-column': c.name, title: `Insert ${sqlName(c.name)} (${c.dtype})`,
          onclick: () => insert(sqlName(c.name)),
        }, el('span', { text: c.name }), el('span', { className: 'dtype', text: c.dtype }))),
      );
    },
    (err) => {
      if (err.status !== 401) columns.replaceChildren(el('p', { className: 'muted small', text: `No columns: ${err.message}` }));
    },
  );
  if (params.get('sql')) run();

  return {
    apply(nextParams) {
      const sql = nextParams.get('sql');
      if (sql && sql !== editor.value.trim()) {
        editor.value = sql;
        run();
      }
    },
    stop() {
      running?.abort();
    },
  };
}
