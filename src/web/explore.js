// The Data tab: the whole file as pages of rows (GET /files/{name}/rows), sorted by header
// clicks, filtered from column menus, facet values and a where box, searched, narrowed to
// chosen columns, with facets (GET /files/{name}/facets) and downloads of the view. The view
// lives in the address (offset, where, orderby, q, columns, limit, facets), so a reload or a
// shared link shows the same rows.

import * as api from './api.js';
import { el, renderGrid, isNumeric } from './grid.js';

export const PAGE_SIZES = [50, 100, 500, 1000];
const DEFAULT_LIMIT = 100;
const FACET_VALUES = 10;
/** Facets of at most this many columns (the first shown), so a wide file stays quick. */
const FACET_COLUMNS = 12;
const SEARCH_DELAY_MS = 300;
export const FORMATS = ['csv', 'parquet', 'jsonl', 'arrow', 'xlsx'];
export const OPERATORS = ['=', '!=', '<', '<=', '>', '>=', 'LIKE', 'IS NULL', 'IS NOT NULL'];

const numberFormat = new Intl.NumberFormat();

/** A column name as an identifier the API parses exactly: double-quoted, quotes doubled. */
export function quoteName(name) {
  return `"${name.replace(/"/g, '""')}"`;
}

/** A literal as SQL text; the server gives it the type of the column it is compared with. */
export function quoteText(value) {
  return `'${String(value).replace(/'/g, "''")}'`;
}

/** One condition from a column's menu. */
export function condition(column, operator, value) {
  if (operator === 'IS NULL' || operator === 'IS NOT NULL') return `${quoteName(column)} ${operator}`;
  return `${quoteName(column)} ${operator} ${quoteText(value)}`;
}

/** `where` for the API: every condition must hold. */
export function joinConditions(conditions) {
  if (conditions.length <= 1) return conditions[0] || '';
  return conditions.map((c) => `(${c})`).join(' AND ');
}

/** Sort keys as the API's orderby text. */
export function orderByText(keys) {
  return keys.map((k) => `${quoteName(k.column)} ${k.descending ? 'DESC' : 'ASC'}`).join(', ');
}

/** Reads orderby text back into keys (names bare or double-quoted, ASC/DESC); null when it
 *  holds anything else, so hand-written text is passed on as it is. */
export function parseOrderBy(text) {
  const keys = [];
  let rest = text.trim();
  if (!rest) return keys;
  for (;;) {
    let column;
    const quoted = /^"((?:[^"]|"")*)"/.exec(rest);
    const bare = /^([\p{L}\p{N}_$]+)/u.exec(rest);
    if (quoted) {
      column = quoted[1].replace(/""/g, '"');
      rest = rest.slice(quoted[0].length);
    } else if (bare) {
      column = bare[1];
      rest = rest.slice(bare[0].length);
    } else return null;
    const direction = /^\s+(ASC|DESC)\b/i.exec(rest);
    if (direction) rest = rest.slice(direction[0].length);
    keys.push({ column, descending: Boolean(direction) && direction[1].toUpperCase() === 'DESC' });
    rest = rest.trimStart();
    if (!rest) return keys;
    if (rest[0] !== ',') return null;
    rest = rest.slice(1).trimStart();
  }
}

/** The next day/month/year after a date facet's value (YYYY, YYYY-MM or YYYY-MM-DD). */
function periodBounds(value, period) {
  const [y, m = 1, d = 1] = String(value).split('-').map(Number);
  const start = new Date(Date.UTC(y, m - 1, d));
  const end = new Date(start);
  if (period === 'year') end.setUTCFullYear(y + 1);
  else if (period === 'month') end.setUTCMonth(m);
  else end.setUTCDate(d + 1);
  const day = (date) => date.toISOString().slice(0, 10);
  return [day(start), day(end)];
}

/** The condition a click on a facet value stands for. */
export function facetCondition(column, facet, item, last) {
  const name = quoteName(column);
  if (item.value === null) return `${name} IS NULL`;
  if (facet.kind === 'dates') {
    const [from, to] = periodBounds(item.value, facet.period);
    return `${name} >= ${quoteText(from)} AND ${name} < ${quoteText(to)}`;
  }
  if (facet.kind === 'bins') {
    // The last bin includes its upper edge.
    return `${name} >= ${quoteText(item.value)} AND ${name} ${last ? '<=' : '<'} ${quoteText(item.to)}`;
  }
  return `${name} = ${quoteText(typeof item.value === 'string' ? item.value : JSON.stringify(item.value))}`;
}

