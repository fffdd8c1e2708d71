// Small inline SVG charts for the profile table, built as DOM nodes (text via textContent):
// a box plot (min, quartiles, max) for numbers and dates, bars of the top values otherwise.

const NS = 'http://www.w3.org/2000/svg';
const WIDTH = 180;

function node(tag, attributes = {}, text) {
  const element = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
  if (text !== undefined) element.textContent = text;
  return element;
}

function chart(height, label) {
  const svg = node('svg', {
    width: WIDTH,
    height,
    viewBox: `0 0 ${WIDTH} ${height}`,
    role: 'img',
    'aria-label': label,
    class: 'chart',
  });
  svg.append(node('title', {}, label));
  return svg;
}

/** A value of the profile as a number on the chart's axis (dates as milliseconds). */
function position(value, isDate) {
  if (typeof value === 'number') return value;
  if (isDate && typeof value === 'string') {
    // Dates and date-times without a zone, all read as UTC so that they compare alike.
    let iso = value.includes('T') ? value : value.replace(' ', 'T');
    if (/^\d{4}-\d{2}-\d{2}$/.test(iso)) iso += 'T00:00:00';
    if (!/(Z|[+-]\d{2}:?\d{2})$/.test(iso)) iso += 'Z';
    return Date.parse(iso);
  }
  if (typeof value === 'boolean') return value ? 1 : 0;
  return NaN;
}

/** The chart for one column of a profile, or null when there is nothing to draw. */
export function columnChart(column, rowCount, format) {
  const isDate = column.dtype.startsWith('datetime');
  if (column.quartiles && column.quartiles.length === 3 && column.min !== undefined && column.max !== undefined) {
    const values = [column.min, ...column.quartiles, column.max].map((v) => position(v, isDate));
    if (values.every(Number.isFinite)) return boxPlot(values, [column.min, ...column.quartiles, column.max], format);
  }
  if (column.top_values && column.top_values.length) {
    return topValues(column.top_values, Math.max(1, rowCount - column.null_count), column.top_values_are_estimate);
  }
  return null;
}

function boxPlot(values, shown, format) {
  const [min, q1, median, q3, max] = values;
  const pad = 6;
  const x = (v) => (max === min ? WIDTH / 2 : pad + ((v - min) / (max - min)) * (WIDTH - 2 * pad));
  const label = `min ${format(shown[0])}, first quartile ${format(shown[1])}, median ${format(shown[2])}, third quartile ${format(shown[3])}, max ${format(shown[4])}`;
  const svg = chart(26, label);
  svg.append(
    node('line', { x1: x(min), x2: x(max), y1: 13, y2: 13, class: 'whisker' }),
    node('line', { x1: x(min), x2: x(min), y1: 7, y2: 19, class: 'whisker' }),
    node('line', { x1: x(max), x2: x(max), y1: 7, y2: 19, class: 'whisker' }),
    node('rect', { x: x(q1), y: 4, width: Math.max(1, x(q3) - x(q1)), height: 18, rx: 2, class: 'box' }),
    node('line', { x1: x(median), x2: x(median), y1: 4, y2: 22, class: 'median' }),
  );
  return svg;
}

function topValues(top, present, estimate) {
  const rowHeight = 15;
  const shown = top.slice(0, 5);
  const label = `most frequent values${estimate ? ' (estimated)' : ''}: ${shown.map((t) => `${t.value} (${t.count})`).join(', ')}`;
  const svg = chart(shown.length * rowHeight, label);
  shown.forEach((t, index) => {
    const y = index * rowHeight;
    const share = Math.min(1, t.count / present);
    svg.append(node('rect', { x: 0, y: y + 1, width: Math.max(1, share * WIDTH), height: rowHeight - 2, rx: 2, class: 'bar' }));
    const text = t.value.length > 22 ? `${t.value.slice(0, 21)}…` : t.value;
    svg.append(node('text', { x: 4, y: y + rowHeight - 4, class: 'bar-label' }, `${text} · ${t.count}`));
  });
  return svg;
}
