// A file's share links in its view: make one (an expiry, an optional download limit), copy
// its address, see the file's links and revoke them. The address is shown only when the
// link is made: the server keeps a hash of its secret, never the secret.

import * as api from './api.js';
import { el } from './grid.js';

const EXPIRIES = [['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days']];
const STATES = { active: 'Active', expired: 'Expired', used_up: 'Used up', content_changed: 'Content changed' };

/** Shows the share panel of `record` in `container`. `toast(message, kind)` reports,
 *  `formatDate(iso)` writes times, `onClose()` is called by its Close button. */
export function mountShare(container, record, { toast, formatDate, onClose }) {
  const path = `/files/${api.segment(record.file_name)}/links`;
  const expiry = el('select', { id: 'share-expiry' },
    EXPIRIES.map(([value, label]) => el('option', { value, text: label, selected: value === '86400' })));
  const limit = el('input', {
    id: 'share-limit', type: 'number', min: '1', max: '1000000', step: '1', inputmode: 'numeric', placeholder: 'No limit', size: '8',
  });
  const message = el('p', { className: 'message error-text', id: 'share-message', 'aria-live': 'polite' });
  const address = el('input', { id: 'share-url', className: 'mono grow', readonly: true, 'aria-label': 'The new link' });
  const made = el('div', { className: 'row', id: 'share-made', hidden: true },
    address,
    el('button', { type: 'button', id: 'share-copy', text: 'Copy', onclick: () => copy() }),
    el('span', { className: 'muted small', text: 'Shown only now: copy it before closing.' }));
  const list = el('div', { id: 'share-links', 'aria-live': 'polite' });

  async function copy() {
    try {
      await navigator.clipboard.writeText(address.value);
      toast('Link copied.');
    } catch {
      // No clipboard (an insecure origin, or permission refused): leave it selected.
      address.focus();
      address.select();
      toast('Press Ctrl+C to copy the selected link.');
    }
  }

  async function make(event) {
    event.preventDefault();
    message.textContent = '';
    const body = { expires_in: Number(expiry.value) };
    if (limit.value.trim()) body.max_downloads = Number(limit.value);
    try {
      const link = await (await api.request('POST', path, { json: body })).json();
      address.value = link.url;
      made.hidden = false;
      address.focus();
      address.select();
      await load();
    } catch (error) {
      if (error.status !== 401) message.textContent = error.message;
    }
  }

  async function revoke(link) {
    try {
      await api.request('DELETE', `${path}/${encodeURIComponent(link.id)}`);
      toast('Link revoked: its address no longer downloads the file.');
      await load();
    } catch (error) {
      if (error.status !== 401) message.textContent = error.message;
    }
  }

  async function load() {
    let links;
    try {
      links = await api.getJson(path);
    } catch (error) {
      if (error.status !== 401) list.replaceChildren(el('p', { className: 'notice', text: error.message }));
      return;
    }
    if (!links.length) {
      list.replaceChildren(el('p', { className: 'muted', text: 'No links yet.' }));
      return;
    }
    list.replaceChildren(el('table', { className: 'links', id: 'share-table' },
      el('caption', { className: 'visually-hidden', text: 'Share links of this file' }),
      el('thead', {}, el('tr', {},
        ['Made', 'Expires', 'Downloads', 'State', ''].map((name) => el('th', { scope: 'col', text: name })))),
      el('tbody', {}, links.map((link) => el('tr', { 'data-link': link.id },
        el('td', { text: formatDate(link.created_at) }),
        el('td', { text: formatDate(link.expires_at) }),
        el('td', { className: 'num', text: link.max_downloads === null ? `${link.downloads}` : `${link.downloads} of ${link.max_downloads}` }),
        el('td', { className: 'link-state', text: STATES[link.state] || link.state }),
        el('td', {}, el('button', {
          type: 'button', className: 'danger revoke', text: 'Revoke', 'aria-label': `Revoke the link made ${formatDate(link.created_at)}`,
          onclick: () => revoke(link),
        })))))));
  }

  const form = el('form', { className: 'editor card', id: 'share-panel', onsubmit: make },
    el('h2', { text: 'Share links', className: 'panel-title' }),
    el('p', { className: 'muted small', text: 'Anyone with a link can download this file’s bytes, without signing in, until it expires, reaches its download limit or is revoked — or the file changes or is deleted.' }),
    el('div', { className: 'row' },
      el('label', { for: 'share-expiry', text: 'Expires in' }), expiry,
      el('label', { for: 'share-limit', text: 'Downloads' }), limit,
      el('button', { type: 'submit', className: 'primary', id: 'share-make', text: 'Make link' }),
      el('button', { type: 'button', text: 'Close', onclick: onClose })),
    message,
    made,
    list);
  form.addEventListener('keydown', (event) => {
    if (event.key === 'Escape') onClose();
  });
  container.replaceChildren(form);
  expiry.focus();
  load();
}
