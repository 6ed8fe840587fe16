// The admin page of `durable serve`: plain JavaScript, no build step. Every request carries
// the token as `Authorization: Bearer` (kept in this tab's sessionStorage, never a cookie),
// so another site's page cannot act on the user's behalf.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { flags: {}, version: 0, who: null, changed: {}, flash: new Set() };

function token() { return sessionStorage.getItem('durable-token') || ''; }

async function api(method, path, body) {
  const headers = {};
  if (token()) headers.authorization = 'Bearer ' + token();
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : body });
  let data = null;
  const text = await response.text();
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  return { ok: response.ok, status: response.status, data };
}

function notice(text, bad) {
  const el = $('notice');
  el.textContent = text || '';
  el.hidden = !text;
  el.classList.toggle('bad', !!bad);
}

function isDefinition(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value) && ('state' in value || 'variants' in value);
}

function short(value) {
  const text = JSON.stringify(value);
  return text.length > 120 ? text.slice(0, 117) + '…' : text;
}

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props || {});
  for (const child of children) node.append(child);
  return node;
}

// ---- who is signed in -------------------------------------------------------------------

async function whoami() {
  const { data } = await api('GET', '/whoami');
  state.who = data;
  const banner = $('banner');
  if (data.environment) {
    banner.textContent = data.environment;
    banner.className = 'banner ' + data.environment.toLowerCase().replace(/[^a-z0-9-]/g, '');
    banner.hidden = false;
  }
  $('where').textContent = data.namespace === null ? '' : data.namespace + ' · ' + data.store + (data.read_only ? ' · read-only' : '');
  const signedIn = data.access === 'admin' || data.access === 'read';
  $('whoami').textContent = signedIn ? 'signed in (' + data.access + ': ' + data.name + ')' : '';
  $('token').hidden = signedIn;
  $('login-button').hidden = signedIn;
  $('logout').hidden = !signedIn;
  $('add').hidden = !canWrite();
  if (data.access === 'invalid') notice('That token is not valid.', true);
  else if (!signedIn && data.reads_need_token) notice('Sign in with a read or admin token to see the flags.');
  else if (!signedIn && data.writable) notice('Sign in with an admin token to change flags.');
  else if (data.read_only) notice('This service is read-only: flags cannot be changed here.');
  else if (signedIn && data.access === 'read') notice('Signed in with a read token: flags cannot be changed.');
  else if (!data.writable) notice('No admin token is configured: flags cannot be changed here.');
  else notice('');
}

function canWrite() {
  return !!state.who && state.who.writable && state.who.access === 'admin';
}

// ---- the flag list ----------------------------------------------------------------------

async function loadFlags() {
  const { ok, status, data } = await api('GET', '/flags');
  if (!ok) {
    if (status !== 401) notice('Cannot read the flags: ' + (data && data.error || status), true);
    return;
  }
  state.flags = data.flags;
  state.version = data.version;
  render();
}

async function loadChanged() {
  const { ok, data } = await api('GET', '/history?limit=500');
  if (!ok) return;
  for (const entry of data.entries.slice().reverse()) if (entry.key) state.changed[entry.key] = entry.version;
  render();
}

function render() {
  $('version').textContent = 'version ' + state.version;
  const filter = $('search').value.trim().toLowerCase();
  const body = $('flags').tBodies[0];
  body.replaceChildren();
  const keys = Object.keys(state.flags).filter((key) => key.toLowerCase().includes(filter) ||
    JSON.stringify(state.flags[key]).toLowerCase().includes(filter));
  for (const key of keys) body.append(row(key, state.flags[key]));
  $('empty').hidden = Object.keys(state.flags).length > 0;
  $('flag-names').replaceChildren(...Object.keys(state.flags).map((key) => el('option', { value: key })));
}

