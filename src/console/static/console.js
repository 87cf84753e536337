// ticketd desk console: the one script. Every page works without it (forms
// post, the server redirects); this adds live updates, presence, keyboard
// shortcuts, drafts that survive a reload, and a pending state on sends.
// No eval, no inline handlers: the page's policy allows this file by nonce.
'use strict';
(() => {
  const body = document.body;
  const me = body.dataset.me || '';
  const csrf = body.dataset.csrf || '';
  const page = body.dataset.page || '';
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const live = $('#live');
  const say = (text) => { if (live) { live.textContent = ''; setTimeout(() => { live.textContent = text; }, 50); } };

  // ------------------------------------------------------------ help
  const help = $('#help');
  const openHelp = () => { if (help && !help.open) help.showModal(); };
  const helpButton = $('#help-open');
  if (helpButton) helpButton.addEventListener('click', openHelp);

  // -------------------------------------------------- sends act once
  // The server refuses a copy anyway (an idempotency key, the ticket's
  // version); this keeps a double click from even trying, and shows it.
  for (const form of $$('form[method="post"]')) {
    form.addEventListener('submit', (e) => {
      if (form.dataset.sending) { e.preventDefault(); return; }
      form.dataset.sending = '1';
      const button = $('button[type="submit"]', form);
      if (button) {
        button.setAttribute('aria-busy', 'true');
        button.dataset.label = button.textContent;
        if (button.textContent.trim().length > 2) button.textContent = button.textContent.trim() + '…';
      }
    });
  }
  window.addEventListener('pageshow', () => {
    for (const form of $$('form[data-sending]')) {
      delete form.dataset.sending;
      const button = $('button[aria-busy]', form);
      if (button) { button.removeAttribute('aria-busy'); if (button.dataset.label) button.textContent = button.dataset.label; }
    }
  });

  // ------------------------------------------------------------ drafts
  const DRAFT_DAYS = 14;
  const draftKey = (n, kind) => `ticketd-draft:${n}:${kind}`;
  try {
    for (let i = localStorage.length - 1; i >= 0; i--) {
      const k = localStorage.key(i);
      if (!k || !k.startsWith('ticketd-draft:')) continue;
      const v = JSON.parse(localStorage.getItem(k) || '{}');
      if (!v.at || Date.now() - v.at > DRAFT_DAYS * 864e5) localStorage.removeItem(k);
    }
  } catch (_) { /* storage off: no drafts */ }
  const done = new URLSearchParams(location.search).get('done');
  for (const form of $$('form[data-draft]')) {
    const kind = form.dataset.draft;
    const key = draftKey(form.dataset.number, kind);
    const area = $('textarea', form);
    if (!area) continue;
    try {
      if (done === kind) localStorage.removeItem(key);
      const saved = JSON.parse(localStorage.getItem(key) || 'null');
      if (saved && saved.text && !area.value) { area.value = saved.text; say(`Your unsent ${kind} was restored.`); }
    } catch (_) { /* ignore */ }
    let timer = 0;
    area.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        try {
          if (area.value.trim()) localStorage.setItem(key, JSON.stringify({ text: area.value, at: Date.now() }));
          else localStorage.removeItem(key);
        } catch (_) { /* full or off */ }
      }, 250);
    });
  }

  // ---------------------------------------------------- live updates
  // One stream per browser: the tab holding the lock reads it and passes
  // events to the others; when it closes, another tab takes over and asks
  // for what it missed.
  const handlers = [];
  const onEvent = (fn) => handlers.push(fn);
  const LAST = 'ticketd-last-event';
  const dispatch = (msg) => {
    try { if (msg.id) localStorage.setItem(LAST, String(msg.id)); } catch (_) { /* ignore */ }
    for (const fn of handlers) { try { fn(msg); } catch (err) { console.error(err); } }
  };
  const KINDS = ['hello', 'tickets', 'presence', 'outbox', 'quarantine', 'spam', 'reset'];
  // One EventSource at a time, closed when the page goes away. The browser
  // reconnects a dropped stream by itself; when it gives up (an error
  // answer, e.g. a session that ended) or keeps failing (the daemon is
  // down), the stream is closed and opened again later, waiting twice as
  // long each time up to a minute, and not at all after MAX_FAILURES.
  const MAX_FAILURES = 12;
  let stream = null;
  let failures = 0;
  let retry = 0;
  const closeStream = () => {
    clearTimeout(retry);
    retry = 0;
    if (stream) { stream.close(); stream = null; }
  };
  const openStream = (relay) => {
    closeStream();
    let last = null;
    try { last = localStorage.getItem(LAST); } catch (_) { /* ignore */ }
    const es = new EventSource('/desk/events' + (last ? `?last=${encodeURIComponent(last)}` : ''));
    stream = es;
    es.addEventListener('open', () => { failures = 0; });
    es.addEventListener('error', () => {
      if (es !== stream) return;
      failures += 1;
      if (es.readyState !== EventSource.CLOSED && failures < 3) return;
      closeStream();
      if (failures >= MAX_FAILURES) { say('Live updates stopped. Reload the page to see changes.'); return; }
      retry = setTimeout(() => openStream(relay), Math.min(60000, 1000 * 2 ** failures));
    });
    for (const kind of KINDS) {
      es.addEventListener(kind, (e) => {
        let data = {};
        try { data = JSON.parse(e.data || '{}'); } catch (_) { /* a hint without data */ }
        const msg = { id: Number(e.lastEventId) || 0, type: kind, data };
        if (relay) relay.postMessage(msg);
        dispatch(msg);
      });
    }
  };
  window.addEventListener('pagehide', closeStream);
  if (me) {
    if ('BroadcastChannel' in window && navigator.locks) {
      const channel = new BroadcastChannel('ticketd-events');
      channel.onmessage = (e) => dispatch(e.data);
      window.addEventListener('pagehide', () => channel.close());
      navigator.locks.request('ticketd-events', () => new Promise(() => { openStream(channel); }));
    } else {
      openStream(null);
    }
  }
  // A request that hangs is given up, so the next one can start.
  const timeout = (ms) => (AbortSignal.timeout ? AbortSignal.timeout(ms) : undefined);

  const presenceHtml = (cell, who) => {
    cell.replaceChildren();
    for (const w of who.filter((w) => w.agent !== me)) {
      const s = document.createElement('span');
      s.className = `pres ${w.state}`;
      s.textContent = `${w.name} ${w.state}`;
      cell.append(s, ' ');
    }
  };
  onEvent((m) => {
    if (m.type !== 'presence') return;
    for (const cell of $$(`[data-presence="${Number(m.data.ticket)}"]`)) presenceHtml(cell, m.data.who || []);
  });

  // ------------------------------------------------------------ queue
  const table = $('#queue');
  if (table) {
    const tbody = $('tbody', table);
    const rows = () => $$('tr[data-number]', tbody);
    let cursor = null;
    const picked = $('#picked');
    const countPicked = () => {
      const n = $$('input[name="t"]:checked', tbody).length;
      if (picked) picked.textContent = String(n);
      for (const r of rows()) r.classList.toggle('picked', $('input[name="t"]', r).checked);
    };
    tbody.addEventListener('change', countPicked);
    const setCursor = (row, scroll) => {
      if (cursor) cursor.classList.remove('cursor');
      cursor = row;
      if (!row) return;
      row.classList.add('cursor');
      if (scroll) row.scrollIntoView({ block: 'nearest' });
      const link = $('a.open', row);
      if (link && scroll) link.focus({ preventScroll: true });
    };
    const move = (d) => {
      const all = rows();
      if (!all.length) return;
      const i = cursor ? all.indexOf(cursor) : -1;
      setCursor(all[Math.max(0, Math.min(all.length - 1, i + d))] || all[0], true);
    };
    tbody.addEventListener('focusin', (e) => { const r = e.target.closest('tr[data-number]'); if (r) setCursor(r, false); });
    const current = () => cursor || rows()[0] || null;
    const open = (hash) => { const r = current(); if (r) location.href = $('a.open', r).href + (hash || ''); };

    // Re-read this page and fold it in: rows change in place, new ones
    // appear, the selection and the focus stay where they are.
    let refreshing = false; let again = false;
    const refresh = async () => {
      if (refreshing) { again = true; return; }
      refreshing = true;
      try {
        const res = await fetch(location.href, { credentials: 'same-origin', headers: { Accept: 'text/html' }, signal: timeout(20000) });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), 'text/html');
        const fresh = $$('#queue tbody tr[data-number]', doc);
        const old = new Map(rows().map((r) => [r.dataset.number, r]));
        const focused = document.activeElement;
        let prev = null;
        for (const nr of fresh) {
          let row = old.get(nr.dataset.number);
          if (row) {
            old.delete(nr.dataset.number);
            const changed = row.dataset.version !== nr.dataset.version;
            for (const td of $$('td[data-col]', nr)) {
              const mine = $(`td[data-col="${td.dataset.col}"]`, row);
              if (mine && mine.innerHTML !== td.innerHTML) mine.replaceChildren(...Array.from(td.childNodes).map((c) => document.importNode(c, true)));
            }
            row.dataset.version = nr.dataset.version;
            row.classList.toggle('waiting', nr.classList.contains('waiting'));
            if (changed) { row.classList.remove('fresh'); void row.offsetWidth; row.classList.add('fresh'); }
          } else {
            row = document.importNode(nr, true);
            row.classList.add('fresh');
          }
          const want = prev ? prev.nextElementSibling : tbody.firstElementChild;
          if (row !== want && !(focused && row.contains(focused))) tbody.insertBefore(row, want);
          prev = row;
        }
        for (const [, row] of old) {
          const keep = $('input[name="t"]', row).checked || (focused && row.contains(focused));
          if (!keep) { if (row === cursor) cursor = null; row.remove(); }
        }
        for (const a of $$('.views a[data-view]', doc)) {
          const mine = $(`.views a[data-view="${a.dataset.view}"] .count`);
          if (mine) mine.textContent = $('.count', a).textContent;
        }
        const range = $('#range', doc);
        if (range && $('#range')) $('#range').textContent = range.textContent;
        const empty = $('#empty');
        if (empty) empty.hidden = rows().length > 0;
        countPicked();
      } catch (err) {
        console.error(err);
      } finally {
        refreshing = false;
        if (again) { again = false; setTimeout(refresh, 300); }
      }
    };
    let soon = 0;
    onEvent((m) => {
      if (m.type === 'tickets' || m.type === 'reset') { clearTimeout(soon); soon = setTimeout(refresh, 250); }
    });

    document.addEventListener('keydown', (e) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const r = current();
      switch (e.key) {
        case 'j': move(1); break;
        case 'k': move(-1); break;
        case 'o': case 'Enter': if (e.key === 'Enter' && e.target.closest && e.target.closest('a,button')) return; open(''); break;
        case 'x': if (r) { const box = $('input[name="t"]', r); box.checked = !box.checked; countPicked(); } break;
        case 'r': open('#reply'); break;
        case 'n': open('#note'); break;
        case 's': { const s = $('#bs'); if (s) s.focus(); break; }
        case 'a': {
          const sel = $('#ba');
          if (!me || me === 'admin' || !sel || !r) return;
          if (!$$('input[name="t"]:checked', tbody).length) $('input[name="t"]', r).checked = true;
          sel.value = me;
          $('#bulk').requestSubmit();
          break;
        }
        default: return;
      }
      e.preventDefault();
    });
    if (location.hash === '#search') { const q = $('#q'); if (q) q.focus(); }
    countPicked();
  }

  // ----------------------------------------------------------- ticket
  const ticket = $('#ticket');
  if (ticket) {
    const n = ticket.dataset.number;
    const version = ticket.dataset.version;
    const reply = $('#reply-text');
    const note = $('#note-text');
    const changed = $('#changed');
    // Someone changed this ticket: say so (the forms still carry the old
    // version, so a send is refused rather than overwriting their change).
    // Asks for the version only, never the whole ticket again.
    let checking = false;
    const check = async () => {
      if (checking || !changed || !changed.hidden) return;
      checking = true;
      try {
        const res = await fetch(`/desk/tickets/${n}/version`, { credentials: 'same-origin', headers: { Accept: 'application/json' }, signal: timeout(15000) });
        if (!res.ok) return;
        const v = await res.json();
        if (String(v.version) !== version && changed.hidden) {
          changed.hidden = false;
          say('This ticket changed since you opened it.');
        }
      } catch (_) { /* next event */ } finally { checking = false; }
    };
    onEvent((m) => {
      if ((m.type === 'tickets' && (m.data.tickets || []).map(String).includes(n)) || m.type === 'reset') check();
    });
    // Presence: a heartbeat while the page is open; replying while a
    // message is being written.
    const state = () => {
      const a = document.activeElement;
      const writing = (a === reply || a === note) || (reply && reply.value.trim()) || (note && note.value.trim());
      return writing ? 'replying' : 'viewing';
    };
    let lastState = '';
    let beating = false;
    const beat = (force) => {
      const s = document.hidden ? 'viewing' : state();
      if (beating || (!force && s === lastState)) return;
      lastState = s;
      beating = true;
      fetch(`/desk/tickets/${n}/presence`, {
        method: 'POST', credentials: 'same-origin', signal: timeout(10000),
        headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRF-Token': csrf },
        body: `state=${s}`,
      }).catch(() => {}).finally(() => { beating = false; });
    };
    const heartbeat = setInterval(() => beat(true), 20000);
    window.addEventListener('pagehide', () => clearInterval(heartbeat));
    for (const area of [reply, note]) {
      if (!area) continue;
      area.addEventListener('focus', () => beat(false));
      area.addEventListener('blur', () => setTimeout(() => beat(false), 100));
    }
    window.addEventListener('pagehide', () => {
      const data = new Blob([`state=left&csrf=${encodeURIComponent(csrf)}`], { type: 'application/x-www-form-urlencoded' });
      navigator.sendBeacon(`/desk/tickets/${n}/presence`, data);
    });
    beat(true);
    if (location.hash === '#reply' && reply) reply.focus();
    if (location.hash === '#note' && note) note.focus();
    for (const t of $$('.entry-head time, .meta time')) {
      const d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) { t.title = t.textContent; t.textContent = d.toLocaleString(); }
    }
    document.addEventListener('keydown', (e) => {
      if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      switch (e.key) {
        case 'r': if (reply) reply.focus(); break;
        case 'n': if (note) note.focus(); break;
        case 's': { const s = $('#f-status'); if (s) s.focus(); break; }
        case 'a': { const f = $('#assign-me'); if (f) f.requestSubmit(); else return; break; }
        default: return;
      }
      e.preventDefault();
    });
  }

  // --------------------------------------------------------- anywhere
  function typing(el) {
    return el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }
  document.addEventListener('keydown', (e) => {
    if (e.defaultPrevented) return;
    const t = e.target;
    if ((e.ctrlKey || e.metaKey) && e.key === 'Enter' && t && t.tagName === 'TEXTAREA' && t.form) {
      e.preventDefault();
      t.form.requestSubmit();
      return;
    }
    if (e.key === 'Escape') {
      if (help && help.open) return;
      if (typing(t)) { t.blur(); e.preventDefault(); return; }
      if (page === 'ticket') { e.preventDefault(); location.href = '/desk/'; }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || typing(t)) return;
    if (e.key === '?') { e.preventDefault(); openHelp(); return; }
    if (e.key === '/') {
      e.preventDefault();
      const q = $('#q');
      if (q) q.focus(); else location.href = '/desk/#search';
    }
  });
})();
