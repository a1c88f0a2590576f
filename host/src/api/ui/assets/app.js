// Capstan's web UI: live refresh of the runs list and a run's statuses, and
// live logs. The DOM is built with textContent only (the page's CSP enforces
// Trusted Types: no HTML string ever becomes markup). Pages work without it.
"use strict";

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function badge(status) {
  const b = el("span", "badge st-" + status, status);
  b.dataset.status = status;
  return b;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 401) { window.location.assign("/ui/login"); throw new Error("signed out"); }
  if (!r.ok) throw new Error(url + ": " + r.status);
  return r.json();
}

// The runs list: the first page refreshes every 2 s.
function liveRuns(table) {
  const url = table.dataset.live;
  const body = table.tBodies[0];
  async function tick() {
    try {
      const rows = await getJSON(url);
      const fresh = document.createDocumentFragment();
      for (const r of rows) {
        const tr = el("tr");
        tr.dataset.run = r.id;
        tr.append(el("td", "", r.number ?? ""), el("td", "", r.pipeline));
        const st = el("td"); st.append(badge(r.status)); tr.append(st);
        tr.append(el("td", "", r.trigger), el("td", "", r.branch ?? ""), el("td", "", r.created), el("td", "", r.duration));
        const link = el("a", "", r.id); link.href = "/ui/runs/" + encodeURIComponent(r.id);
        const td = el("td"); td.append(link); tr.append(td);
        fresh.append(tr);
      }
      body.replaceChildren(fresh);
    } catch (e) { /* keep the last rows */ }
    setTimeout(tick, 2000);
  }
  setTimeout(tick, 2000);
}

// A run's page: statuses every second while it is live, one reload at the end.
function liveRun(root) {
  const url = root.dataset.live;
  async function tick() {
    let s;
    try { s = await getJSON(url); } catch (e) { setTimeout(tick, 2000); return; }
    for (const t of s.tasks) {
      const sel = CSS.escape(t.name);
      for (const g of document.querySelectorAll('g.node[data-task="' + sel + '"]')) {
        g.setAttribute("class", "node st-" + t.status);
        const title = g.querySelector("title");
        if (title) title.textContent = t.name + ": " + t.status;
      }
      const row = document.querySelector('tr[data-task="' + sel + '"]');
      if (row) {
        const cell = row.querySelector("td.status");
        if (cell && cell.textContent !== t.status) cell.replaceChildren(badge(t.status));
        const a = row.querySelector("td.attempts");
        if (a) a.textContent = String(t.attempts);
      }
    }
    const head = root.querySelector("h1 .badge");
    if (head && head.dataset.status !== s.status) head.replaceWith(badge(s.status));
    root.dataset.status = s.status;
    if (s.terminal) { window.location.reload(); return; }
    setTimeout(tick, 1000);
  }
  setTimeout(tick, 1000);
}

// Logs: search (hide lines that do not match), and follow live.
function logs(pre) {
  const search = document.getElementById("log-search");
  const count = document.getElementById("log-count");
  const state = document.getElementById("log-state");
  function filter() {
    const q = search ? search.value.toLowerCase() : "";
    let shown = 0, total = 0;
    for (const line of pre.children) {
      total++;
      const hit = !q || line.textContent.toLowerCase().includes(q);
      line.hidden = !hit;
      if (hit) shown++;
    }
    if (count) count.textContent = q ? shown + " of " + total + " lines match" : total + " lines";
  }
  if (search) search.addEventListener("input", filter);
  filter();
  const url = pre.dataset.stream;
  if (!url) return;
  const source = new EventSource(url);
  const add = (ev) => {
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const line = el("span", "line lv-" + ev.type, ev.data + "\n");
    line.dataset.id = ev.lastEventId;
    const q = search ? search.value.toLowerCase() : "";
    line.hidden = !!q && !ev.data.toLowerCase().includes(q);
    pre.append(line);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
    if (count && !q) count.textContent = pre.children.length + " lines";
  };
  for (const level of ["trace", "debug", "info", "warn", "error", "message"]) source.addEventListener(level, add);
  source.addEventListener("end", () => {
    source.close();
    if (state) { state.textContent = "complete"; state.dataset.done = "1"; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const runs = document.querySelector("table#runs[data-live]");
  if (runs) liveRuns(runs);
  const run = document.querySelector("#run[data-live]");
  if (run) liveRun(run);
  const log = document.getElementById("log");
  if (log) logs(log);
});