function row(key, value) {
  const tr = el('tr');
  tr.dataset.key = key;
  if (state.flash.has(key)) tr.classList.add('flash');
  let shown, stateText, stateClass, toggle = null;
  if (isDefinition(value)) {
    const variants = Object.entries(value.variants || {}).map(([name, v]) => name + '=' + short(v)).join(', ');
    shown = el('span', {}, el('code', { textContent: variants }), el('span', { className: 'muted', textContent:
      ' · default ' + (value.defaultVariant ?? '—') + (value.targeting && Object.keys(value.targeting).length ? ' · targeting' : '') }));
    const on = value.state !== 'DISABLED';
    stateText = on ? 'enabled' : 'disabled';
    stateClass = on ? 'on' : 'off';
    toggle = { label: on ? 'Disable' : 'Enable', next: { ...value, state: on ? 'DISABLED' : 'ENABLED' } };
  } else {
    shown = el('code', { textContent: short(value) });
    if (typeof value === 'boolean') {
      stateText = value ? 'on' : 'off';
      stateClass = value ? 'on' : 'off';
      toggle = { label: value ? 'Turn off' : 'Turn on', next: !value };
    } else {
      stateText = 'value';
      stateClass = '';
    }
  }
  tr.append(el('td', {}, el('strong', { textContent: key })), el('td', {}, shown),
    el('td', {}, el('span', { className: 'state ' + stateClass, textContent: stateText })),
    el('td', { className: 'muted', textContent: state.changed[key] ? 'v' + state.changed[key] : '' }));
  const actions = el('td', { className: 'actions' });
  const history = el('button', { type: 'button', className: 'history', textContent: 'History' });
  history.addEventListener('click', () => { $('history-key').value = key; showTab('history'); });
  actions.append(history);
  if (canWrite()) {
    if (toggle) {
      const button = el('button', { type: 'button', className: 'toggle', textContent: toggle.label });
      button.addEventListener('click', async () => {
        if (await confirmed(toggle.label + ' “' + key + '”?')) await save(key, toggle.next);
      });
      actions.append(button);
    }
    const edit = el('button', { type: 'button', className: 'edit', textContent: 'Edit' });
    edit.addEventListener('click', () => openEditor(key, value));
    const remove = el('button', { type: 'button', className: 'delete danger', textContent: 'Delete' });
    remove.addEventListener('click', async () => {
      if (!(await confirmed('Delete “' + key + '”? Applications will get their default.'))) return;
      const { ok, data } = await api('DELETE', '/flags/' + encodeURIComponent(key));
      if (!ok) notice('Delete failed: ' + (data && data.error), true); else await loadFlags();
    });
    actions.append(edit, remove);
  }
  tr.append(actions);
  return tr;
}

function confirmed(text) {
  return new Promise((resolve) => {
    const dialog = $('confirm');
    $('confirm-text').textContent = text;
    dialog.returnValue = '';
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), { once: true });
    dialog.showModal();
  });
}

async function save(key, value) {
  const { ok, data } = await api('PUT', '/flags/' + encodeURIComponent(key), JSON.stringify(value));
  if (!ok) { notice('Save failed: ' + (data && data.error), true); return false; }
  notice('');
  await loadFlags();
  return true;
}

// ---- the editor -------------------------------------------------------------------------

function openEditor(key, value) {
  $('editor-title').textContent = key === null ? 'Add a flag' : 'Edit “' + key + '”';
  $('editor-key').value = key ?? '';
  $('editor-key').readOnly = key !== null;
  $('editor-value').value = key === null
    ? JSON.stringify({ state: 'ENABLED', variants: { on: true, off: false }, defaultVariant: 'off' }, null, 2)
    : JSON.stringify(value, null, 2);
  $('editor-error').textContent = '';
  $('editor').showModal();
}

async function submitEditor(event) {
  event.preventDefault();
  const key = $('editor-key').value.trim();
  let value;
  try { value = JSON.parse($('editor-value').value); } catch (err) {
    $('editor-error').textContent = 'Not JSON: ' + err.message;
    return;
  }
  if (!key) { $('editor-error').textContent = 'A flag needs a name.'; return; }
  const { ok, data } = await api('PUT', '/flags/' + encodeURIComponent(key), JSON.stringify(value));
  if (!ok) { $('editor-error').textContent = (data && data.error) || 'refused'; return; }
  $('editor').close();
  await loadFlags();
}

// ---- history, evaluation, status --------------------------------------------------------

function when(ms) { return ms ? new Date(ms).toLocaleString() : ''; }

async function loadHistory() {
  const key = $('history-key').value.trim();
  const { ok, data } = await api('GET', '/history?limit=200' + (key ? '&key=' + encodeURIComponent(key) : ''));
  const body = $('history').tBodies[0];
  body.replaceChildren();
  if (!ok) { notice('Cannot read the history: ' + (data && data.error), true); return; }
  for (const entry of data.entries) {
    if (entry.gap) {
      body.append(el('tr', {}, el('td', { colSpan: 5, className: 'muted', textContent:
        'versions ' + (entry.gap.after + 1) + '–' + (entry.gap.before - 1) + ': no record (trimmed, or written without a journal)' })));
      continue;
    }
    const change = entry.deleted ? 'deleted (was ' + short(entry.old) + ')'
      : (entry.old === null ? 'created: ' : short(entry.old) + ' → ') + short(entry.new);
    body.append(el('tr', {}, el('td', { textContent: 'v' + entry.version }), el('td', { textContent: when(entry.time_ms) }),
      el('td', {}, el('strong', { textContent: entry.key })), el('td', {}, el('code', { textContent: change })),
      el('td', { className: 'muted', textContent: entry.actor + (entry.reason ? ' — ' + entry.reason : '') })));
  }
  $('history-empty').hidden = data.entries.length > 0;
}

