// lua-smtpd's catcher page: plain JavaScript, no build step. Mail text is
// only ever put into the page as text (textContent), never as markup; a
// message's HTML is shown in a sandboxed frame (no scripts, no origin)
// under the server's Content-Security-Policy.
const $ = (id) => document.getElementById(id);
const state = { start: 0, limit: 50, query: "", mailbox: "", selected: null, total: 0,
                tab: "html", ids: [], lastEvent: null };

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

async function api(method, path, body) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status}`);
  const type = r.headers.get("Content-Type") || "";
  return type.startsWith("application/json") ? r.json() : r.text();
}

function who(a) {
  if (!a) return "";
  return a.Name ? `${a.Name} <${a.Address}>` : a.Address;
}

function when(iso) {
  const d = new Date(iso);
  const today = new Date();
  return d.toDateString() === today.toDateString()
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleDateString();
}

function size(n) {
  return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
}

// ---- the list ----------------------------------------------------------------

async function load() {
  const params = new URLSearchParams({ start: state.start, limit: state.limit });
  if (state.mailbox) params.set("mailbox", state.mailbox);
  let path = "/api/v1/messages";
  if (state.query) { path = "/api/v1/search"; params.set("query", state.query); }
  const data = await api("GET", `${path}?${params}`);
  state.total = data.messages_count;
  state.ids = data.messages.map((m) => m.ID);
  const ul = $("messages");
  ul.replaceChildren(...data.messages.map(item));
  $("empty").hidden = data.messages.length > 0;
  const last = Math.min(state.start + data.messages.length, state.total);
  $("page").textContent = state.total ? `${state.start + 1}-${last} of ${state.total}` : "";
  $("newer").disabled = state.start === 0;
  $("older").disabled = last >= state.total;
  $("status").textContent = `${data.total} messages, ${data.unread} unread`;
  document.title = data.unread ? `(${data.unread}) lua-smtpd` : "lua-smtpd: caught mail";
}

function item(m) {
  const li = el("li", { class: (m.Read ? "" : "unread") + (m.ID === state.selected ? " selected" : ""),
                        "data-id": m.ID, tabIndex: 0 },
    el("div", { class: "top" }, el("span", { text: who(m.From) || "(no sender)" }),
       el("span", { text: when(m.Created) })),
    el("div", { class: "subj", text: m.Subject || "(no subject)" }),
    el("div", { class: "snip", text: (m.Attachments ? `\u{1F4CE} ${m.Attachments} ` : "") + m.Snippet }));
  li.addEventListener("click", () => open(m.ID));
  li.addEventListener("keydown", (e) => { if (e.key === "Enter") open(m.ID); });
  return li;
}

let pending = null;
function reloadSoon() {          // many events in a burst: one reload
  if (pending) return;
  pending = setTimeout(() => { pending = null; load().catch(showError); }, 150);
}

function showError(e) { $("status").textContent = String(e.message || e); }

// ---- the reader ----------------------------------------------------------------

let current = null;
async function open(id) {
  state.selected = id;
  for (const li of $("messages").children) li.classList.toggle("selected", li.dataset.id === id);
  const m = await api("GET", `/api/v1/message/${encodeURIComponent(id)}`);
  current = m;
  $("reader").hidden = false;
  $("subject").textContent = m.Subject || "(no subject)";
  const fields = [["From", who(m.From)], ["To", m.To.map(who).join(", ")],
                  ["Cc", m.Cc.map(who).join(", ")], ["Bcc", m.Bcc.map(who).join(", ")],
                  ["Date", m.DateHeader || m.Date], ["Size", size(m.Size)]];
  $("fields").replaceChildren(...fields.filter(([, v]) => v).flatMap(([k, v]) =>
    [el("dt", { text: k }), el("dd", { text: v })]));
  $("download").href = `/api/v1/message/${encodeURIComponent(id)}/raw?dl=1`;
  const li = $("messages").querySelector(`li[data-id="${CSS.escape(id)}"]`);
  if (li) li.classList.remove("unread");
  show(state.tab === "html" && !m.HTML ? "text" : state.tab);
}

async function show(tab) {
  state.tab = tab;
  for (const b of $("tabs").children) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
  const m = current, pane = $("pane"), id = encodeURIComponent(m.ID);
  if (tab === "html") {
    if (!m.HTML) return pane.replaceChildren(el("p", { class: "note", text: "This message has no HTML part." }));
    const frame = el("iframe", { title: "The message's HTML (sandboxed)" });
    frame.setAttribute("sandbox", "allow-popups allow-popups-to-escape-sandbox");
    frame.setAttribute("referrerpolicy", "no-referrer");
    frame.src = `/view/${id}.html`;
    // remote images stay off (they tell the sender the mail was read)
    // unless asked for, message by message
    const remote = el("button", { type: "button", id: "remote", text: "Load remote images" });
    remote.addEventListener("click", () => { frame.src = `/view/${id}.html?remote=1`; remote.disabled = true; });
    pane.replaceChildren(el("div", { class: "bar" }, remote), frame);
  } else if (tab === "text") {
    pane.replaceChildren(el("pre", { text: m.Text || "(no text part)" }));
  } else if (tab === "raw") {
    pane.replaceChildren(el("pre", { text: await api("GET", `/api/v1/message/${id}/raw`) }));
  } else if (tab === "headers") {
    const h = await api("GET", `/api/v1/message/${id}/headers`);
    pane.replaceChildren(el("table", {}, ...Object.keys(h).sort().flatMap((k) =>
      h[k].map((v) => el("tr", {}, el("th", { text: k }), el("td", { text: v }))))));
  } else if (tab === "attachments") {
    const all = [...m.Attachments, ...m.Inline];
    pane.replaceChildren(all.length ? el("table", {}, ...all.map((a) => el("tr", {},
      el("td", {}, el("a", { href: `/api/v1/message/${id}/part/${encodeURIComponent(a.PartID)}`,
                             text: a.FileName || `part ${a.PartID}` })),
      el("td", { text: a.ContentType }), el("td", { text: size(a.Size) }))))
      : el("p", { class: "note", text: "No attachments." }));
  } else if (tab === "envelope") {
    const e = m.Envelope;
    pane.replaceChildren(el("table", {}, ...[["MAIL FROM", e.MailFrom || "<>"],
      ["RCPT TO", e.RcptTo.join(", ")], ["Client", e.Peer], ["HELO", e.Helo],
      ["TLS", e.TLS ? String(e.TLS) : "no"], ["AUTH", e.Auth || "no"], ["Received", e.Received]]
      .map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v || "" })))));
  } else if (tab === "links") {
    const links = await api("GET", `/api/v1/message/${id}/links`);
    // shown as text: a link in a caught message is not followed from here
    pane.replaceChildren(links.length ? el("table", {}, ...links.map((l) =>
      el("tr", {}, el("td", { text: l })))) : el("p", { class: "note", text: "No links." }));
  }
}

// ---- live updates: Server-Sent Events, else a long poll ------------------------

function listen() {
  if (!window.EventSource) return poll(null);
  const es = new EventSource("/api/events");
  let failures = 0;
  for (const kind of ["new", "delete", "update", "truncate", "resync"]) {
    es.addEventListener(kind, (e) => {
      failures = 0;
      state.lastEvent = e.lastEventId;
      if (kind === "delete" || kind === "truncate") {
        const d = kind === "delete" ? JSON.parse(e.data).Data : null;
        if (!d || (d.IDs || []).includes(state.selected)) { $("reader").hidden = true; state.selected = null; }
      }
      reloadSoon();
    });
  }
  es.addEventListener("open", () => { failures = 0; });
  es.addEventListener("error", () => {
    if (++failures > 5) { es.close(); poll(state.lastEvent); }
  });
}

async function poll(since) {
  for (;;) {
    try {
      const q = since == null ? "" : `?since=${since}`;
      const r = await api("GET", `/api/v1/events${q}`);
      if (since != null && (r.events.length || r.resync)) reloadSoon();
      since = r.last;
    } catch (e) {
      await new Promise((res) => setTimeout(res, 2000));
    }
  }
}

// ---- controls -------------------------------------------------------------------

function theme(next) {
  const root = document.documentElement;
  if (next) { root.dataset.theme = next; localStorage.setItem("smtpd-theme", next); }
  else if (localStorage.getItem("smtpd-theme")) root.dataset.theme = localStorage.getItem("smtpd-theme");
}

async function mailboxes() {
  const ui = await api("GET", "/api/v1/webui");
  const sel = $("mailbox");
  for (const name of ui.Mailboxes || []) sel.append(el("option", { value: name, text: name }));
}

function wire() {
  theme();
  $("theme").addEventListener("click", () => {
    const dark = getComputedStyle(document.documentElement).colorScheme.includes("dark");
    theme(dark ? "light" : "dark");
  });
  let typing = null;
  $("q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.query = $("q").value.trim(); state.start = 0; load().catch(showError); }, 200);
  });
  $("search").addEventListener("submit", (e) => {
    e.preventDefault();
    state.query = $("q").value.trim(); state.start = 0; load().catch(showError);
  });
  $("mailbox").addEventListener("change", () => { state.mailbox = $("mailbox").value; state.start = 0; load().catch(showError); });
  $("newer").addEventListener("click", () => { state.start = Math.max(0, state.start - state.limit); load().catch(showError); });
  $("older").addEventListener("click", () => { state.start += state.limit; load().catch(showError); });
  $("delete-all").addEventListener("click", async () => {
    if (!confirm("Delete every message?")) return;
    await api("DELETE", "/api/v1/messages", {});
    $("reader").hidden = true; state.selected = null; load().catch(showError);
  });
  $("delete").addEventListener("click", async () => {
    if (!current) return;
    await api("DELETE", "/api/v1/messages", { IDs: [current.ID] });
    $("reader").hidden = true; state.selected = null; load().catch(showError);
  });
  $("unread").addEventListener("click", async () => {
    if (!current) return;
    await api("PUT", "/api/v1/messages", { IDs: [current.ID], Read: false });
    load().catch(showError);
  });
  for (const b of $("tabs").children) b.addEventListener("click", () => show(b.dataset.tab).catch(showError));
  document.addEventListener("keydown", (e) => {
    if (e.target.closest("input, select, textarea")) return;
    const i = state.ids.indexOf(state.selected);
    if (e.key === "j" && i < state.ids.length - 1) open(state.ids[i + 1]).catch(showError);
    if (e.key === "k" && i > 0) open(state.ids[i - 1]).catch(showError);
    if (e.key === "/") { e.preventDefault(); $("q").focus(); }
  });
}

wire();
mailboxes().catch(() => {});
load().then(listen).catch(showError);
