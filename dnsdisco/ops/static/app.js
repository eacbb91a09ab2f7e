// The catalogue page: polls v1/status (small) and fetches the services and skipped values
// only when its `version` changed. Every string from etcd goes into the page as text
// (textContent / setAttribute), never as HTML.
"use strict";

const POLL_MS = 1500;          // while the page is visible
const HIDDEN_POLL_MS = 15000;  // in a background tab
const PAGE_SIZE = 50;

// known: instance names on screen, so that one that appears on the same page is highlighted
const view = { q: "", offset: 0, shown: null, known: new Set(), knownPage: null, timer: null,
               busy: false, again: false };

function $(id) { return document.getElementById(id); }

// el("td", {class: "x", "data-label": "port"}, "text", otherNode)
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setText(id, text) { $(id).textContent = text; }

function ago(seconds) {
  if (seconds === null || seconds === undefined) return "never";
  if (seconds < 60) return Math.round(seconds) + " s ago";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return (seconds / 3600).toFixed(1) + " h ago";
  return (seconds / 86400).toFixed(1) + " days ago";
}

async function getJSON(url) {
  const resp = await fetch(url, { cache: "no-store", credentials: "same-origin" });
  if (!resp.ok) throw new Error(url + ": HTTP " + resp.status);
  return resp.json();
}

function renderStatus(s) {
  const badge = $("sync-badge");
  badge.textContent = s.sync.state;
  badge.className = "badge " + (["live", "stale", "starting"].includes(s.sync.state) ? s.sync.state : "starting");
  badge.title = s.sync.error || s.sync.detail;
  const away = s.sync.state === "live" || s.sync.seconds_since_contact === null ? ""
    : " (last answer " + ago(s.sync.seconds_since_contact) + ")";
  setText("sync-detail", s.sync.detail + away);
  const error = $("sync-error");
  error.textContent = s.sync.error;
  error.title = s.sync.error;
  error.hidden = !s.sync.error;
  setText("revision", String(s.sync.revision));
  const when = s.sync.last_change === null ? "" : " (" + new Date(s.sync.last_change * 1000).toLocaleString() + ")";
  setText("last-change", ago(s.sync.seconds_since_change) + when);
  const rate = s.queries.per_second === null ? "…" : s.queries.per_second.toFixed(1) + "/s";
  setText("qps", rate + " over " + Math.round(s.queries.window_seconds) + " s, " + s.queries.total + " in all");
  setText("count-services", String(s.counts.services));
  setText("count-records", String(s.counts.records));
  const zones = $("zone-list");
  zones.replaceChildren(...s.zones.map((z) =>
    el("li", { "data-zone": z.name }, el("strong", {}, z.name),
       el("span", { class: "muted" }, " " + z.services + " service" + (z.services === 1 ? "" : "s") +
          ", TTL " + z.ttl + " s, negative TTL " + z.neg_ttl + " s"))));
}

function instanceRow(inst, fresh) {
  const address = inst.host || "—";
  const cells = [
    ["instance", inst.id === "" ? "(the name itself)" : inst.id],
    ["address", address],
    ["port", inst.port ? inst.port : "—"],
    ["priority / weight", inst.priority + " / " + inst.weight],
    ["TTL", inst.ttl + " s"],
    ["records", inst.types.join(" ") || "—"],
  ];
  const row = el("tr", { "data-instance": inst.name, class: fresh ? "fresh" : null, title: inst.key },
    ...cells.map(([label, value]) => el("td", { "data-label": label }, value)));
  if (inst.text) {
    row.lastChild.append(el("div", { class: "txt" }, "text: " + inst.text));
  }
  return row;
}

