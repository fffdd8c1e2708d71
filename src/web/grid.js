// A table of rows as the API answers them ({columns: [{name, dtype}], rows, cut}), shared by
// the Data and SQL tabs. Every cell and header is text (textContent), never HTML.

/** Builds an element: `text` and `className` as properties, `on…` as listeners, the rest as
 *  attributes; string children become text nodes. */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') element.textContent = value;
    else if (key === 'className') element.className = value;
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const NUMERIC = /^(int|uint|float)/i;

/** Whether a dtype (pandas' names: int64, float64, Int32, …) holds numbers. */
export function isNumeric(dtype) {
  return NUMERIC.test(dtype || '');
}

/** A cell as text: numbers and booleans as JSON writes them, null as empty (styled). */
export function cellText(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

/**
 * A grid in `container`. Options:
 * - `caption`: accessible name of the table;
 * - `sort`: [{column, descending}] shown as arrows in headers (with their order when > 1);
 * - `onSort(column, additive)`: a header's name was clicked (additive: shift held);
 * - `onMenu(column, button)`: a header's ▾ was clicked;
 * - `filtered`: names of columns with a filter, marked in their header.
 */
export function renderGrid(container, answer, options = {}) {
  const { columns, rows } = answer;
  const cut = new Set((answer.cut || []).map(([r, c]) => `${r},${c}`));
  const first = options.firstRow ?? 1;
  const sort = options.sort || [];
  const filtered = new Set(options.filtered || []);
  const headers = columns.map((column) => {
    const key = sort.findIndex((s) => s.column === column.name);
    const direction = key < 0 ? 'none' : sort[key].descending ? 'descending' : 'ascending';
    const th = el('th', { scope: 'col', 'aria-sort': direction, 'data-column': column.name, title: `${column.name} · ${column.dtype}` });
    const label = options.onSort
      ? el('button', { type: 'button', className: 'col-sort', onclick: (event) => options.onSort(column.name, event.shiftKey) },
        el('span', { className: 'col-name', text: column.name }))
      : el('span', { className: 'col-name', text: column.name });
    const text = el('div', { className: 'th-text' }, label);
    if (key >= 0) {
      const arrow = sort[key].descending ? '↓' : '↑';
      label.append(el('span', { className: 'sort-mark', 'aria-hidden': 'true', text: sort.length > 1 ? `${arrow}${key + 1}` : arrow }));
    }
    if (filtered.has(column.name)) th.classList.add('is-filtered');
    text.append(el('span', { className: 'dtype', text: column.dtype }));
    const inner = el('div', { className: 'th-inner' }, text);
    if (options.onMenu) {
      const menu = el('button', {
        type: 'button',
        className: 'col-menu',
        'aria-label': `Filter ${column.name}`,
        'aria-haspopup': 'dialog',
        text: '▾',
      });
      menu.addEventListener('click', () => options.onMenu(column, menu));
      inner.append(menu);
    }
    th.append(inner);
    if (isNumeric(column.dtype)) th.classList.add('num');
    return th;
  });
  const numeric = columns.map((c) => isNumeric(c.dtype));
  const body = el('tbody');
  rows.forEach((row, r) => {
    const tr = el('tr', { 'data-row': String(first + r) }, el('th', { scope: 'row', className: 'rownum', text: String(first + r) }));
    row.forEach((value, c) => {
      const td = el('td', { text: cellText(value) });
      if (value === null || value === undefined) {
        td.className = numeric[c] ? 'null num' : 'null';
        td.title = 'missing';
      } else if (cut.has(`${r},${c}`)) {
        td.className = 'cut';
        td.title = 'Cut to its first 1,000 characters here; download the view for the whole text';
      } else if (numeric[c]) td.className = 'num';
      tr.append(td);
    });
    body.append(tr);
  });
  const table = el(
    'table',
    { className: 'grid', 'aria-label': options.caption || 'Rows', 'aria-rowcount': options.totalRows ?? undefined },
    el('thead', {}, el('tr', {}, el('th', { scope: 'col', className: 'rownum', text: '#' }), ...headers)),
    body,
  );
  container.replaceChildren(table);
  if (!rows.length) container.append(el('p', { className: 'muted empty-grid', text: options.empty || 'No rows.' }));
  return table;
}
