// warren management UI: plain JavaScript, no build step. It talks to the management API
// under /api (RabbitMQ's shapes) with HTTP basic auth kept in sessionStorage, routes on the
// URL hash and polls every 5 seconds while the page is visible. Everything shown from the
// API goes through textContent / createElement: nothing from the server is parsed as HTML.
"use strict";
(() => {
  const POLL_MS = 5000;
  const HISTORY_MS = 5 * 60 * 1000;
  const PAGE_SIZE = 100;
  const AUTH_KEY = "warren.auth";
  const DEFAULT_EXCHANGE_LABEL = "(AMQP default)";

  const state = { auth: null, user: null, ctx: null, pageId: null };

  // ---------------------------------------------------------------- DOM helpers
  const $ = (sel, root = document) => root.querySelector(sel);

  /** createElement with attributes ({class, text, on*, data-*, booleans, props}) and children. */
  function el(tag, attrs, ...children) {
    const svg = tag.startsWith("svg:");
    const node = svg
      ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
      : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.setAttribute("class", value);
      else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "value" && !svg) node.value = value;
      else if (key === "checked" || key === "selected") node[key] = Boolean(value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }
  function append(node, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  // ---------------------------------------------------------------- formatting
  const numberFormat = new Intl.NumberFormat("en-US");
  const fmt = (n) => (n === null || n === undefined || Number.isNaN(Number(n)) ? "–" : numberFormat.format(n));
  // "12 s ago", "3 min ago": how long since a topic was published to.
  const ago = (seconds) => (seconds < 60 ? `${Math.round(seconds)} s ago` : seconds < 3600 ? `${Math.round(seconds / 60)} min ago` : `${Math.round(seconds / 3600)} h ago`);
  function fmtRate(r) {
    if (r === null || r === undefined || !Number.isFinite(r)) return "–";
    return (r < 10 && r !== 0 ? r.toFixed(1) : numberFormat.format(Math.round(r))) + "/s";
  }
  function fmtBytes(b) {
    if (b === null || b === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    let v = Number(b);
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
  }
  function fmtDuration(ms) {
    if (ms === null || ms === undefined) return "–";
    let s = Math.floor(ms / 1000);
    const d = Math.floor(s / 86400); s %= 86400;
    const h = Math.floor(s / 3600); s %= 3600;
    const m = Math.floor(s / 60); s %= 60;
    if (d) return `${d}d ${h}h ${m}m`;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${s}s`;
    return `${s}s`;
  }
  const plural = (n, word) => `${fmt(n)} ${word}${n === 1 ? "" : "s"}`;
  const fmtJson = (v) => (v && typeof v === "object" && Object.keys(v).length ? JSON.stringify(v) : "");
  const exchangeLabel = (name) => (name === "" ? DEFAULT_EXCHANGE_LABEL : name);
  const enc = encodeURIComponent;
  function dec(s) { try { return decodeURIComponent(s); } catch { return s; } }

  // ---------------------------------------------------------------- flash messages
  let flashTimer = null;
  let flashAt = 0;
  function flash(text, isError = false) {
    const box = $("#flash");
    clearTimeout(flashTimer);
    flashAt = Date.now();
    box.textContent = text;
    box.className = isError ? "error" : "success";
    flashTimer = setTimeout(() => { box.textContent = ""; box.className = ""; }, isError ? 20000 : 6000);
  }
  const flashError = (context, err) => flash(`${context}: ${errorText(err)}`, true);
  function errorText(err) {
    if (err instanceof ApiError) return err.reason || err.error || `HTTP ${err.status}`;
    return err && err.message ? err.message : String(err);
  }

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(status, body) {
      const reason = body && (body.reason || body.error);
      super(reason || `HTTP ${status}`);
      this.status = status;
      this.error = body && body.error;
      this.reason = body && body.reason;
      this.body = body;
    }
  }
  function basic(user, pass) {
    const bytes = new TextEncoder().encode(`${user}:${pass}`);
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return "Basic " + btoa(bin);
  }
  /** One API call; resolves with the parsed JSON (null when empty), throws ApiError. */
  async function api(method, path, body, { auth = state.auth, allow = [], raw = false } = {}) {
    const headers = { "X-Requested-With": "XMLHttpRequest", Accept: "application/json" };
    if (auth) headers.Authorization = auth;
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = raw ? body : JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch("/api" + path, init);
    } catch (e) {
      throw new ApiError(0, { error: "network", reason: "cannot reach the broker" });
    }
    const text = await response.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch { data = { reason: text }; } }
    if (response.ok || allow.includes(response.status)) return data;
    const err = new ApiError(response.status, data);
    if (response.status === 401 && err.reason === "Login failed" && auth === state.auth && state.user) {
      logout("Your session is no longer valid: Login failed");
    }
    throw err;
  }
  const query = (params) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  };
  /** Publishes through an exchange; the default one by its API name amq.default, else "". */
  // The default exchange in a path is amq.default, as in RabbitMQ's API; a broker that answers
  // 404 to that name gets the empty segment (…/%2F//publish) from then on.
  let defaultSegment = "amq.default";
  async function publish(vhost, exchange, body) {
    if (exchange !== "") return api("POST", `/exchanges/${enc(vhost)}/${enc(exchange)}/publish`, body);
    try {
      return await api("POST", `/exchanges/${enc(vhost)}/${defaultSegment}/publish`, body);
    } catch (err) {
      if (err.status !== 404 || defaultSegment === "") throw err;
      const answer = await api("POST", `/exchanges/${enc(vhost)}//publish`, body);
      defaultSegment = "";
      return answer;
    }
  }
  const exchangePath = (vhost, name) => `/exchanges/${enc(vhost)}/${name === "" ? "amq.default" : enc(name)}`;

  const tags = () => (state.user ? state.user.tags : []);
  const isAdmin = () => tags().includes("administrator");
  const canWrite = () => tags().some((t) => ["administrator", "management", "policymaker"].includes(t));

  // ---------------------------------------------------------------- tables
  /**
   * A table whose rows are kept by key and updated in place (so buttons and links survive
   * polling). columns: [{col, label, value(item) → text, render(item) → Node, sig(item), num,
   * sort}]. A cell is rebuilt only when its signature (value by default) changes.
   */
  function makeTable({ id, caption, columns, key, rowAttrs, empty = "Nothing to show", onSort, hideCaption }) {
    const table = el("table", { id, class: "data" });
    table.append(el("caption", { text: caption, class: hideCaption ? "visually-hidden" : null }));
    const headRow = el("tr");
    const sortState = { field: null, reverse: false };
    for (const c of columns) {
      const th = el("th", { scope: "col", class: c.num ? "num" : null, "data-col": c.col });
      if (c.sort && onSort) {
        th.append(el("button", {
          type: "button", class: "sort", text: c.label,
          onclick: () => {
            sortState.reverse = sortState.field === c.sort ? !sortState.reverse : false;
            sortState.field = c.sort;
            for (const other of headRow.children) other.removeAttribute("aria-sort");
            th.setAttribute("aria-sort", sortState.reverse ? "descending" : "ascending");
            onSort(sortState.field, sortState.reverse);
          },
        }));
      } else th.textContent = c.label;
      headRow.append(th);
    }
    table.append(el("thead", {}, headRow));
    const tbody = el("tbody");
    table.append(tbody);
    const rows = new Map();
    const wrap = el("div", { class: "table-wrap" }, table);
    function cellContent(c, item) {
      return c.render ? c.render(item) : (c.value ? c.value(item) : "");
    }
    function sigOf(c, item) {
      if (c.sig) return String(c.sig(item));
      if (c.value) return String(c.value(item));
      return "";
    }
    function update(items) {
      const seen = new Set();
      const emptyRow = tbody.querySelector("tr.empty");
      if (emptyRow) emptyRow.remove();
      items.forEach((item) => {
        const k = key(item);
        seen.add(k);
        let tr = rows.get(k);
        if (!tr) {
          tr = el("tr", rowAttrs ? rowAttrs(item) : {});
          for (const c of columns) {
            const td = el(c.header ? "th" : "td", { "data-col": c.col, class: c.num ? "num" : null, scope: c.header ? "row" : null });
            td._sig = sigOf(c, item);
            append(td, [cellContent(c, item)]);
            tr.append(td);
          }
          rows.set(k, tr);
        } else {
          columns.forEach((c, i) => {
            const td = tr.children[i];
            const sig = sigOf(c, item);
            if (td._sig !== sig) {
              td._sig = sig;
              td.replaceChildren();
              append(td, [cellContent(c, item)]);
            }
          });
        }
        tbody.append(tr); // moves existing rows into the new order
      });
      for (const [k, tr] of rows) {
        if (!seen.has(k)) { tr.remove(); rows.delete(k); }
      }
      if (!items.length) {
        tbody.append(el("tr", { class: "empty" }, el("td", { colspan: columns.length, text: empty })));
      }
    }
    return { table, wrap, tbody, update };
  }

  /** Paging controls and a debounced server-side name filter for a RabbitMQ paged list. */
  function makePager(prefix, noun, onChange) {
    const st = { page: 1, pageCount: 1, name: "", regex: false, sort: "", reverse: false };
    const filter = el("input", { id: `${prefix}-filter`, type: "search", autocomplete: "off", placeholder: "Filter by name" });
    const regex = el("input", { id: `${prefix}-regex`, type: "checkbox" });
    const prev = el("button", { type: "button", id: `${prefix}-prev`, class: "secondary", text: "‹ Previous" });
    const next = el("button", { type: "button", id: `${prefix}-next`, class: "secondary", text: "Next ›" });
    const pageText = el("span", { id: `${prefix}-page`, text: "Page 1 of 1" });
    const count = el("span", { id: `${prefix}-count`, class: "muted" });
    let timer = null;
    filter.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { st.name = filter.value; st.page = 1; onChange(); }, 300);
    });
    regex.addEventListener("change", () => { st.regex = regex.checked; st.page = 1; onChange(); });
    prev.addEventListener("click", () => { if (st.page > 1) { st.page--; onChange(); } });
    next.addEventListener("click", () => { if (st.page < st.pageCount) { st.page++; onChange(); } });
    const node = el("div", { class: "toolbar" },
      el("div", { class: "field-inline" },
        el("label", { for: `${prefix}-filter`, text: `Filter ${noun}` }), filter,
        el("label", { class: "check" }, regex, " Regex")),
      el("nav", { class: "pager", "aria-label": `${noun} pages` }, prev, pageText, next, count));
    function params() {
      return { page: st.page, page_size: PAGE_SIZE, name: st.name, use_regex: st.regex ? "true" : "false", sort: st.sort, sort_reverse: st.sort ? String(st.reverse) : "" };
    }
    function show(data) {
      st.pageCount = Math.max(1, data.page_count || 1);
      st.page = data.page || 1;
      pageText.textContent = `Page ${fmt(st.page)} of ${fmt(st.pageCount)}`;
      prev.disabled = st.page <= 1;
      next.disabled = st.page >= st.pageCount;
      const filtered = data.filtered_count !== data.total_count ? ` (${fmt(data.filtered_count)} match the filter)` : "";
      count.textContent = `${fmt(data.total_count)} ${noun} in total${filtered}`;
    }
    /** Fetches path with the paging parameters; goes back to page 1 when out of range. */
    async function fetchPage(path, extra = {}) {
      try {
        const data = await api("GET", path + query({ ...params(), ...extra }));
        show(data);
        return data;
      } catch (err) {
        if (err.status === 400 && st.page > 1 && /out of range/.test(err.reason || "")) {
          st.page = 1;
          return fetchPage(path, extra);
        }
        throw err;
      }
    }
    return { node, st, fetchPage, sort(field, reverse) { st.sort = field; st.reverse = reverse; st.page = 1; onChange(); } };
  }

  /** Remembers counters by key between polls and gives per-second rates. */
  function rateTracker() {
    let prev = new Map();
    let next = new Map();
    return {
      begin() { next = new Map(); },
      rate(key, field, value, now = Date.now()) {
        next.set(key + "\0" + field, { t: now, v: value });
        const p = prev.get(key + "\0" + field);
        if (!p || value === undefined || value === null || now <= p.t || value < p.v) return null;
        return ((value - p.v) * 1000) / (now - p.t);
      },
      end() { prev = next; },
    };
  }

  // ---------------------------------------------------------------- forms
  function field(label, input, hint) {
    return el("div", { class: input.tagName === "TEXTAREA" ? "field wide" : "field" }, el("label", { for: input.id, text: label }), input, hint ? el("small", { class: "muted", text: hint }) : null);
  }
  const checkField = (label, input) => el("div", { class: "field check" }, el("label", { for: input.id }, input, " " + label));
  function form(id, title, fields, button, onSubmit) {
    const f = el("form", { id, class: "card form" }, el("h2", { text: title }), el("div", { class: "fields" }, fields), el("div", { class: "actions" }, button));
    f.addEventListener("submit", async (e) => {
      e.preventDefault();
      if (button.disabled) return;
      button.disabled = true;
      try { await onSubmit(); } finally { button.disabled = false; }
    });
    return f;
  }
  const submit = (id, text) => el("button", { type: "submit", id, text });
  function parseJsonField(input, what, fallback = {}) {
    const text = input.value.trim();
    if (!text) return fallback;
    let value;
    try { value = JSON.parse(text); } catch (e) { throw new Error(`${what} is not valid JSON (${e.message})`); }
    if (!value || typeof value !== "object" || Array.isArray(value)) throw new Error(`${what} must be a JSON object`);
    return value;
  }
  async function vhostNames() {
    try {
      const list = await api("GET", "/vhosts" + query({ columns: "name" }));
      return list.map((v) => v.name);
    } catch { return ["/"]; }
  }
  function vhostSelect(id, names) {
    const select = el("select", { id });
    for (const n of names) select.append(el("option", { value: n, text: n, selected: n === "/" }));
    return select;
  }

  // ---------------------------------------------------------------- charts (inline SVG)
  /** Draws series [{label, color, dash, points: [[t, v]]}] over the last 5 minutes. */
  function drawChart(svg, series, { unit = "", height = 200 } = {}) {
    const W = Math.max(320, Math.round(svg.getBoundingClientRect().width) || 640), H = height, L = 64, R = 12, T = 10, B = 24;
    const now = Date.now();
    const t0 = now - HISTORY_MS;
    let max = 0;
    for (const s of series) for (const [, v] of s.points) if (v > max) max = v;
    const nice = niceMax(max);
    svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    svg.style.height = `${H}px`;
    svg.replaceChildren();
    const x = (t) => L + ((t - t0) / HISTORY_MS) * (W - L - R);
    const y = (v) => T + (1 - v / nice) * (H - T - B);
    for (let i = 0; i <= 4; i++) {
      const v = (nice * i) / 4;
      svg.append(el("svg:line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      svg.append(el("svg:text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis", text: shortNumber(v) + unit }));
    }
    for (let m = 0; m <= 5; m++) {
      const t = now - m * 60000;
      svg.append(el("svg:text", { x: x(t), y: H - 6, "text-anchor": m === 0 ? "end" : "middle", class: "axis", text: m === 0 ? "now" : `-${m}m` }));
    }
    for (const s of series) {
      const pts = s.points.filter(([t]) => t >= t0);
      if (!pts.length) continue;
      const d = pts.map(([t, v], i) => `${i ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
      svg.append(el("svg:path", { d, fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dash || null, class: "series", "data-series": s.label }, el("svg:title", { text: s.label })));
      const [lt, lv] = pts[pts.length - 1];
      svg.append(el("svg:circle", { cx: x(lt).toFixed(1), cy: y(lv).toFixed(1), r: 3, fill: s.color }, el("svg:title", { text: `${s.label}: ${shortNumber(lv)}${unit}` })));
    }
  }
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }
  function shortNumber(v) {
    if (v >= 1e6) return +(v / 1e6).toFixed(1) + "M";
    if (v >= 1e3) return +(v / 1e3).toFixed(1) + "k";
    return String(+v.toFixed(2));
  }
  function legend(series) {
    return el("ul", { class: "legend" }, series.map((s) =>
      el("li", {}, el("span", { class: "swatch" + (s.dash ? " dashed" : ""), style: `border-color:${s.color}`, "aria-hidden": "true" }), s.label)));
  }
  const chartSvg = (id, label) => el("svg:svg", { id, class: "chart", role: "img", "aria-label": label });

  // ---------------------------------------------------------------- overview samples (kept across pages)
  const overviewHistory = []; // [{t, amqp: {...message_stats}, mqtt: {...}}]
  const RATE_FIELDS = [["publish", "published"], ["deliver_get", "delivered"], ["ack", "acknowledged"]];
  function sampleOverview(ov) {
    const byProto = ov.message_stats_by_protocol || {};
    overviewHistory.push({ t: Date.now(), amqp: byProto.amqp || {}, mqtt: byProto.mqtt || {}, all: ov.message_stats || {} });
    const cutoff = Date.now() - HISTORY_MS - POLL_MS * 2;
    while (overviewHistory.length && overviewHistory[0].t < cutoff) overviewHistory.shift();
  }
  function overviewRates() {
    // [{t, amqp: {publish: r, ...}, mqtt: {...}}] from consecutive samples
    const out = [];
    for (let i = 1; i < overviewHistory.length; i++) {
      const a = overviewHistory[i - 1], b = overviewHistory[i];
      const dt = (b.t - a.t) / 1000;
      if (dt <= 0) continue;
      const point = { t: b.t };
      for (const proto of ["amqp", "mqtt", "all"]) {
        point[proto] = {};
        for (const [f] of RATE_FIELDS) {
          const d = (b[proto][f] || 0) - (a[proto][f] || 0);
          point[proto][f] = d >= 0 ? d / dt : 0;
        }
      }
      out.push(point);
    }
    return out;
  }
  let backgroundSampler = null;
  function startBackgroundSampler() {
    clearInterval(backgroundSampler);
    backgroundSampler = setInterval(async () => {
      if (!state.user || document.hidden || state.pageId === "overview") return;
      try { sampleOverview(await api("GET", "/overview")); } catch { /* the page shows errors */ }
    }, POLL_MS);
  }

  // ---------------------------------------------------------------- connection rows (shared by Connections and MQTT)
  function clientOf(c) {
    const props = c.client_properties || {};
    return props.connection_name || props.client_id || c.user_provided_name || c.client_id || c.name;
  }
  function transportOf(c) {
    const t = (c.transport || "").toLowerCase();
    if (t === "wss") return "WebSocket + TLS";
    if (t === "ws") return "WebSocket";
    if (t === "tls" || c.ssl) return "TLS";
    return t || "tcp";
  }
  function connectionColumns(ctxRefresh) {
    const cols = [
      { col: "client", label: "Client", value: clientOf },
      { col: "protocol", label: "Protocol", value: (c) => c.protocol || "" },
      { col: "user", label: "User", value: (c) => c.user || "" },
      { col: "vhost", label: "Vhost", value: (c) => c.vhost || "" },
      { col: "peer", label: "Peer", value: (c) => `${c.peer_host || ""}:${c.peer_port || ""}` },
      { col: "transport", label: "Transport", value: transportOf },
      { col: "state", label: "State", value: (c) => c.state || "" },
      { col: "channels", label: "Channels", num: true, value: (c) => fmt(c.channels) },
      { col: "recv-rate", label: "From client", num: true, value: (c) => fmtRateBytes(c._recv) },
      { col: "send-rate", label: "To client", num: true, value: (c) => fmtRateBytes(c._send) },
    ];
    if (isAdmin()) {
      cols.push({
        col: "actions", label: "Actions", sig: (c) => c.name,
        render: (c) => el("button", {
          type: "button", class: "close-connection danger small", text: "Close", "aria-label": `Close connection ${c.name}`,
          onclick: async (e) => {
            e.target.disabled = true;
            try {
              await api("DELETE", `/connections/${enc(c.name)}`);
              flash(`Connection ${clientOf(c)} closed`);
              ctxRefresh();
            } catch (err) { e.target.disabled = false; flashError("Could not close the connection", err); }
          },
        }),
      });
    }
    return cols;
  }
  const fmtRateBytes = (r) => (r === null || r === undefined ? "–" : fmtBytes(Math.round(r)) + "/s");
  function withConnectionRates(list, tracker) {
    tracker.begin();
    const now = Date.now();
    for (const c of list) {
      c._recv = tracker.rate(c.name, "recv", c.recv_oct, now);
      c._send = tracker.rate(c.name, "send", c.send_oct, now);
    }
    tracker.end();
    return list;
  }
  const connectionTable = (id, caption, refresh, empty) => makeTable({
    id, caption, columns: connectionColumns(refresh), key: (c) => c.name,
    rowAttrs: (c) => ({ "data-name": c.name }), empty,
  });

  // ================================================================= pages
  const PAGES = {};

  // ---------------------------------------------------------------- overview
  PAGES.overview = {
    title: "Overview",
    mount(ctx) {
      const totals = el("dl", { id: "overview-totals", class: "stats" });
      const stat = (col, label) => {
        const dd = el("dd", { "data-col": col, text: "–" });
        totals.append(el("div", { class: "stat" }, el("dt", { text: label }), dd));
        return dd;
      };
      const s = {
        connections: stat("connections", "Connections"),
        amqp: stat("connections-amqp", "AMQP connections"),
        mqtt: stat("connections-mqtt", "MQTT connections"),
        amqpQueues: stat("queues-amqp", "AMQP queues / consumers"),
        mqttQueues: stat("queues-mqtt", "MQTT session queues / subscriptions"),
        channels: stat("channels", "Channels"),
        exchanges: stat("exchanges", "Exchanges"),
        queues: stat("queues", "Queues"),
        consumers: stat("consumers", "Consumers"),
        messages: stat("messages", "Messages"),
        ready: stat("messages-ready", "Ready"),
        unacked: stat("messages-unacked", "Unacknowledged"),
      };
      const series = [];
      const colors = { publish: "#1f5fbf", deliver_get: "#1d7a3a", ack: "#b35900" };
      for (const proto of ["amqp", "mqtt"]) {
        for (const [f, label] of RATE_FIELDS) {
          series.push({ proto, field: f, label: `${proto.toUpperCase()} ${label}/s`, color: colors[f], dash: proto === "mqtt" ? "6 4" : null, points: [] });
        }
      }
      const svg = chartSvg("rates-chart", "Message rates per second over the last 5 minutes, AMQP solid lines, MQTT dashed");
      const ratesTable = makeTable({
        id: "rates-table", caption: "Current message rates",
        key: (r) => r.proto,
        rowAttrs: (r) => ({ "data-protocol": r.proto }),
        columns: [
          { col: "protocol", label: "Protocol", value: (r) => r.label, header: true },
          { col: "publish", label: "Published", num: true, value: (r) => fmtRate(r.publish) },
          { col: "deliver_get", label: "Delivered", num: true, value: (r) => fmtRate(r.deliver_get) },
          { col: "ack", label: "Acknowledged", num: true, value: (r) => fmtRate(r.ack) },
        ],
      });
      const listeners = makeTable({
        id: "listeners-table", hideCaption: true, caption: "Listeners", key: (l) => `${l.protocol}|${l.ip_address}|${l.port}`,
        columns: [
          { col: "protocol", label: "Protocol", value: (l) => l.protocol },
          { col: "ip", label: "Address", value: (l) => l.ip_address },
          { col: "port", label: "Port", num: true, value: (l) => String(l.port) },
        ],
      });
      const nodeTable = el("table", { id: "node-table", class: "data kv" }, el("caption", { text: "Node" }));
      const nodeBody = el("tbody");
      nodeTable.append(nodeBody);
      const alarms = el("span", { id: "alarms", text: "–" });
      const nodeInfo = el("p", { id: "node-info", class: "muted" });
      ctx.root.append(
        el("h1", { text: "Overview", tabindex: "-1" }), nodeInfo,
        totals,
        el("section", { class: "card", "aria-labelledby": "rates-heading" },
          el("h2", { id: "rates-heading", text: "Message rates (last 5 minutes)" }), svg, legend(series), ratesTable.wrap),
        el("div", { class: "grid2" },
          el("section", { class: "card" }, el("h2", { text: "Node" }), el("p", {}, "Alarms: ", alarms), el("div", { class: "table-wrap" }, nodeTable)),
          el("section", { class: "card" }, el("h2", { text: "Listeners" }), listeners.wrap)),
      );
      const nodeRows = new Map();
      const kv = (label, col, value, warn) => {
        let row = nodeRows.get(col);
        if (!row) {
          row = el("tr", {}, el("th", { scope: "row", text: label }), el("td", { "data-col": col }));
          nodeRows.set(col, row);
          nodeBody.append(row);
        }
        row.lastChild.textContent = value;
        row.classList.toggle("alarm", Boolean(warn));
      };
      return async () => {
        const [ov, nodes, health, conns] = await Promise.all([
          api("GET", "/overview"),
          api("GET", "/nodes").catch(() => []),
          api("GET", "/health/checks/alarms", undefined, { allow: [503] }).catch(() => null),
          api("GET", "/connections" + query({ page: 1, page_size: 500, columns: "name,protocol" })).catch(() => null),
        ]);
        if (!ctx.alive) return;
        sampleOverview(ov);
        if (overviewHistory.length === 1) setTimeout(() => ctx.refresh(), 1500);
        const ot = ov.object_totals || {}, qt = ov.queue_totals || {};
        s.connections.textContent = fmt(ot.connections);
        s.channels.textContent = fmt(ot.channels);
        s.exchanges.textContent = fmt(ot.exchanges);
        s.queues.textContent = fmt(ot.queues);
        s.consumers.textContent = fmt(ot.consumers);
        s.messages.textContent = fmt(qt.messages);
        s.ready.textContent = fmt(qt.messages_ready);
        s.unacked.textContent = fmt(qt.messages_unacknowledged);
        const byProtocol = ov.object_totals_by_protocol;
        if (byProtocol) {
          s.amqp.textContent = fmt(byProtocol.amqp.connections);
          s.mqtt.textContent = fmt(byProtocol.mqtt.connections);
          s.amqpQueues.textContent = `${fmt(byProtocol.amqp.queues)} / ${fmt(byProtocol.amqp.consumers)}`;
          s.mqttQueues.textContent = `${fmt(byProtocol.mqtt.queues)} / ${fmt(byProtocol.mqtt.consumers)}`;
        } else if (conns) {
          const items = conns.items || [];
          const mqtt = items.filter((c) => /^MQTT/i.test(c.protocol || "")).length;
          const partial = conns.total_count > items.length ? " (first 500)" : "";
          s.mqtt.textContent = fmt(mqtt) + partial;
          s.amqp.textContent = fmt(items.length - mqtt) + partial;
        }
        nodeInfo.textContent = `${ov.product_name || "warren"} ${ov.product_version || ""} · node ${ov.node || "?"} · cluster ${ov.cluster_name || "?"} · uptime ${fmtDuration(ov.uptime)}`;
        listeners.update(ov.listeners || []);
        // rates
        const rates = overviewRates();
        for (const sr of series) sr.points = rates.map((p) => [p.t, p[sr.proto][sr.field]]);
        drawChart(svg, series, { unit: "/s" });
        const last = rates[rates.length - 1];
        ratesTable.update(["amqp", "mqtt", "all"].map((proto) => ({
          proto, label: proto === "all" ? "All" : proto.toUpperCase(),
          ...(last ? last[proto] : { publish: null, deliver_get: null, ack: null }),
        })));
        // node and alarms
        const n = nodes[0] || {};
        const pct = (a, b) => (a != null && b ? ` (${Math.round((100 * a) / b)}%)` : "");
        [
          kv("Name", "name", n.name || ov.node || "–"),
          kv("Memory used / limit", "memory", `${fmtBytes(n.mem_used)} / ${fmtBytes(n.mem_limit)}${pct(n.mem_used, n.mem_limit)}${n.mem_alarm ? " — ALARM" : ""}`, n.mem_alarm),
          kv("Disk free / limit", "disk", `${fmtBytes(n.disk_free)} / ${fmtBytes(n.disk_free_limit)}${n.disk_free_alarm ? " — ALARM" : ""}`, n.disk_free_alarm),
          kv("File descriptors", "fd", `${fmt(n.fd_used)} / ${fmt(n.fd_total)}`),
          kv("Sockets", "sockets", `${fmt(n.sockets_used)} / ${fmt(n.sockets_total)}`),
          kv("Processors", "processors", fmt(n.processors)),
          kv("Uptime", "uptime", fmtDuration(n.uptime != null ? n.uptime : ov.uptime)),
        ];
        if (!health) alarms.textContent = "unknown";
        else if (health.status === "ok") alarms.textContent = "none";
        else alarms.textContent = (health.alarms || []).map((a) => `${a.resource} alarm on ${a.node}`).join(", ") || health.reason || "failed";
        alarms.className = health && health.status !== "ok" ? "badge alarm" : "badge ok";
      };
    },
  };

  // ---------------------------------------------------------------- connections
  PAGES.connections = {
    title: "Connections",
    mount(ctx) {
      const tracker = rateTracker();
      const pager = makePager("connections", "connections", () => ctx.refresh());
      const table = connectionTable("connections-table", "Client connections (AMQP and MQTT)", () => ctx.refresh(), "No connections");
      ctx.root.append(el("h1", { text: "Connections", tabindex: "-1" }), pager.node, table.wrap);
      return async () => {
        const data = await pager.fetchPage("/connections");
        if (!ctx.alive) return;
        table.update(withConnectionRates(data.items, tracker));
      };
    },
  };

  // ---------------------------------------------------------------- channels
  PAGES.channels = {
    title: "Channels",
    mount(ctx) {
      const tracker = rateTracker();
      const pager = makePager("channels", "channels", () => ctx.refresh());
      const table = makeTable({
        id: "channels-table", caption: "AMQP channels", key: (c) => c.name, rowAttrs: (c) => ({ "data-name": c.name }), empty: "No channels",
        columns: [
          { col: "name", label: "Channel", value: (c) => c.name },
          { col: "user", label: "User", value: (c) => c.user || "" },
          { col: "vhost", label: "Vhost", value: (c) => c.vhost || "" },
          { col: "state", label: "State", value: (c) => c.state || "" },
          { col: "prefetch", label: "Prefetch", num: true, value: (c) => fmt(c.prefetch_count) },
          { col: "consumers", label: "Consumers", num: true, value: (c) => fmt(c.consumer_count) },
          { col: "unacked", label: "Unacked", num: true, value: (c) => fmt(c.messages_unacknowledged) },
          { col: "unconfirmed", label: "Unconfirmed", num: true, value: (c) => fmt(c.messages_unconfirmed) },
          { col: "publish-rate", label: "Publish", num: true, value: (c) => fmtRate(c._publish) },
          { col: "deliver-rate", label: "Deliver / get", num: true, value: (c) => fmtRate(c._deliver) },
          { col: "ack-rate", label: "Ack", num: true, value: (c) => fmtRate(c._ack) },
        ],
      });
      const consumers = makeTable({
        id: "consumers-table", caption: "Consumers (first 100)", empty: "No consumers",
        key: (c) => `${c.channel_details && c.channel_details.name}|${c.consumer_tag}|${c.queue && c.queue.vhost}|${c.queue && c.queue.name}`,
        rowAttrs: (c) => ({ "data-tag": c.consumer_tag }),
        columns: [
          { col: "queue", label: "Queue", sig: (c) => `${c.queue.vhost}/${c.queue.name}`, render: (c) => el("a", { href: `#/queue/${enc(c.queue.vhost)}/${enc(c.queue.name)}`, text: c.queue.name }) },
          { col: "vhost", label: "Vhost", value: (c) => c.queue.vhost },
          { col: "tag", label: "Consumer tag", value: (c) => c.consumer_tag },
          { col: "connection", label: "Connection", value: (c) => (c.channel_details && c.channel_details.connection_name) || "" },
          { col: "ack", label: "Ack required", value: (c) => (c.ack_required ? "yes" : "no") },
          { col: "prefetch", label: "Prefetch", num: true, value: (c) => fmt(c.prefetch_count) },
          { col: "status", label: "Status", value: (c) => c.activity_status || (c.active ? "up" : "waiting") },
        ],
      });
      ctx.root.append(el("h1", { text: "Channels", tabindex: "-1" }), pager.node, table.wrap, el("h2", { text: "Consumers" }), consumers.wrap);
      return async () => {
        const [data, cons] = await Promise.all([
          pager.fetchPage("/channels"),
          api("GET", "/consumers" + query({ page: 1, page_size: 100 })).catch(() => null),
        ]);
        if (!ctx.alive) return;
        tracker.begin();
        const now = Date.now();
        for (const c of data.items) {
          const m = c.message_stats || {};
          c._publish = tracker.rate(c.name, "publish", m.publish, now);
          c._deliver = tracker.rate(c.name, "deliver", m.deliver_get, now);
          c._ack = tracker.rate(c.name, "ack", m.ack, now);
        }
        tracker.end();
        table.update(data.items);
        if (cons) consumers.update(cons.items || []);
      };
    },
  };

  // ---------------------------------------------------------------- exchanges
  PAGES.exchanges = {
    title: "Exchanges",
    mount(ctx) {
      const pager = makePager("exchanges", "exchanges", () => ctx.refresh());
      const detail = el("section", { id: "exchange-detail", class: "card", hidden: true, "aria-labelledby": "exchange-detail-heading" });
      let selected = null; // {vhost, name}
      const features = (x) => [x.durable ? "durable" : "transient", x.auto_delete ? "auto-delete" : "", x.internal ? "internal" : "", fmtJson(x.arguments)].filter(Boolean).join(", ");
      const columns = [
        {
          col: "name", label: "Name", sort: "name", sig: (x) => `${x.vhost}\0${x.name}`,
          render: (x) => el("a", {
            href: "#/exchanges", class: "exchange-link", text: exchangeLabel(x.name),
            onclick: (e) => { e.preventDefault(); showDetail(x.vhost, x.name); },
          }),
        },
        { col: "vhost", label: "Vhost", value: (x) => x.vhost },
        { col: "type", label: "Type", value: (x) => x.type },
        { col: "features", label: "Features", value: features },
        { col: "policy", label: "Policy", value: (x) => x.policy || "" },
      ];
      if (canWrite()) {
        columns.push({
          col: "actions", label: "Actions", sig: (x) => `${x.vhost}\0${x.name}`,
          render: (x) => (x.name === "" || x.name.startsWith("amq.") ? "" : el("button", {
            type: "button", class: "delete-exchange danger small", text: "Delete", "aria-label": `Delete exchange ${x.name}`,
            onclick: async (e) => {
              e.target.disabled = true;
              try {
                await api("DELETE", exchangePath(x.vhost, x.name));
                flash(`Exchange ${x.name} deleted`);
                if (selected && selected.vhost === x.vhost && selected.name === x.name) { selected = null; detail.hidden = true; }
                ctx.refresh();
              } catch (err) { e.target.disabled = false; flashError(`Could not delete exchange ${x.name}`, err); }
            },
          })),
        });
      }
      const table = makeTable({
        id: "exchanges-table", hideCaption: true, caption: "Exchanges", columns, key: (x) => `${x.vhost}\0${x.name}`,
        rowAttrs: (x) => ({ "data-name": x.name, "data-vhost": x.vhost }), empty: "No exchanges",
        onSort: (f, r) => pager.sort(f, r),
      });
      ctx.root.append(el("h1", { text: "Exchanges", tabindex: "-1" }), pager.node, table.wrap, detail);

      if (canWrite()) {
        const name = el("input", { id: "exchange-name", required: true, autocomplete: "off" });
        const type = el("select", { id: "exchange-type" }, ["direct", "fanout", "topic", "headers"].map((t) => el("option", { value: t, text: t })));
        const vhost = vhostSelect("exchange-vhost", ["/"]);
        const durable = el("input", { id: "exchange-durable", type: "checkbox", checked: true });
        const autoDelete = el("input", { id: "exchange-auto-delete", type: "checkbox" });
        const internal = el("input", { id: "exchange-internal", type: "checkbox" });
        const args = el("input", { id: "exchange-arguments", autocomplete: "off", placeholder: '{"alternate-exchange": "ae"}' });
        const button = submit("add-exchange-button", "Add exchange");
        pager.node.before(form("add-exchange-form", "Add an exchange", [
          field("Virtual host", vhost), field("Name", name), field("Type", type),
          checkField("Durable", durable), checkField("Auto-delete", autoDelete), checkField("Internal", internal),
          field("Arguments (JSON)", args),
        ], button, async () => {
          try {
            const body = { type: type.value, durable: durable.checked, auto_delete: autoDelete.checked, internal: internal.checked, arguments: parseJsonField(args, "Arguments") };
            if (!name.value) throw new Error("the name is empty");
            await api("PUT", exchangePath(vhost.value, name.value), body);
            flash(`Exchange ${name.value} declared`);
            name.value = "";
            await ctx.refresh();
          } catch (err) { flashError("Could not add the exchange", err); }
        }));
        vhostNames().then((names) => { if (ctx.alive) vhost.replaceChildren(...vhostSelect("x", names).children); });
      }

      // exchange detail: bindings from it, bind a queue, publish
      let detailGen = 0;
      async function showDetail(vhost, name) {
        selected = { vhost, name };
        const gen = ++detailGen;
        detail.hidden = false;
        detail.replaceChildren(el("p", { text: "Loading…" }));
        let info, bindings;
        try {
          [info, bindings] = await Promise.all([
            name === "" ? Promise.resolve({ name: "", vhost, type: "direct", durable: true, auto_delete: false, internal: false, arguments: {} }) : api("GET", exchangePath(vhost, name)),
            name === "" ? Promise.resolve([]) : api("GET", exchangePath(vhost, name) + "/bindings/source").catch(() => []),
          ]);
        } catch (err) {
          if (gen === detailGen) detail.replaceChildren(el("p", { class: "error-text", text: `Exchange not found: ${errorText(err)}` }));
          return;
        }
        if (gen !== detailGen || !ctx.alive) return;
        const bt = makeTable({
          id: "exchange-bindings-table", caption: `Bindings from ${exchangeLabel(name)}`, empty: name === "" ? "The default exchange routes to every queue by its name" : "No bindings",
          key: (b) => `${b.destination_type}|${b.destination}|${b.properties_key}`,
          rowAttrs: (b) => ({ "data-destination": b.destination }),
          columns: [
            { col: "destination", label: "To", sig: (b) => b.destination_type + b.destination, render: (b) => (b.destination_type === "queue" ? el("a", { href: `#/queue/${enc(vhost)}/${enc(b.destination)}`, text: b.destination }) : `${b.destination} (exchange)`) },
            { col: "routing-key", label: "Routing key", value: (b) => b.routing_key },
            { col: "arguments", label: "Arguments", value: (b) => fmtJson(b.arguments) },
          ],
        });
        bt.update(bindings || []);
        const close = el("button", { type: "button", class: "secondary small", text: "Close", onclick: () => { selected = null; detail.hidden = true; } });
        detail.replaceChildren(
          el("div", { class: "row-between" }, el("h2", { id: "exchange-detail-heading", tabindex: "-1", text: `Exchange ${exchangeLabel(name)}` }), close),
          el("p", { class: "muted", text: `vhost ${vhost} · type ${info.type} · ${features(info)}` }),
          bt.wrap,
        );
        if (canWrite()) {
          const key = el("input", { id: "exchange-publish-key", autocomplete: "off" });
          const payload = el("textarea", { id: "exchange-publish-payload", rows: 3 });
          const persistent = el("input", { id: "exchange-publish-persistent", type: "checkbox" });
          const pb = submit("exchange-publish-button", "Publish message");
          detail.append(form("exchange-publish-form", "Publish a message", [field("Routing key", key), field("Payload", payload), checkField("Persistent (delivery mode 2)", persistent)], pb, async () => {
            try {
              const res = await publish(vhost, name, { properties: persistent.checked ? { delivery_mode: 2 } : {}, routing_key: key.value, payload: payload.value, payload_encoding: "string" });
              flash(res && res.routed === false ? "Message published, but not routed to any queue" : "Message published");
            } catch (err) { flashError("Could not publish", err); }
          }));
          if (name !== "") {
            const queue = el("input", { id: "exchange-bind-queue", autocomplete: "off", required: true });
            const rk = el("input", { id: "exchange-bind-key", autocomplete: "off" });
            const bb = submit("exchange-bind-button", "Bind");
            detail.append(form("exchange-bind-form", "Bind a queue to this exchange", [field("Queue", queue), field("Routing key", rk)], bb, async () => {
              try {
                await api("POST", `/bindings/${enc(vhost)}/e/${enc(name)}/q/${enc(queue.value)}`, { routing_key: rk.value, arguments: {} });
                flash(`Queue ${queue.value} bound to ${name}`);
                bt.update(await api("GET", exchangePath(vhost, name) + "/bindings/source"));
              } catch (err) { flashError("Could not bind", err); }
            }));
          }
        }
        detail.scrollIntoView({ block: "start" });
        $("#exchange-detail-heading").focus({ preventScroll: true });
      }
      return async () => {
        const data = await pager.fetchPage("/exchanges", { columns: "name,vhost,type,durable,auto_delete,internal,arguments,policy" });
        if (!ctx.alive) return;
        table.update(data.items);
      };
    },
  };

  // ---------------------------------------------------------------- queues
  const queueHref = (vhost, name) => `#/queue/${enc(vhost)}/${enc(name)}`;
  function queueFeatures(q) {
    const parts = [q.durable ? "durable" : "transient"];
    if (q.auto_delete) parts.push("auto-delete");
    if (q.exclusive) parts.push("exclusive");
    for (const [k, v] of Object.entries(q.arguments || {})) parts.push(`${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`);
    return parts.join(", ");
  }
  PAGES.queues = {
    title: "Queues",
    mount(ctx) {
      const pager = makePager("queues", "queues", () => ctx.refresh());
      const table = makeTable({
        id: "queues-table", hideCaption: true, caption: "Queues", key: (q) => `${q.vhost}\0${q.name}`,
        rowAttrs: (q) => ({ "data-name": q.name, "data-vhost": q.vhost }), empty: "No queues",
        onSort: (f, r) => pager.sort(f, r),
        columns: [
          { col: "name", label: "Name", sort: "name", sig: (q) => queueHref(q.vhost, q.name), render: (q) => el("a", { href: queueHref(q.vhost, q.name), text: q.name }) },
          { col: "vhost", label: "Vhost", sort: "vhost", value: (q) => q.vhost },
          { col: "type", label: "Type", value: (q) => q.type || "classic" },
          { col: "features", label: "Features", value: queueFeatures },
          { col: "policy", label: "Policy", value: (q) => q.policy || "" },
          { col: "state", label: "State", value: (q) => q.state || "" },
          { col: "ready", label: "Ready", num: true, sort: "messages_ready", value: (q) => fmt(q.messages_ready) },
          { col: "unacked", label: "Unacked", num: true, sort: "messages_unacknowledged", value: (q) => fmt(q.messages_unacknowledged) },
          { col: "messages", label: "Total", num: true, sort: "messages", value: (q) => fmt(q.messages) },
          { col: "consumers", label: "Consumers", num: true, sort: "consumers", value: (q) => fmt(q.consumers) },
          { col: "publish-rate", label: "Incoming", num: true, value: (q) => fmtRate(q._publish) },
          { col: "deliver-rate", label: "Deliver / get", num: true, value: (q) => fmtRate(q._deliver) },
        ],
      });
      const tracker = rateTracker();
      ctx.root.append(el("h1", { text: "Queues", tabindex: "-1" }), pager.node, table.wrap);
      if (canWrite()) {
        const vhost = vhostSelect("queue-vhost", ["/"]);
        const name = el("input", { id: "queue-name", required: true, autocomplete: "off" });
        const durable = el("input", { id: "queue-durable", type: "checkbox", checked: true });
        const autoDelete = el("input", { id: "queue-auto-delete", type: "checkbox" });
        const args = el("input", { id: "queue-arguments", autocomplete: "off", placeholder: '{"x-max-priority": 10}' });
        const button = submit("add-queue-button", "Add queue");
        pager.node.before(form("add-queue-form", "Add a queue", [
          field("Virtual host", vhost), field("Name", name), checkField("Durable", durable), checkField("Auto-delete", autoDelete),
          field("Arguments (JSON)", args, 'e.g. {"x-max-priority": 10, "x-message-ttl": 60000}'),
        ], button, async () => {
          try {
            const body = { durable: durable.checked, auto_delete: autoDelete.checked, arguments: parseJsonField(args, "Arguments") };
            if (!name.value) throw new Error("the name is empty");
            await api("PUT", `/queues/${enc(vhost.value)}/${enc(name.value)}`, body);
            flash(`Queue ${name.value} declared`);
            name.value = "";
            await ctx.refresh();
          } catch (err) { flashError("Could not add the queue", err); }
        }));
        vhostNames().then((names) => { if (ctx.alive) vhost.replaceChildren(...vhostSelect("x", names).children); });
      }
      return async () => {
        const data = await pager.fetchPage("/queues", { columns: "name,vhost,type,durable,auto_delete,exclusive,arguments,policy,state,messages,messages_ready,messages_unacknowledged,consumers,message_stats" });
        if (!ctx.alive) return;
        tracker.begin();
        const now = Date.now();
        for (const q of data.items) {
          const m = q.message_stats || {};
          q._publish = tracker.rate(`${q.vhost}\0${q.name}`, "publish", m.publish, now);
          q._deliver = tracker.rate(`${q.vhost}\0${q.name}`, "deliver", m.deliver_get, now);
        }
        tracker.end();
        table.update(data.items);
      };
    },
  };

  // ---------------------------------------------------------------- one queue
  const queueHistory = new Map(); // "vhost\0name" → [{t, messages, ready, unacked}]
  PAGES.queue = {
    title: "Queue",
    params: 2,
    mount(ctx) {
      const [vhost, name] = ctx.params;
      const hkey = `${vhost}\0${name}`;
      const base = `/queues/${enc(vhost)}/${enc(name)}`;
      const heading = el("h1", { id: "queue-name-heading", text: name, tabindex: "-1" });
      const counts = el("dl", { id: "queue-counts", class: "stats" });
      const stat = (col, label) => {
        const dd = el("dd", { "data-col": col, text: "–" });
        counts.append(el("div", { class: "stat" }, el("dt", { text: label }), dd));
        return dd;
      };
      const c = { ready: stat("ready", "Ready"), unacked: stat("unacked", "Unacked"), messages: stat("messages", "Total"), consumers: stat("consumers", "Consumers"), bytes: stat("bytes", "Message bytes"), publishRate: stat("publish-rate", "Incoming"), deliverRate: stat("deliver-rate", "Deliver / get") };
      const info = el("p", { id: "queue-info", class: "muted" });
      const series = [
        { key: "messages", label: "Total", color: "#1f5fbf", points: [] },
        { key: "ready", label: "Ready", color: "#1d7a3a", dash: "6 4", points: [] },
        { key: "unacked", label: "Unacked", color: "#b35900", dash: "2 3", points: [] },
      ];
      const svg = chartSvg("queue-depth-chart", "Messages in the queue over the last 5 minutes");
      const rateSeries = [
        { key: "publish", label: "Incoming/s", color: "#1f5fbf", points: [] },
        { key: "deliver_get", label: "Delivered or got/s", color: "#1d7a3a", dash: "6 4", points: [] },
      ];
      const rateSvg = chartSvg("queue-rates-chart", "Message rates of the queue over the last 5 minutes");
      const bindings = makeTable({
        id: "queue-bindings-table", hideCaption: true, caption: "Bindings to this queue", empty: "No bindings",
        key: (b) => `${b.source}|${b.properties_key}`, rowAttrs: (b) => ({ "data-source": b.source, "data-routing-key": b.routing_key }),
        columns: [
          { col: "source", label: "From exchange", value: (b) => exchangeLabel(b.source) },
          { col: "routing-key", label: "Routing key", value: (b) => b.routing_key },
          { col: "arguments", label: "Arguments", value: (b) => fmtJson(b.arguments) },
        ].concat(canWrite() ? [{
          col: "actions", label: "Actions", sig: (b) => `${b.source}|${b.properties_key}`,
          render: (b) => (b.source === "" ? "" : el("button", {
            type: "button", class: "unbind danger small", text: "Unbind",
            onclick: async (e) => {
              e.target.disabled = true;
              try {
                await api("DELETE", `/bindings/${enc(vhost)}/e/${enc(b.source)}/q/${enc(name)}/${enc(b.properties_key)}`);
                flash(`Binding from ${b.source} removed`);
                ctx.refresh();
              } catch (err) { e.target.disabled = false; flashError("Could not unbind", err); }
            },
          })),
        }] : []),
      });
      const results = el("div", { id: "get-results", "aria-live": "polite" });
      const missing = el("p", { id: "queue-missing", class: "error-text", hidden: true });
      ctx.root.append(
        el("p", { class: "kicker" }, el("a", { href: "#/queues", text: "Queues" }), ` › vhost ${vhost}`),
        heading, missing, info, counts,
        el("div", { class: "grid2" },
          el("section", { class: "card" }, el("h2", { text: "Queue depth (last 5 minutes)" }), svg, legend(series)),
          el("section", { class: "card" }, el("h2", { text: "Message rates (last 5 minutes)" }), rateSvg, legend(rateSeries))),
      );
      if (canWrite()) {
        const payload = el("textarea", { id: "publish-payload", rows: 4 });
        const rk = el("input", { id: "publish-routing-key", value: name, readonly: true });
        const persistent = el("input", { id: "publish-persistent", type: "checkbox" });
        const headers = el("input", { id: "publish-headers", autocomplete: "off", placeholder: '{"x-custom": "value"}' });
        const pb = submit("publish-button", "Publish message");
        const getCount = el("input", { id: "get-count", type: "number", min: 1, max: 1000, value: "1" });
        const ackmode = el("select", { id: "get-ackmode" },
          el("option", { value: "ack_requeue_true", text: "Nack message requeue true", selected: true }),
          el("option", { value: "ack_requeue_false", text: "Automatic ack (remove)" }),
          el("option", { value: "reject_requeue_true", text: "Reject requeue true" }),
          el("option", { value: "reject_requeue_false", text: "Reject requeue false (remove)" }));
        const encoding = el("select", { id: "get-encoding" }, el("option", { value: "auto", text: "Auto string / base64" }), el("option", { value: "base64", text: "base64" }));
        const gb = submit("get-button", "Get messages");
        const purge = el("button", { type: "button", id: "purge-button", class: "danger", text: "Purge messages" });
        const del = el("button", { type: "button", id: "delete-queue-button", class: "danger", text: "Delete queue" });
        ctx.root.append(el("div", { class: "grid2" },
          form("publish-form", "Publish a message (default exchange)", [
            field("Routing key", rk), field("Payload", payload), field("Headers (JSON)", headers), checkField("Persistent (delivery mode 2)", persistent),
          ], pb, async () => {
            try {
              const properties = {};
              if (persistent.checked) properties.delivery_mode = 2;
              const h = parseJsonField(headers, "Headers", null);
              if (h) properties.headers = h;
              const res = await publish(vhost, "", { properties, routing_key: rk.value, payload: payload.value, payload_encoding: "string" });
              flash(res && res.routed === false ? "Message published, but not routed (does the queue still exist?)" : "Message published");
              await ctx.refresh();
            } catch (err) { flashError("Could not publish", err); }
          }),
          form("get-form", "Get messages", [field("Messages", getCount), field("Ack mode", ackmode), field("Encoding", encoding)], gb, async () => {
            try {
              const msgs = await api("POST", base + "/get", { count: Math.max(1, parseInt(getCount.value, 10) || 1), ackmode: ackmode.value, encoding: encoding.value, truncate: 50000 });
              showMessages(results, msgs || []);
              flash(msgs && msgs.length ? `${fmt(msgs.length)} message${msgs.length === 1 ? "" : "s"} fetched` : "Queue is empty");
              await ctx.refresh();
            } catch (err) { flashError("Could not get messages", err); }
          })),
          results,
          el("section", { class: "card danger-zone" }, el("h2", { text: "Purge or delete" }), el("div", { class: "actions" }, purge, del)));
        purge.addEventListener("click", async () => {
          purge.disabled = true;
          try { await api("DELETE", base + "/contents"); flash(`Queue ${name} purged`); await ctx.refresh(); } catch (err) { flashError("Could not purge", err); } finally { purge.disabled = false; }
        });
        del.addEventListener("click", async () => {
          if (!window.confirm(`Delete queue "${name}" in vhost "${vhost}"? Its messages are lost.`)) return;
          del.disabled = true;
          try {
            await api("DELETE", base);
            queueHistory.delete(hkey);
            flash(`Queue ${name} deleted`);
            location.hash = "#/queues";
          } catch (err) { del.disabled = false; flashError("Could not delete the queue", err); }
        });
      } else {
        ctx.root.append(results);
      }
      ctx.root.append(el("section", { class: "card" }, el("h2", { text: "Bindings" }), bindings.wrap));
      if (canWrite()) {
        const ex = el("input", { id: "bind-exchange", required: true, autocomplete: "off", value: "amq.direct" });
        const rk = el("input", { id: "bind-routing-key", autocomplete: "off", value: name });
        const bb = submit("bind-button", "Bind");
        ctx.root.append(form("queue-bind-form", "Bind this queue to an exchange", [field("Exchange", ex), field("Routing key", rk)], bb, async () => {
          try {
            await api("POST", `/bindings/${enc(vhost)}/e/${enc(ex.value)}/q/${enc(name)}`, { routing_key: rk.value, arguments: {} });
            flash(`Bound to ${ex.value}`);
            await ctx.refresh();
          } catch (err) { flashError("Could not bind", err); }
        }));
      }
      return async () => {
        let q;
        try {
          q = await api("GET", base);
        } catch (err) {
          if (!ctx.alive) return;
          if (err.status === 404) {
            missing.hidden = false;
            missing.textContent = `Queue "${name}" was not found in vhost "${vhost}".`;
            return;
          }
          throw err;
        }
        const b = await api("GET", base + "/bindings").catch(() => null);
        if (!ctx.alive) return;
        missing.hidden = true;
        c.ready.textContent = fmt(q.messages_ready);
        c.unacked.textContent = fmt(q.messages_unacknowledged);
        c.messages.textContent = fmt(q.messages);
        c.consumers.textContent = fmt(q.consumers);
        c.bytes.textContent = fmtBytes(q.message_bytes);
        const extra = [`type ${q.type || "classic"}`, queueFeatures(q), `state ${q.state || "?"}`];
        if (q.policy) extra.push(`policy ${q.policy} ${fmtJson(q.effective_policy_definition)}`);
        if (q.messages_paged_out) extra.push(`${fmt(q.messages_paged_out)} paged out (${fmtBytes(q.message_bytes_paged_out)})`);
        if (q.messages_persistent) extra.push(`${fmt(q.messages_persistent)} persistent`);
        info.textContent = extra.join(" · ");
        let hist = queueHistory.get(hkey);
        if (!hist) { hist = []; queueHistory.set(hkey, hist); }
        const now = Date.now();
        const ms = q.message_stats || {};
        hist.push({ t: now, messages: q.messages || 0, ready: q.messages_ready || 0, unacked: q.messages_unacknowledged || 0, publish: ms.publish, deliver_get: ms.deliver_get });
        while (hist.length && hist[0].t < now - HISTORY_MS - POLL_MS) hist.shift();
        if (hist.length === 1) setTimeout(() => ctx.refresh(), 1500);
        for (const s of series) s.points = hist.map((h) => [h.t, h[s.key]]);
        drawChart(svg, series, { height: 180 });
        const rates = [];
        for (let i = 1; i < hist.length; i++) {
          const a = hist[i - 1], b2 = hist[i], dt = (b2.t - a.t) / 1000;
          if (dt <= 0) continue;
          const r = (f) => (b2[f] == null || a[f] == null || b2[f] < a[f] ? 0 : (b2[f] - a[f]) / dt);
          rates.push({ t: b2.t, publish: r("publish"), deliver_get: r("deliver_get") });
        }
        for (const s of rateSeries) s.points = rates.map((p) => [p.t, p[s.key]]);
        drawChart(rateSvg, rateSeries, { height: 180, unit: "/s" });
        const lastRate = rates[rates.length - 1];
        c.publishRate.textContent = lastRate && ms.publish != null ? fmtRate(lastRate.publish) : "–";
        c.deliverRate.textContent = lastRate && ms.deliver_get != null ? fmtRate(lastRate.deliver_get) : "–";
        if (b) bindings.update(b);
      };
    },
  };
  function showMessages(container, msgs) {
    container.replaceChildren();
    if (!msgs.length) { container.append(el("p", { class: "empty", text: "The queue is empty: no message was fetched." })); return; }
    msgs.forEach((m, i) => {
      const row = (label, cls, value) => [el("dt", { text: label }), el("dd", { class: cls, text: value })];
      container.append(el("article", { class: "message card" },
        el("h3", { text: `Message ${i + 1}` }),
        el("dl", { class: "kv-list" },
          row("Exchange", "exchange", exchangeLabel(m.exchange)),
          row("Routing key", "routing-key", m.routing_key),
          row("Redelivered", "redelivered", String(Boolean(m.redelivered))),
          row("Remaining in queue", "message-count", fmt(m.message_count)),
          row("Properties", "properties", JSON.stringify(m.properties || {})),
          row("Payload", "payload-info", `${fmt(m.payload_bytes)} bytes, encoding ${m.payload_encoding || "string"}`)),
        el("pre", { class: "payload", text: m.payload })));
    });
  }

  // ---------------------------------------------------------------- MQTT
  const MAX_ROWS = 500;
  PAGES.mqtt = {
    title: "MQTT",
    mount(ctx) {
      const tracker = rateTracker();
      const filter = el("input", { id: "mqtt-filter", type: "search", autocomplete: "off", placeholder: "client id or topic" });
      let filterText = "";
      let ft = null;
      filter.addEventListener("input", () => { clearTimeout(ft); ft = setTimeout(() => { filterText = filter.value.toLowerCase(); ctx.refresh(); }, 300); });
      const sessions = makeTable({
        id: "mqtt-sessions-table", caption: "MQTT sessions (online and offline)", empty: "No MQTT sessions",
        key: (s) => `${s.vhost}\0${s.client_id}`, rowAttrs: (s) => ({ "data-client-id": s.client_id, "data-vhost": s.vhost }),
        columns: [
          { col: "client", label: "Client id", value: (s) => s.client_id },
          { col: "vhost", label: "Vhost", value: (s) => s.vhost },
          { col: "online", label: "Status", sig: (s) => String(s.online), render: (s) => el("span", { class: s.online ? "badge ok" : "badge muted-badge", text: s.online ? "online" : "offline" }) },
          { col: "subscriptions", label: "Subscriptions", value: (s) => (s.subscriptions || []).map((x) => `${x.filter} (QoS ${x.qos})`).join(", ") },
          { col: "queued", label: "Queued messages", num: true, value: (s) => fmt(s.queued_messages) },
        ],
      });
      const sessionsNote = el("p", { id: "mqtt-sessions-note", class: "muted" });
      const conns = connectionTable("mqtt-connections-table", "MQTT connections", () => ctx.refresh(), "No MQTT connections");
      const retained = makeTable({
        id: "mqtt-retained-table", hideCaption: true, caption: "Retained messages", empty: "No retained messages",
        key: (r) => `${r.vhost}\0${r.topic}`, rowAttrs: (r) => ({ "data-topic": r.topic, "data-vhost": r.vhost }),
        columns: [
          { col: "topic", label: "Topic", value: (r) => r.topic },
          { col: "vhost", label: "Vhost", value: (r) => r.vhost },
          { col: "qos", label: "QoS", num: true, value: (r) => String(r.qos) },
          { col: "bytes", label: "Bytes", num: true, value: (r) => fmt(r.payload_bytes) },
          { col: "payload", label: "Payload (preview)", value: (r) => r.payload },
        ],
      });
      const tree = el("div", { id: "mqtt-topic-tree", class: "topic-tree" });
      const openState = new Map(); // path → open?
      let treeSig = "";
      ctx.root.append(
        el("h1", { text: "MQTT", tabindex: "-1" }),
        el("div", { class: "toolbar" }, el("div", { class: "field-inline" }, el("label", { for: "mqtt-filter", text: "Filter sessions and topics" }), filter)),
        el("section", { class: "card" }, el("h2", { text: "Sessions" }), sessionsNote, sessions.wrap),
        el("section", { class: "card" }, el("h2", { text: "Connections" }), conns.wrap),
        el("div", { class: "grid2" },
          el("section", { class: "card" }, el("h2", { text: "Retained messages" }), retained.wrap),
          el("section", { class: "card", "aria-labelledby": "tree-heading" }, el("h2", { id: "tree-heading", text: "Topic tree" }),
            el("p", { class: "muted", text: "Levels of topics published to lately, retained topics and subscription filters." }), tree)),
      );
      function renderTree(retainedList, sessionList, recentList) {
        const root = { children: new Map() };
        const nodeAt = (topic) => {
          let n = root;
          const levels = topic.split("/");
          levels.forEach((level, i) => {
            if (!n.children.has(level)) n.children.set(level, { level, path: levels.slice(0, i + 1).join("/"), children: new Map(), retained: [], subs: [], recent: [] });
            n = n.children.get(level);
          });
          return n;
        };
        for (const r of retainedList) nodeAt(r.topic).retained.push(r);
        for (const t of recentList) nodeAt(t.topic).recent.push(t);
        for (const s of sessionList) for (const sub of s.subscriptions || []) nodeAt(sub.filter).subs.push({ client: s.client_id, qos: sub.qos, vhost: s.vhost });
        const sig = JSON.stringify([retainedList.map((r) => [r.vhost, r.topic, r.payload_bytes, r.qos]), sessionList.map((s) => [s.client_id, s.subscriptions]), recentList.map((t) => [t.vhost, t.topic, Math.round(t.seconds_ago / 10)])]);
        if (sig === treeSig) return;
        treeSig = sig;
        const build = (n) => {
          const ul = el("ul", { role: n === root ? "tree" : "group", "aria-labelledby": n === root ? "tree-heading" : null });
          const sorted = [...n.children.values()].sort((a, b) => a.level.localeCompare(b.level));
          for (const child of sorted) {
            const label = el("span", { class: "level" + (/^[+#]$/.test(child.level) ? " wildcard" : ""), text: child.level === "" ? "(empty)" : child.level });
            const badges = [];
            for (const r of child.retained) badges.push(el("span", { class: "badge retained", title: r.payload, text: `retained ${fmt(r.payload_bytes)} B, QoS ${r.qos}${r.vhost !== "/" ? `, vhost ${r.vhost}` : ""}` }));
            for (const s of child.subs) badges.push(el("span", { class: "badge sub", text: `${s.client} QoS ${s.qos}${s.vhost !== "/" ? `, vhost ${s.vhost}` : ""}` }));
            for (const t of child.recent) badges.push(el("span", { class: "badge recent", text: `published ${ago(t.seconds_ago)}${t.vhost !== "/" ? `, vhost ${t.vhost}` : ""}` }));
            const li = el("li", { "data-path": child.path, role: "treeitem" });
            if (child.children.size) {
              const details = el("details", { open: openState.has(child.path) ? openState.get(child.path) : true },
                el("summary", {}, label, " ", badges), build(child));
              details.addEventListener("toggle", () => openState.set(child.path, details.open));
              li.append(details);
            } else {
              li.append(el("span", { class: "leaf" }, label, " ", badges));
            }
            ul.append(li);
          }
          return ul;
        };
        tree.replaceChildren(root.children.size ? build(root) : el("p", { class: "empty", text: "No recent traffic, retained topics or subscriptions" }));
      }
      return async () => {
        const [ss, rr, cc, tt] = await Promise.all([
          api("GET", "/mqtt/sessions"),
          api("GET", "/mqtt/retained"),
          api("GET", "/connections" + query({ page: 1, page_size: 500 })).catch(() => null),
          api("GET", "/mqtt/topics").catch(() => []),
        ]);
        if (!ctx.alive) return;
        const match = (s) => !filterText || s.toLowerCase().includes(filterText);
        const sessionList = (ss || []).filter((s) => match(s.client_id) || (s.subscriptions || []).some((x) => match(x.filter)));
        sessionList.sort((a, b) => (a.vhost + a.client_id).localeCompare(b.vhost + b.client_id));
        const retainedList = (rr || []).filter((r) => match(r.topic));
        retainedList.sort((a, b) => a.topic.localeCompare(b.topic));
        sessions.update(sessionList.slice(0, MAX_ROWS));
        const online = (ss || []).filter((s) => s.online).length;
        sessionsNote.textContent = `${plural((ss || []).length, "session")}, ${fmt(online)} online` + (sessionList.length > MAX_ROWS ? ` — showing the first ${MAX_ROWS} of ${fmt(sessionList.length)}` : "");
        retained.update(retainedList.slice(0, MAX_ROWS));
        if (cc) {
          const mqtt = (cc.items || []).filter((c) => /^MQTT/i.test(c.protocol || "") && (match(clientOf(c)) || match(c.name)));
          conns.update(withConnectionRates(mqtt, tracker));
        }
        const recentList = (tt || []).filter((t) => match(t.topic));
        renderTree(retainedList.slice(0, 2000), sessionList.slice(0, 2000), recentList.slice(0, 2000));
      };
    },
  };

  // ---------------------------------------------------------------- admin
  PAGES.admin = {
    title: "Admin",
    mount(ctx) {
      ctx.root.append(el("h1", { text: "Admin", tabindex: "-1" }));
      if (!isAdmin()) {
        ctx.root.append(el("p", { id: "admin-denied", class: "card", text: "The Admin page needs a user with the administrator tag." }));
        return async () => {};
      }
      const listQuery = query({ page: 1, page_size: 500 });
      const del = (cls, label, path, done, okText) => el("button", {
        type: "button", class: `${cls} danger small`, text: "Delete", "aria-label": label,
        onclick: async (e) => {
          e.target.disabled = true;
          try { await api("DELETE", path); flash(okText); ctx.refresh(); } catch (err) { e.target.disabled = false; flashError("Could not delete", err); }
        },
      });
      const datalist = (id) => el("datalist", { id });
      const userList = datalist("admin-user-list"), vhostList = datalist("admin-vhost-list");
      const fillList = (list, names) => list.replaceChildren(...names.map((n) => el("option", { value: n })));
      // users
      const users = makeTable({
        id: "users-table", hideCaption: true, caption: "Users", key: (u) => u.name, rowAttrs: (u) => ({ "data-name": u.name }), empty: "No users",
        columns: [
          { col: "name", label: "Name", value: (u) => u.name },
          { col: "tags", label: "Tags", value: (u) => (Array.isArray(u.tags) ? u.tags.join(", ") : u.tags || "") },
          { col: "password", label: "Password", value: (u) => (u.password_hash ? "set" : "none") },
          { col: "actions", label: "Actions", sig: (u) => u.name, render: (u) => (u.name === state.user.name ? el("span", { class: "muted", text: "(you)" }) : del("delete-user", `Delete user ${u.name}`, `/users/${enc(u.name)}`, null, `User ${u.name} deleted`)) },
        ],
      });
      const uName = el("input", { id: "new-user-name", required: true, autocomplete: "off" });
      const uPass = el("input", { id: "new-user-password", type: "password", autocomplete: "new-password" });
      const uTags = el("input", { id: "new-user-tags", autocomplete: "off", placeholder: "administrator, monitoring, management, policymaker" });
      const addUser = form("add-user-form", "Add or update a user", [field("Name", uName), field("Password", uPass, "Leave empty to keep an existing user's password"), field("Tags (comma-separated)", uTags)], submit("add-user-button", "Add / update user"), async () => {
        try {
          if (!uName.value) throw new Error("the name is empty");
          const body = { tags: uTags.value.split(",").map((t) => t.trim()).filter(Boolean).join(",") };
          if (uPass.value) body.password = uPass.value;
          await api("PUT", `/users/${enc(uName.value)}`, body);
          flash(`User ${uName.value} saved`);
          uName.value = ""; uPass.value = ""; uTags.value = "";
          await ctx.refresh();
        } catch (err) { flashError("Could not save the user", err); }
      });
      // vhosts
      const vhosts = makeTable({
        id: "vhosts-table", hideCaption: true, caption: "Virtual hosts", key: (v) => v.name, rowAttrs: (v) => ({ "data-name": v.name }), empty: "No virtual hosts",
        columns: [
          { col: "name", label: "Name", value: (v) => v.name },
          { col: "description", label: "Description", value: (v) => v.description || "" },
          { col: "ready", label: "Ready", num: true, value: (v) => fmt(v.messages_ready) },
          { col: "unacked", label: "Unacked", num: true, value: (v) => fmt(v.messages_unacknowledged) },
          { col: "messages", label: "Total", num: true, value: (v) => fmt(v.messages) },
          { col: "actions", label: "Actions", sig: (v) => v.name, render: (v) => del("delete-vhost", `Delete vhost ${v.name}`, `/vhosts/${enc(v.name)}`, null, `Vhost ${v.name} deleted`) },
        ],
      });
      const vName = el("input", { id: "new-vhost-name", required: true, autocomplete: "off" });
      const vDesc = el("input", { id: "new-vhost-description", autocomplete: "off" });
      const addVhost = form("add-vhost-form", "Add a virtual host", [field("Name", vName), field("Description", vDesc)], submit("add-vhost-button", "Add vhost"), async () => {
        try {
          if (!vName.value) throw new Error("the name is empty");
          await api("PUT", `/vhosts/${enc(vName.value)}`, vDesc.value ? { description: vDesc.value } : {});
          flash(`Vhost ${vName.value} added`);
          vName.value = ""; vDesc.value = "";
          await ctx.refresh();
        } catch (err) { flashError("Could not add the vhost", err); }
      });
      // permissions
      const perms = makeTable({
        id: "permissions-table", hideCaption: true, caption: "Permissions", key: (p) => `${p.user}\0${p.vhost}`, rowAttrs: (p) => ({ "data-user": p.user, "data-vhost": p.vhost }), empty: "No permissions",
        columns: [
          { col: "user", label: "User", value: (p) => p.user },
          { col: "vhost", label: "Vhost", value: (p) => p.vhost },
          { col: "configure", label: "Configure", value: (p) => p.configure },
          { col: "write", label: "Write", value: (p) => p.write },
          { col: "read", label: "Read", value: (p) => p.read },
          { col: "actions", label: "Actions", sig: (p) => `${p.user}\0${p.vhost}`, render: (p) => del("delete-permission", `Delete permissions of ${p.user} in ${p.vhost}`, `/permissions/${enc(p.vhost)}/${enc(p.user)}`, null, `Permissions of ${p.user} in ${p.vhost} deleted`) },
        ],
      });
      const pUser = el("input", { id: "perm-user", required: true, list: "admin-user-list", autocomplete: "off" });
      const pVhost = el("input", { id: "perm-vhost", required: true, list: "admin-vhost-list", value: "/", autocomplete: "off" });
      const pConf = el("input", { id: "perm-configure", value: ".*" });
      const pWrite = el("input", { id: "perm-write", value: ".*" });
      const pRead = el("input", { id: "perm-read", value: ".*" });
      const setPerm = form("set-permission-form", "Set permissions", [field("User", pUser), field("Vhost", pVhost), field("Configure regexp", pConf), field("Write regexp", pWrite), field("Read regexp", pRead)], submit("set-permission-button", "Set permissions"), async () => {
        try {
          await api("PUT", `/permissions/${enc(pVhost.value)}/${enc(pUser.value)}`, { configure: pConf.value, write: pWrite.value, read: pRead.value });
          flash(`Permissions of ${pUser.value} in ${pVhost.value} set`);
          await ctx.refresh();
        } catch (err) { flashError("Could not set permissions", err); }
      });
      // topic permissions
      const tperms = makeTable({
        id: "topic-permissions-table", hideCaption: true, caption: "Topic permissions", key: (p) => `${p.user}\0${p.vhost}\0${p.exchange}`, rowAttrs: (p) => ({ "data-user": p.user, "data-vhost": p.vhost, "data-exchange": p.exchange }), empty: "No topic permissions",
        columns: [
          { col: "user", label: "User", value: (p) => p.user },
          { col: "vhost", label: "Vhost", value: (p) => p.vhost },
          { col: "exchange", label: "Exchange", value: (p) => p.exchange },
          { col: "write", label: "Write", value: (p) => p.write },
          { col: "read", label: "Read", value: (p) => p.read },
          { col: "actions", label: "Actions", sig: (p) => `${p.user}\0${p.vhost}\0${p.exchange}`, render: (p) => del("delete-topic-permission", `Delete topic permissions of ${p.user}`, `/topic-permissions/${enc(p.vhost)}/${enc(p.user)}${query({ exchange: p.exchange })}`, null, `Topic permissions of ${p.user} deleted`) },
        ],
      });
      const tUser = el("input", { id: "tperm-user", required: true, list: "admin-user-list", autocomplete: "off" });
      const tVhost = el("input", { id: "tperm-vhost", required: true, list: "admin-vhost-list", value: "/", autocomplete: "off" });
      const tEx = el("input", { id: "tperm-exchange", value: "amq.topic" });
      const tWrite = el("input", { id: "tperm-write", value: ".*" });
      const tRead = el("input", { id: "tperm-read", value: ".*" });
      const setTperm = form("set-topic-permission-form", "Set topic permissions", [field("User", tUser), field("Vhost", tVhost), field("Exchange", tEx), field("Write regexp", tWrite), field("Read regexp", tRead)], submit("set-topic-permission-button", "Set topic permissions"), async () => {
        try {
          await api("PUT", `/topic-permissions/${enc(tVhost.value)}/${enc(tUser.value)}`, { exchange: tEx.value, write: tWrite.value, read: tRead.value });
          flash(`Topic permissions of ${tUser.value} set`);
          await ctx.refresh();
        } catch (err) { flashError("Could not set topic permissions", err); }
      });
      // policies
      const policies = makeTable({
        id: "policies-table", hideCaption: true, caption: "Policies", key: (p) => `${p.vhost}\0${p.name}`, rowAttrs: (p) => ({ "data-name": p.name, "data-vhost": p.vhost }), empty: "No policies",
        columns: [
          { col: "vhost", label: "Vhost", value: (p) => p.vhost },
          { col: "name", label: "Name", value: (p) => p.name },
          { col: "pattern", label: "Pattern", value: (p) => p.pattern },
          { col: "apply-to", label: "Apply to", value: (p) => p["apply-to"] },
          { col: "definition", label: "Definition", value: (p) => JSON.stringify(p.definition || {}) },
          { col: "priority", label: "Priority", num: true, value: (p) => String(p.priority) },
          { col: "actions", label: "Actions", sig: (p) => `${p.vhost}\0${p.name}`, render: (p) => del("delete-policy", `Delete policy ${p.name}`, `/policies/${enc(p.vhost)}/${enc(p.name)}`, null, `Policy ${p.name} deleted`) },
        ],
      });
      const poVhost = el("input", { id: "policy-vhost", required: true, list: "admin-vhost-list", value: "/", autocomplete: "off" });
      const poName = el("input", { id: "policy-name", required: true, autocomplete: "off" });
      const poPattern = el("input", { id: "policy-pattern", required: true, autocomplete: "off", placeholder: "^orders\\." });
      const poDef = el("textarea", { id: "policy-definition", rows: 3, placeholder: '{"message-ttl": 60000}' });
      const poApply = el("select", { id: "policy-apply-to" }, [["all", "Exchanges and queues"], ["queues", "Queues"], ["exchanges", "Exchanges"]].map(([v, t]) => el("option", { value: v, text: t })));
      const poPrio = el("input", { id: "policy-priority", type: "number", value: "0" });
      const addPolicy = form("add-policy-form", "Add or update a policy", [field("Vhost", poVhost), field("Name", poName), field("Pattern (regexp)", poPattern), field("Apply to", poApply), field("Priority", poPrio), field("Definition (JSON)", poDef)], submit("add-policy-button", "Add / update policy"), async () => {
        try {
          const definition = parseJsonField(poDef, "Definition");
          await api("PUT", `/policies/${enc(poVhost.value)}/${enc(poName.value)}`, { pattern: poPattern.value, definition, "apply-to": poApply.value, priority: parseInt(poPrio.value, 10) || 0 });
          flash(`Policy ${poName.value} saved`);
          await ctx.refresh();
        } catch (err) { flashError("Could not save the policy", err); }
      });
      // definitions
      const exportButton = el("button", { type: "button", id: "export-definitions", text: "Export definitions" });
      const exportResult = el("span", { id: "export-result" });
      let exportUrl = null;
      exportButton.addEventListener("click", async () => {
        try {
          const defs = await api("GET", "/definitions");
          if (exportUrl) URL.revokeObjectURL(exportUrl);
          exportUrl = URL.createObjectURL(new Blob([JSON.stringify(defs, null, 2)], { type: "application/json" }));
          const fileName = `warren-definitions-${new Date().toISOString().slice(0, 19).replace(/[:T]/g, "-")}.json`;
          const link = el("a", { id: "export-definitions-link", href: exportUrl, download: fileName, text: fileName });
          exportResult.replaceChildren("Download: ", link);
          link.click();
          flash("Definitions exported");
        } catch (err) { flashError("Could not export definitions", err); }
      });
      const importFile = el("input", { id: "import-definitions", type: "file", accept: ".json,application/json" });
      const importButton = submit("import-definitions-button", "Import definitions");
      const importForm = form("import-definitions-form", "Import definitions", [field("Definitions file (JSON)", importFile)], importButton, async () => {
        try {
          const file = importFile.files && importFile.files[0];
          if (!file) throw new Error("choose a file first");
          const text = await file.text();
          JSON.parse(text);
          await api("POST", "/definitions", text, { raw: true });
          flash(`Definitions imported from ${file.name}`);
          await ctx.refresh();
        } catch (err) { flashError("Could not import definitions", err); }
      });
      const section = (id, title, ...children) => el("section", { class: "card", id, "aria-labelledby": id + "-heading" }, el("h2", { id: id + "-heading", text: title }), children);
      ctx.root.append(userList, vhostList,
        section("admin-users", "Users", users.wrap, addUser),
        section("admin-vhosts", "Virtual hosts", vhosts.wrap, addVhost),
        section("admin-permissions", "Permissions", perms.wrap, setPerm),
        section("admin-topic-permissions", "Topic permissions", tperms.wrap, setTperm),
        section("admin-policies", "Policies", policies.wrap, addPolicy),
        section("admin-definitions", "Definitions", el("p", {}, exportButton, " ", exportResult), importForm));
      const items = (d) => (Array.isArray(d) ? d : (d && d.items) || []);
      return async () => {
        const [u, v, p, t, po] = await Promise.all([
          api("GET", "/users" + listQuery), api("GET", "/vhosts" + listQuery), api("GET", "/permissions" + listQuery),
          api("GET", "/topic-permissions" + listQuery), api("GET", "/policies" + listQuery),
        ]);
        if (!ctx.alive) return;
        users.update(items(u));
        vhosts.update(items(v));
        perms.update(items(p));
        tperms.update(items(t));
        policies.update(items(po));
        fillList(userList, items(u).map((x) => x.name));
        fillList(vhostList, items(v).map((x) => x.name));
      };
    },
  };

  PAGES.notfound = {
    title: "Not found",
    mount(ctx) {
      ctx.root.append(el("h1", { text: "Page not found", tabindex: "-1" }),
        el("p", { id: "not-found" }, `There is no page at “${location.hash}”. `, el("a", { href: "#/overview", text: "Go to the overview" })));
      return async () => {};
    },
  };

  // ---------------------------------------------------------------- router
  function stopPage() {
    const ctx = state.ctx;
    if (!ctx) return;
    ctx.alive = false;
    clearInterval(ctx.timer);
    state.ctx = null;
  }
  async function route() {
    if (!state.user) return;
    const hash = location.hash;
    if (!hash || hash === "#" || hash === "#/") history.replaceState(null, "", "#/overview");
    stopPage();
    delete document.body.dataset.ready;
    if (Date.now() - flashAt > 1000) { $("#flash").textContent = ""; $("#flash").className = ""; }
    const parts = location.hash.replace(/^#\/?/, "").split("/");
    let id = parts[0];
    const params = parts.slice(1).map(dec);
    let page = PAGES[id];
    const want = page ? page.params || 0 : 0;
    const paramsOk = want === 0 ? params.every((p) => p === "") : params.length === want && params.every((p) => p !== "");
    if (!page || id === "notfound" || !paramsOk) {
      page = PAGES.notfound;
      id = "notfound";
    }
    state.pageId = id;
    document.title = `${page.title}${id === "queue" ? ` ${params[1]}` : ""} · warren`;
    for (const a of document.querySelectorAll("#nav a")) {
      const current = a.getAttribute("href") === `#/${id}` || (id === "queue" && a.getAttribute("href") === "#/queues");
      if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    }
    const root = el("section", { id: `page-${id}`, class: "page", "aria-label": page.title });
    $("#app").replaceChildren(root);
    const ctx = { root, params, alive: true, timer: null, busy: null };
    state.ctx = ctx;
    let load;
    try {
      load = page.mount(ctx);
    } catch (err) {
      root.append(el("p", { class: "error-text", text: `This page failed to render: ${errorText(err)}` }));
      load = async () => {};
    }
    // refresh(): one load at a time; a refresh asked during a load runs after it.
    let again = false;
    ctx.refresh = () => {
      if (!ctx.alive) return Promise.resolve();
      if (ctx.busy) { again = true; return ctx.busy; }
      ctx.busy = (async () => {
        try {
          do {
            again = false;
            try { await load(); } catch (err) { if (ctx.alive && state.user) flashError(`Could not load ${page.title.toLowerCase()}`, err); }
          } while (again && ctx.alive);
        } finally { ctx.busy = null; }
      })();
      return ctx.busy;
    };
    const heading = root.querySelector("h1");
    if (heading && state.navigated && !root.contains(document.activeElement)) heading.focus({ preventScroll: true });
    state.navigated = true;
    await ctx.refresh();
    if (!ctx.alive) return;
    document.body.dataset.ready = id;
    ctx.timer = setInterval(() => { if (!document.hidden) ctx.refresh(); }, POLL_MS);
  }
  document.addEventListener("visibilitychange", () => { if (!document.hidden && state.ctx) state.ctx.refresh(); });

  // ---------------------------------------------------------------- login / logout
  function showLoggedIn() {
    $("#login-section").hidden = true;
    $("#nav").hidden = false;
    $("#session").hidden = false;
    $("#whoami").textContent = state.user.name;
    $("#whoami-tags").textContent = state.user.tags.length ? `(${state.user.tags.join(", ")})` : "";
    $("#nav-admin").parentElement.hidden = !isAdmin();
    $("#nav-admin").hidden = !isAdmin();
    startBackgroundSampler();
  }
  function showLogin(message) {
    stopPage();
    clearInterval(backgroundSampler);
    state.pageId = null;
    $("#app").replaceChildren();
    $("#login-section").hidden = false;
    $("#nav").hidden = true;
    $("#session").hidden = true;
    $("#login-error").textContent = message || "";
    $("#password").value = "";
    document.title = "Log in · warren";
    document.body.dataset.ready = "login";
  }
  function logout(message) {
    sessionStorage.removeItem(AUTH_KEY);
    history.replaceState(null, "", "#/overview");
    state.auth = null;
    state.user = null;
    overviewHistory.length = 0;
    queueHistory.clear();
    showLogin(message);
  }
  async function login(auth) {
    const who = await api("GET", "/whoami", undefined, { auth });
    state.auth = auth;
    state.user = { name: who.name, tags: Array.isArray(who.tags) ? who.tags : String(who.tags || "").split(",").filter(Boolean) };
    sessionStorage.setItem(AUTH_KEY, auth);
    showLoggedIn();
    route();
  }
  $("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const button = $("#login-button");
    button.disabled = true;
    $("#login-error").textContent = "";
    state.navigated = true; // focus the page's heading once logged in
    try {
      await login(basic($("#username").value, $("#password").value));
    } catch (err) {
      const reason = err instanceof ApiError && err.reason && err.reason !== "Login failed" ? `: ${err.reason}` : "";
      $("#login-error").textContent = `Login failed${reason}`;
      $("#password").select();
    } finally { button.disabled = false; }
  });
  $("#logout").addEventListener("click", () => logout(""));
  $(".skip-link").addEventListener("click", (e) => { e.preventDefault(); $("#main").focus(); });
  window.addEventListener("hashchange", () => route());
  window.addEventListener("error", (e) => flash(`Script error: ${e.message}`, true));
  window.addEventListener("unhandledrejection", (e) => flash(`Script error: ${errorText(e.reason)}`, true));

  (async () => {
    const saved = sessionStorage.getItem(AUTH_KEY);
    if (!saved) { showLogin(""); return; }
    try {
      await login(saved);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) { sessionStorage.removeItem(AUTH_KEY); showLogin("Login failed: your saved session is no longer valid"); } else showLogin(`Cannot reach the broker: ${errorText(err)}`);
    }
  })();
})();