function serviceCard(svc, known) {
  const more = svc.instance_count - svc.instances.length;
  const head = el("div", { class: "service-head" },
    el("h3", {}, svc.name),
    el("span", { class: "muted" }, svc.instance_count + " instance" + (svc.instance_count === 1 ? "" : "s")));
  const table = el("table", { class: "instances" },
    el("thead", {}, el("tr", {}, ...["instance", "address", "port", "priority / weight", "TTL", "records"]
      .map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, ...svc.instances.map((inst) =>
      instanceRow(inst, known !== null && !known.has(inst.name)))));
  const card = el("article", { class: "service", "data-service": svc.name }, head, table);
  if (more > 0) {
    card.append(el("p", { class: "muted" }, "and " + more + " more: ",
      el("a", { href: "v1/services/" + encodeURIComponent(svc.name) }, "all as JSON")));
  }
  return card;
}

function renderServices(doc) {
  const page = doc.query + "|" + doc.offset;
  const known = view.knownPage === page ? view.known : null;
  const next = new Set();
  for (const svc of doc.services) for (const inst of svc.instances) next.add(inst.name);
  const list = $("service-list");
  if (doc.services.length === 0) {
    list.replaceChildren(el("p", { class: "empty" },
      doc.query ? "No service name contains \u201c" + doc.query + "\u201d." : "No services registered yet."));
  } else {
    list.replaceChildren(...doc.services.map((svc) => serviceCard(svc, known)));
  }
  view.known = next;
  view.knownPage = page;
  setText("services-total", doc.query ? doc.total + " matching" : String(doc.total));
  const pages = Math.max(1, Math.ceil(doc.total / doc.limit));
  const current = Math.floor(doc.offset / doc.limit) + 1;
  $("pager").hidden = doc.total <= doc.limit && doc.offset === 0;
  setText("page-info", "page " + current + " of " + pages);
  $("prev").disabled = doc.offset === 0;
  $("next").disabled = doc.offset + doc.limit >= doc.total;
}

function renderSkipped(doc) {
  $("skipped").hidden = doc.total === 0;
  setText("skipped-total", String(doc.total));
  const items = doc.skipped.map((s) => el("li", { "data-key": s.key }, el("code", {}, s.key), el("span", {}, s.reason)));
  if (doc.total > doc.skipped.length) {
    items.push(el("li", { class: "muted" }, "and " + (doc.total - doc.skipped.length) + " more (v1/skipped?offset=" +
      doc.skipped.length + ")"));
  }
  $("skipped-list").replaceChildren(...items);
}

// one poll at a time: a filter or page change during a poll asks for another right after it
async function tick() {
  clearTimeout(view.timer);
  if (view.busy) { view.again = true; return; }
  view.busy = true;
  view.again = false;
  const q = view.q, offset = view.offset;
  try {
    const status = await getJSON("v1/status");
    renderStatus(status);
    if (status.version + "|" + q + "|" + offset !== view.shown) {
      const params = new URLSearchParams({ q: q, offset: String(offset), limit: String(PAGE_SIZE) });
      const [services, skipped] = await Promise.all([
        getJSON("v1/services?" + params.toString()), getJSON("v1/skipped?limit=100")]);
      if (services.offset > 0 && services.offset >= services.total) {   // the page emptied under us
        view.offset = Math.max(0, Math.floor((services.total - 1) / PAGE_SIZE) * PAGE_SIZE);
        view.again = true;
      } else {
        renderServices(services);
        renderSkipped(skipped);
        view.shown = services.version + "|" + q + "|" + offset;
      }
    }
    $("offline").hidden = true;
  } catch (err) {
    $("offline").hidden = false;
  } finally {
    view.busy = false;
  }
  view.timer = setTimeout(tick, view.again ? 0 : document.hidden ? HIDDEN_POLL_MS : POLL_MS);
}

let filterTimer = null;
$("filter").addEventListener("input", () => {
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => {
    view.q = $("filter").value.trim().toLowerCase();
    view.offset = 0;
    tick();
  }, 250);
});
$("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE_SIZE); tick(); });
$("next").addEventListener("click", () => { view.offset += PAGE_SIZE; tick(); });
document.addEventListener("visibilitychange", () => { if (!document.hidden) tick(); });
tick();
