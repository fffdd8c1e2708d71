// A small Markdown renderer for the summaries: headings, paragraphs, lists, fenced code,
// pipe tables, **bold**, *emphasis* and `code`. It builds DOM nodes and sets text with
// textContent only, so column names and values in a summary can never become HTML.
// Links are shown as their text (a summary has no reason to send anyone elsewhere).

/** Renders `source` into a new DocumentFragment. */
export function renderMarkdown(source) {
  const fragment = document.createDocumentFragment();
  const lines = String(source).replace(/\r\n?/g, '\n').split('\n');
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      // Summary headings sit under the page's own h2 sections.
      const level = Math.min(6, heading[1].length + 2);
      fragment.append(block(`h${level}`, heading[2]));
      i += 1;
      continue;
    }
    if (/^\s*```/.test(line)) {
      const pre = document.createElement('pre');
      const code = document.createElement('code');
      const body = [];
      i += 1;
      while (i < lines.length && !/^\s*```/.test(lines[i])) body.push(lines[i++]);
      i += 1;
      code.textContent = body.join('\n');
      pre.append(code);
      fragment.append(pre);
      continue;
    }
    if (isListItem(line)) {
      const ordered = /^\s*\d+[.)]\s/.test(line);
      const list = document.createElement(ordered ? 'ol' : 'ul');
      while (i < lines.length && isListItem(lines[i])) {
        list.append(block('li', lines[i].replace(/^\s*(?:[-*+]|\d+[.)])\s+/, '')));
        i += 1;
      }
      fragment.append(list);
      continue;
    }
    if (line.trim().startsWith('|') && i + 1 < lines.length && /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/.test(lines[i + 1])) {
      const rows = [];
      rows.push(cells(line));
      i += 2;
      while (i < lines.length && lines[i].trim().startsWith('|')) rows.push(cells(lines[i++]));
      fragment.append(table(rows));
      continue;
    }
    const paragraph = [];
    while (i < lines.length && lines[i].trim() && !isListItem(lines[i]) && !/^#{1,6}\s/.test(lines[i]) && !/^\s*```/.test(lines[i])) {
      paragraph.push(lines[i].trim());
      i += 1;
    }
    fragment.append(block('p', paragraph.join(' ')));
  }
  return fragment;
}

function isListItem(line) {
  return /^\s*(?:[-*+]|\d+[.)])\s+/.test(line);
}

function cells(line) {
  return line.trim().replace(/^\|/, '').replace(/\|$/, '').split('|').map((c) => c.trim());
}

function table(rows) {
  const element = document.createElement('table');
  const head = element.createTHead().insertRow();
  for (const text of rows[0]) {
    const th = document.createElement('th');
    th.append(inline(text));
    head.append(th);
  }
  const body = element.createTBody();
  for (const row of rows.slice(1)) {
    const tr = body.insertRow();
    for (const text of row) tr.insertCell().append(inline(text));
  }
  return element;
}

function block(tag, text) {
  const element = document.createElement(tag);
  element.append(inline(text));
  return element;
}

/** Inline spans. An opening mark without its closing mark stays literal text. */
export function inline(text) {
  const fragment = document.createDocumentFragment();
  let plain = '';
  const flush = () => {
    if (plain) fragment.append(document.createTextNode(plain));
    plain = '';
  };
  let i = 0;
  while (i < text.length) {
    const rest = text.slice(i);
    if (rest[0] === '\\' && rest.length > 1 && /[\\`*_[\]()#|-]/.test(rest[1])) {
      plain += rest[1];
      i += 2;
      continue;
    }
    if (rest[0] === '`') {
      const ticks = /^`+/.exec(rest)[0];
      const end = rest.indexOf(ticks, ticks.length);
      if (end > 0) {
        flush();
        const code = document.createElement('code');
        code.textContent = rest.slice(ticks.length, end).trim() || rest.slice(ticks.length, end);
        fragment.append(code);
        i += end + ticks.length;
        continue;
      }
    }
    const strong = /^(\*\*|__)(?=\S)([\s\S]*?\S)\1/.exec(rest);
    if (strong) {
      flush();
      const element = document.createElement('strong');
      element.append(inline(strong[2]));
      fragment.append(element);
      i += strong[0].length;
      continue;
    }
    const em = /^([*_])(?=[^\s*_])([\s\S]*?[^\s\\])\1(?![*_])/.exec(rest);
    if (em && !(rest[0] === '_' && /\w/.test(text[i - 1] || ''))) {
      flush();
      const element = document.createElement('em');
      element.append(inline(em[2]));
      fragment.append(element);
      i += em[0].length;
      continue;
    }
    const link = /^\[([^\]]+)\]\(([^)\s]*)\)/.exec(rest);
    if (link) {
      flush();
      fragment.append(inline(link[1]));
      i += link[0].length;
      continue;
    }
    plain += rest[0];
    i += 1;
  }
  flush();
  return fragment;
}