async function evaluate() {
  const key = $('eval-flag').value.trim();
  let context;
  try { context = JSON.parse($('eval-context').value || '{}'); } catch (err) {
    $('eval-result').textContent = 'The context is not JSON: ' + err.message;
    return;
  }
  const { data } = await api('POST', '/ofrep/v1/evaluate/flags/' + encodeURIComponent(key), JSON.stringify({ context }));
  $('eval-result').textContent = JSON.stringify(data, null, 2);
}

async function loadStatus() {
  const { ok, data } = await api('GET', '/status');
  if (!ok) return;
  const list = $('status');
  list.replaceChildren();
  const ms = (v) => v === null || v === undefined ? '—' : v < 1000 ? v + ' ms' : (v / 1000).toFixed(1) + ' s';
  const rows = [
    ['Version', data.version], ['Flags', data.keys], ['Change hints', data.hints],
    ['Staleness', data.staleness_ms === 0 ? 'none' : ms(data.staleness_ms)],
    ['Started from backup', data.from_backup ? 'yes — the store has not answered since' : 'no'],
    ['Store failing for', ms(data.failing_for_ms)], ['Last error', data.last_error || '—'],
    ['Last store trip', data.last_success_ms_ago === null ? 'never' : ms(data.last_success_ms_ago) + ' ago'],
    ['Broken definitions', data.broken.length ? data.broken.map((b) => b.key + ': ' + b.error).join('; ') : 'none'],
  ];
  for (const [name, value] of rows) list.append(el('dt', { textContent: name }), el('dd', { textContent: String(value) }));
}

function showTab(name) {
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.tab === name);
  for (const panel of document.querySelectorAll('.panel')) panel.hidden = panel.id !== 'panel-' + name;
  if (name === 'history') loadHistory();
  if (name === 'status') loadStatus();
}

// ---- live updates: the server's event stream, read with fetch (it carries the token) ----

let refreshing = null;
function refreshSoon() {
  if (refreshing) return;
  refreshing = setTimeout(async () => {
    refreshing = null;
    await loadFlags();
    if (!$('panel-history').hidden) await loadHistory();
    if (!$('panel-status').hidden) await loadStatus();
  }, 50);
}

function handleEvent(block) {
  let name = 'message', data = '';
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) name = line.slice(6).trim();
    else if (line.startsWith('data:')) data += line.slice(5).trim();
  }
  if (name === 'change') {
    const change = JSON.parse(data);
    state.changed[change.key] = change.version;
    state.flash.add(change.key);
    setTimeout(() => state.flash.delete(change.key), 2000);
    refreshSoon();
  } else if (name === 'resync' || name === 'version') {
    refreshSoon();
  }
}

async function live() {
  for (;;) {
    try {
      const headers = token() ? { authorization: 'Bearer ' + token() } : {};
      const response = await fetch('/events', { headers });
      if (response.ok) {
        $('live').classList.remove('off');
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            handleEvent(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
      }
    } catch (_) { /* the server went away: try again */ }
    $('live').classList.add('off');
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

// ---- start ------------------------------------------------------------------------------

async function start() {
  await whoami();
  await loadFlags();
  await loadChanged();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', async (event) => {
    event.preventDefault();
    sessionStorage.setItem('durable-token', $('token').value.trim());
    $('token').value = '';
    await start();
  });
  $('logout').addEventListener('click', async () => { sessionStorage.removeItem('durable-token'); await start(); });
  $('search').addEventListener('input', render);
  $('add').addEventListener('click', () => openEditor(null, null));
  $('editor-form').addEventListener('submit', submitEditor);
  $('editor-cancel').addEventListener('click', () => $('editor').close());
  $('history-load').addEventListener('click', loadHistory);
  $('eval-run').addEventListener('click', evaluate);
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => showTab(tab.dataset.tab));
  start();
  live();
});