/** Saves a response body under a name, as the browser's download. */
export async function saveResponse(response, fallbackName) {
  const disposition = response.headers.get('content-disposition') || '';
  const star = /filename\*=UTF-8''([^;]+)/i.exec(disposition);
  const plain = /filename="([^"]+)"/i.exec(disposition);
  let name = fallbackName;
  try {
    if (star) name = decodeURIComponent(star[1]);
    else if (plain) name = plain[1];
  } catch {
    // keep the fallback
  }
  const url = URL.createObjectURL(await response.blob());
  const link = el('a', { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

function shortNumber(n) {
  return numberFormat.format(n);
}

/** The view's state from the address's parameters. */
export function viewFromParams(params) {
  const number = (key, fallback) => {
    const n = Number(params.get(key));
    return Number.isSafeInteger(n) && n >= 0 && params.has(key) ? n : fallback;
  };
  const limit = number('limit', DEFAULT_LIMIT);
  const orderby = params.get('orderby') || '';
  return {
    offset: number('offset', 0),
    limit: PAGE_SIZES.includes(limit) ? limit : DEFAULT_LIMIT,
    conditions: params.getAll('where').filter((w) => w.trim()),
    orderby,
    sort: parseOrderBy(orderby),
    q: params.get('q') || '',
    columns: params.get('columns') ? splitColumns(params.get('columns')) : null,
    facets: params.get('facets') !== '0',
  };
}

/**
 * A `columns=` list: names joined by commas, a name with a comma, a double quote or
 * spaces at its ends in double quotes (a quote in it doubled), as the API reads it.
 */
export function joinColumns(names) {
  return names.map((n) => (/[",]|^\s|\s$/.test(n) ? `"${n.replaceAll('"', '""')}"` : n)).join(',');
}

/** The names of a `columns=` list (the inverse of joinColumns). */
export function splitColumns(text) {
  const names = [];
  const pattern = /\s*(?:"((?:[^"]|"")*)"\s*|([^,]*))(,|$)/gy;
  let match;
  while (pattern.lastIndex < text.length && (match = pattern.exec(text)) !== null) {
    const name = match[1] !== undefined ? match[1].replaceAll('""', '"') : match[2].trim();
    if (name || match[1] !== undefined) names.push(name);
    if (match[3] === '') break;
  }
  return names;
}

/** The view's state as address parameters (defaults left out). */
export function paramsFromView(view) {
  const params = new URLSearchParams();
  if (view.offset) params.set('offset', String(view.offset));
  if (view.limit !== DEFAULT_LIMIT) params.set('limit', String(view.limit));
  for (const c of view.conditions) params.append('where', c);
  const orderby = view.sort ? orderByText(view.sort) : view.orderby;
  if (orderby) params.set('orderby', orderby);
  if (view.q) params.set('q', view.q);
  if (view.columns) params.set('columns', joinColumns(view.columns));
  if (!view.facets) params.set('facets', '0');
  return params;
}

/**
 * The Data tab in `container` for the file `record`, starting from `params`; `save(params)`
 * is called with the view's parameters whenever the view changes.
 */
export function mountExplore(container, record, params, save) {
  const path = `/files/${api.segment(record.file_name)}`;
  let view = viewFromParams(params);
  let allColumns = null;
  let answer = null;
  let rowsRequest = null;
  let facetsRequest = null;
  let searchTimer = 0;

  const status = el('p', { className: 'muted view-status', id: 'view-status', 'aria-live': 'polite' });
  const error = el('p', { className: 'notice', id: 'view-error', role: 'alert', hidden: true });
  const search = el('input', {
    type: 'search', id: 'view-search', placeholder: 'Search text columns…', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Search the text columns',
  });
  search.value = view.q;
  const whereInput = el('input', {
    id: 'where-input', className: 'mono grow', placeholder: 'Add a condition: price > 10, name LIKE \'A%\'', autocomplete: 'off', spellcheck: 'false',
    'aria-label': 'Add a condition (SQL where)',
  });
  const chips = el('div', { className: 'chips', id: 'filters', 'aria-label': 'Conditions' });
  const columnsList = el('div', { className: 'column-list' });
  const columnsSummary = el('summary', { text: 'Columns' });
  const chooser = el('details', { className: 'chooser', id: 'column-chooser' }, columnsSummary,
    el('div', { className: 'chooser-body' },
      el('div', { className: 'row' },
        el('button', { type: 'button', text: 'All', id: 'columns-all', onclick: () => setColumns(null) }),
        el('button', { type: 'button', text: 'None but the first', onclick: () => allColumns && setColumns([allColumns[0].name]) })),
      columnsList));
  const facetsButton = el('button', { type: 'button', id: 'facets-toggle', text: 'Facets', 'aria-pressed': String(view.facets) });
  const format = el('select', { id: 'view-format', 'aria-label': 'Download format' }, FORMATS.map((f) => el('option', { value: f, text: f })));
  const downloadButton = el('button', { type: 'button', id: 'view-download', text: 'Download view' });
  const gridBox = el('div', { className: 'table-wrap grid-wrap explore-grid', id: 'explore-grid' });
  const facetsPanel = el('aside', { className: 'facets', id: 'facets', 'aria-label': 'Facets' });
  const pageSize = el('select', { id: 'page-size', 'aria-label': 'Rows per page' },
    PAGE_SIZES.map((n) => el('option', { value: String(n), text: `${n} rows` })));
  pageSize.value = String(view.limit);
  const pager = {
    first: el('button', { type: 'button', id: 'page-first', text: '⇤ First' }),
    prev: el('button', { type: 'button', id: 'page-prev', text: '← Previous' }),
    next: el('button', { type: 'button', id: 'page-next', text: 'Next →' }),
    last: el('button', { type: 'button', id: 'page-last', text: 'Last ⇥' }),
  };
  const gotoInput = el('input', { id: 'goto-row', type: 'number', min: '1', step: '1', inputmode: 'numeric', 'aria-label': 'Row number', placeholder: 'Row #' });
  const gotoForm = el('form', { className: 'goto' }, gotoInput, el('button', { type: 'submit', text: 'Go' }));

  container.replaceChildren(
    el('div', { className: 'explore-tools' },
      search,
      el('form', { className: 'where-form grow', id: 'where-form' }, whereInput, el('button', { type: 'submit', text: 'Add' })),
      chooser, facetsButton,
      el('span', { className: 'download-view' }, format, downloadButton)),
    chips,
    error,
    status,
    el('div', { className: 'explore-body' }, gridBox, facetsPanel),
    el('nav', { className: 'pager explore-pager', 'aria-label': 'Pages of rows' },
      pager.first, pager.prev, pager.next, pager.last, gotoForm, pageSize),
  );

  const setView = (change, { keepOffset = false } = {}) => {
    view = { ...view, ...change };
    if (!keepOffset) view.offset = 0;
    save(paramsFromView(view));
    load();
  };

  function setColumns(columns) {
    setView({ columns: columns && allColumns && columns.length === allColumns.length ? null : columns }, { keepOffset: true });
  }

  function addCondition(text) {
    const clean = text.trim();
    if (!clean || view.conditions.includes(clean)) return;
    setView({ conditions: [...view.conditions, clean] });
  }

  function onSort(column, additive) {
    const keys = view.sort ? [...view.sort] : [];
    const at = keys.findIndex((k) => k.column === column);
    const current = at >= 0 ? keys[at] : null;
    // asc → desc → none
    const next = !current ? { column, descending: false } : !current.descending ? { column, descending: true } : null;
    let sort;
    if (additive) {
      if (at >= 0) {
        if (next) keys[at] = next;
        else keys.splice(at, 1);
      } else keys.push(next);
      sort = keys;
    } else if (keys.length === 1 && at === 0) {
      sort = next ? [next] : [];
    } else {
      sort = [{ column, descending: false }];
    }
    setView({ sort, orderby: orderByText(sort) });
  }

  function renderChips() {
    chips.replaceChildren(
      ...view.conditions.map((c, i) =>
        el('span', { className: 'chip' },
          el('code', { text: c }),
          el('button', {
            type: 'button', className: 'chip-remove', 'aria-label': `Remove the condition ${c}`, text: '×',
            onclick: () => setView({ conditions: view.conditions.filter((_, j) => j !== i) }),
          }))),
      ...(view.sort === null && view.orderby
        ? [el('span', { className: 'chip' }, el('code', { text: `ORDER BY ${view.orderby}` }),
          el('button', { type: 'button', className: 'chip-remove', 'aria-label': 'Remove the order', text: '×', onclick: () => setView({ sort: [], orderby: '' }) }))]
        : []),
    );
    if (view.conditions.length > 1) {
      chips.append(el('button', { type: 'button', className: 'link', text: 'Clear all', onclick: () => setView({ conditions: [] }) }));
    }
  }

  function renderChooser() {
    if (!allColumns) return;
    const shown = new Set(view.columns || allColumns.map((c) => c.name));
    columnsSummary.textContent = view.columns ? `Columns (${view.columns.length} of ${allColumns.length})` : `Columns (${allColumns.length})`;
    columnsList.replaceChildren(
      ...allColumns.map((c, i) => {
        const box = el('input', { type: 'checkbox', id: `col-${i}`, checked: shown.has(c.name) });
        box.addEventListener('change', () => {
          const boxes = columnsList.querySelectorAll('input[type=checkbox]');
          const chosen = allColumns.filter((_, j) => boxes[j].checked).map((column) => column.name);
          if (chosen.length) setColumns(chosen);
          else box.checked = true;
        });
        return el('label', { for: `col-${i}`, className: 'check' }, box, ' ', c.name, el('span', { className: 'dtype', text: ` ${c.dtype}` }));
      }),
    );
  }

  function viewQuery(extra = {}) {
    const q = new URLSearchParams();
    const where = joinConditions(view.conditions);
    if (where) q.set('where', where);
    const orderby = view.sort ? orderByText(view.sort) : view.orderby;
    if (orderby) q.set('orderby', orderby);
    if (view.q) q.set('q', view.q);
    if (view.columns) q.set('columns', view.columns.join(','));
    for (const [k, v] of Object.entries(extra)) q.set(k, String(v));
    return q;
  }

  function showError(err) {
    error.hidden = false;
    error.textContent = err.message;
  }

  /** A GET of this view, tried again while the server is busy. */
  const getView = (url, signal) => api.retryBusy(() => api.getJson(url, { signal }), signal);

  /** Rows, then facets: one request at a time, so the page holds at most one of the
   *  server's query slots; a newer view aborts both. */
  async function load() {
    renderChips();
    facetsButton.setAttribute('aria-pressed', String(view.facets));
    facetsPanel.hidden = !view.facets;
    rowsRequest?.abort();
    facetsRequest?.abort();
    facetsRequest = null;
    const controller = new AbortController();
    rowsRequest = controller;
    container.setAttribute('aria-busy', 'true');
    status.textContent = 'Loading…';
    if (view.facets) facetsPanel.setAttribute('aria-busy', 'true');
    try {
      if (!allColumns && view.columns) {
        // Without columns=, the first page names every column.
        allColumns = (await getView(`${path}/rows?limit=1`, controller.signal)).columns;
      }
      const page = await getView(`${path}/rows?${viewQuery({ offset: view.offset, limit: view.limit })}`, controller.signal);
      if (controller !== rowsRequest) return;
      if (!allColumns) allColumns = page.columns;
      answer = page;
      error.hidden = true;
      renderRows();
      renderChooser();
      if (view.facets) loadFacets();
    } catch (err) {
      if (err.name === 'AbortError' || controller !== rowsRequest) return;
      if (err.status === 401) return;
      showError(err);
      status.textContent = '';
      gridBox.replaceChildren();
      answer = null;
      updatePager();
    } finally {
      if (controller === rowsRequest) container.removeAttribute('aria-busy');
    }
  }

  function renderRows() {
    const filteredColumns = new Set();
    for (const c of view.conditions) {
      const m = /^\(?"((?:[^"]|"")*)"/.exec(c);
      if (m) filteredColumns.add(m[1].replace(/""/g, '"'));
    }
    renderGrid(gridBox, answer, {
      caption: `Rows of ${record.file_name}`,
      firstRow: answer.offset + 1,
      totalRows: answer.total_rows,
      sort: view.sort || [],
      filtered: [...filteredColumns],
      onSort,
      onMenu: openMenu,
      empty: view.conditions.length || view.q ? 'No row matches.' : 'No rows here.',
    });
    const first = answer.rows.length ? answer.offset + 1 : 0;
    const last = answer.offset + answer.rows.length;
    const narrowed = view.conditions.length || view.q;
    status.textContent = answer.rows.length
      ? `Rows ${shortNumber(first)}–${shortNumber(last)} of ${shortNumber(answer.total_rows)}${narrowed ? ` matching (of ${shortNumber(record.row_count)})` : ''}`
      : `${shortNumber(answer.total_rows)} rows${narrowed ? ` matching (of ${shortNumber(record.row_count)})` : ''}`;
    updatePager();
  }

  function lastOffset() {
    const total = answer ? answer.total_rows : 0;
    return total ? Math.floor((total - 1) / view.limit) * view.limit : 0;
  }

  function updatePager() {
    const total = answer ? answer.total_rows : 0;
    pager.first.disabled = !answer || view.offset === 0;
    pager.prev.disabled = !answer || view.offset === 0;
    pager.next.disabled = !answer || view.offset + view.limit >= total;
    pager.last.disabled = !answer || view.offset >= lastOffset();
    gotoInput.max = String(Math.max(1, total));
  }

  async function loadFacets() {
    facetsRequest?.abort();
    const controller = new AbortController();
    facetsRequest = controller;
    const names = (view.columns || allColumns.map((c) => c.name)).slice(0, FACET_COLUMNS);
    facetsPanel.setAttribute('aria-busy', 'true');
    try {
      const extra = { limit: FACET_VALUES };
      const query = viewQuery(extra);
      query.delete('orderby');
      query.set('columns', names.join(','));
      const result = await getView(`${path}/facets?${query}`, controller.signal);
      if (controller !== facetsRequest) return;
      renderFacets(result, names);
    } catch (err) {
      if (err.name === 'AbortError' || controller !== facetsRequest) return;
      facetsPanel.replaceChildren(el('p', { className: 'muted', text: `No facets: ${err.message}` }));
    } finally {
      if (controller === facetsRequest) facetsPanel.removeAttribute('aria-busy');
    }
  }

  /** Facets in the grid's column order (the answer's object is keyed by name). */
  function renderFacets(result, names) {
    const sections = names.filter((n) => result.facets[n]).map((column) => {
      const facet = result.facets[column];
      const values = facet.values || [];
      const most = Math.max(1, ...values.map((v) => v.count));
      const label = (item) => {
        if (item.value === null) return 'missing';
        if (facet.kind === 'bins') return `${formatEdge(item.value)} – ${formatEdge(item.to)}`;
        return typeof item.value === 'string' ? item.value : JSON.stringify(item.value);
      };
      const kind = facet.kind === 'dates' ? `by ${facet.period}` : facet.kind === 'bins' ? 'bins' : 'most common';
      return el('section', { className: 'facet', 'data-column': column },
        el('h3', {}, el('span', { text: column }), el('span', { className: 'muted small', text: ` ${kind}` })),
        el('ul', {}, values.map((item, i) =>
          el('li', {},
            el('button', {
              type: 'button', className: 'facet-value', 'data-value': item.value === null ? '' : String(item.value),
              title: `Keep only these rows: ${facetCondition(column, facet, item, i === values.length - 1 || values[i + 1]?.value === null)}`,
              onclick: () => addCondition(facetCondition(column, facet, item, i === values.length - 1 || values[i + 1]?.value === null)),
            },
            el('span', { className: `facet-label${item.value === null ? ' null' : ''}`, text: label(item) }),
            el('span', { className: 'facet-count', text: shortNumber(item.count) }),
            el('span', { className: 'facet-bar', 'aria-hidden': 'true' },
              barOf(item.count / most)))))),
        facet.other ? el('p', { className: 'muted small', text: `${shortNumber(facet.other)} more in other values` }) : null);
    });
    facetsPanel.replaceChildren(...(sections.length ? sections : [el('p', { className: 'muted', text: 'No facets.' })]));
  }

  /** A bar as an SVG of the given fraction (no inline styles under the page's CSP). */
  function barOf(fraction) {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 100 4');
    svg.setAttribute('preserveAspectRatio', 'none');
    const rect = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
    rect.setAttribute('width', String(Math.max(1, fraction * 100)));
    rect.setAttribute('height', '4');
    svg.append(rect);
    return svg;
  }

  function formatEdge(n) {
    if (typeof n !== 'number') return String(n);
    return Number.isInteger(n) ? numberFormat.format(n) : String(Number(n.toPrecision(4)));
  }

  let menu = null;
  function closeMenu() {
    menu?.remove();
    menu = null;
  }

  function openMenu(column, button) {
    closeMenu();
    const operator = el('select', { id: 'filter-op', 'aria-label': 'Operator' }, OPERATORS.map((op) => el('option', { value: op, text: op })));
    const value = el('input', { id: 'filter-value', 'aria-label': 'Value', autocomplete: 'off', spellcheck: 'false', placeholder: isNumeric(column.dtype) ? '10' : 'text' });
    operator.addEventListener('change', () => {
      value.disabled = operator.value.startsWith('IS ');
    });
    const form = el('form', { className: 'col-popover card', id: 'filter-menu', role: 'dialog', 'aria-label': `Filter ${column.name}` },
      el('p', { className: 'popover-title' }, el('strong', { text: column.name }), el('span', { className: 'muted', text: ` ${column.dtype}` })),
      el('div', { className: 'row' },
        el('button', { type: 'button', text: 'Sort ↑', onclick: () => { closeMenu(); setView({ sort: [{ column: column.name, descending: false }], orderby: '' }); } }),
        el('button', { type: 'button', text: 'Sort ↓', onclick: () => { closeMenu(); setView({ sort: [{ column: column.name, descending: true }], orderby: '' }); } }),
        el('button', { type: 'button', text: 'Hide column', onclick: () => {
          closeMenu();
          const shown = (view.columns || allColumns.map((c) => c.name)).filter((n) => n !== column.name);
          if (shown.length) setColumns(shown);
        } })),
      el('div', { className: 'row' }, operator, value),
      el('div', { className: 'row end' },
        el('button', { type: 'button', text: 'Cancel', onclick: () => { closeMenu(); button.focus(); } }),
        el('button', { type: 'submit', className: 'primary', text: 'Filter' })));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!operator.value.startsWith('IS ') && value.value === '') {
        value.focus();
        return;
      }
      closeMenu();
      addCondition(condition(column.name, operator.value, value.value));
    });
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        closeMenu();
        button.focus();
      }
    });
    const box = button.getBoundingClientRect();
    const host = container.getBoundingClientRect();
    form.classList.add('positioned');
    menu = form;
    container.append(form);
    const left = Math.min(box.left - host.left, Math.max(0, host.width - form.offsetWidth));
    form.style.setProperty('left', `${Math.max(0, left)}px`);
    form.style.setProperty('top', `${box.bottom - host.top + 4}px`);
    value.focus();
  }

  document.addEventListener('mousedown', (event) => {
    if (menu && container.isConnected && !menu.contains(event.target) && !event.target.closest?.('.col-menu')) closeMenu();
  });

  search.addEventListener('input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      if (search.value !== view.q) setView({ q: search.value });
    }, SEARCH_DELAY_MS);
  });
  search.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      clearTimeout(searchTimer);
      if (search.value !== view.q) setView({ q: search.value });
    }
  });
  container.querySelector('#where-form').addEventListener('submit', (event) => {
    event.preventDefault();
    addCondition(whereInput.value);
    whereInput.value = '';
  });
  facetsButton.addEventListener('click', () => setView({ facets: !view.facets }, { keepOffset: true }));
  pageSize.addEventListener('change', () => setView({ limit: Number(pageSize.value), offset: Math.floor(view.offset / Number(pageSize.value)) * Number(pageSize.value) }, { keepOffset: true }));
  pager.first.addEventListener('click', () => setView({ offset: 0 }, { keepOffset: true }));
  pager.prev.addEventListener('click', () => setView({ offset: Math.max(0, view.offset - view.limit) }, { keepOffset: true }));
  pager.next.addEventListener('click', () => setView({ offset: view.offset + view.limit }, { keepOffset: true }));
  pager.last.addEventListener('click', () => setView({ offset: lastOffset() }, { keepOffset: true }));
  gotoForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const row = Number(gotoInput.value);
    if (!Number.isSafeInteger(row) || row < 1) return;
    const total = answer ? answer.total_rows : row;
    setView({ offset: Math.min(row, Math.max(1, total)) - 1 }, { keepOffset: true });
  });
  downloadButton.addEventListener('click', async () => {
    downloadButton.disabled = true;
    try {
      const query = viewQuery({ format: format.value });
      const response = await api.request('GET', `${path}/rows?${query}`);
      await saveResponse(response, `${record.file_name}.${format.value}`);
    } catch (err) {
      if (err.status !== 401) showError(err);
    } finally {
      downloadButton.disabled = false;
    }
  });

  load();

  return {
    /** Shows the view an address names (a link pasted, the back button). */
    apply(nextParams) {
      const next = viewFromParams(nextParams);
      if (paramsFromView(next).toString() === paramsFromView(view).toString()) return;
      view = next;
      search.value = view.q;
      pageSize.value = String(view.limit);
      load();
    },
    params: () => paramsFromView(view),
    stop() {
      rowsRequest?.abort();
      facetsRequest?.abort();
      clearTimeout(searchTimer);
    },
  };
}
