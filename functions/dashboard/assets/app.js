// warren's dashboard: local times, the buttons and forms (JSON to the
// API), and the overview's live updates (/ws, else polling the snapshot).
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

// Times: the markup says UTC; show the viewer's zone, UTC on hover.
function localize(root = document) {
  for (const t of $$("time[datetime]", root)) {
    const at = new Date(t.getAttribute("datetime"));
    if (!isNaN(at)) {
      t.textContent = at.toLocaleString();
      t.title = at.toISOString() + " (UTC)";
    }
  }
}

function flash(message) {
  const box = $("#flash");
  if (!box) return alert(message);
  box.textContent = message;
  box.hidden = false;
}

// One call to the API: JSON in, JSON out; errors become a message.
async function call(method, url, body) {
  const init = { method, credentials: "same-origin", headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const answer = await fetch(url, init);
  const text = await answer.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!answer.ok) {
    const why = data && (data.error || data.message) ? data.error || data.message : answer.statusText;
    const detail = data && data.detail ? " (" + data.detail + ")" : "";
    throw new Error(answer.status + " " + why + detail);
  }
  return data;
}

function after(element, data) {
  const show = element.dataset.show;
  if (show && data && data[show] !== undefined) {
    const out = document.getElementById(element.dataset.output || "");
    if (out) { out.textContent = data[show]; return; }
  }
  if (element.dataset.then) location.assign(element.dataset.then);
  else location.reload();
}

// Buttons that call the API (data-method, data-url, data-body).
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-method]");
  if (!button || button.form) return;
  if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
  button.disabled = true; // one click is one call
  try {
    const data = await call(button.dataset.method, button.dataset.url, button.dataset.body || undefined);
    after(button, data);
  } catch (e) {
    flash(e.message);
    button.disabled = false;
  }
});

// What a form sends, by its shape.
function bodyOf(form) {
  const fields = new FormData(form);
  switch (form.dataset.shape) {
    case "permissions": {
      const current = JSON.parse(form.dataset.current || "{}");
      const queues = Object.assign({}, current.queues || {});
      const queue = fields.get("queue");
      const actions = fields.getAll("actions");
      if (actions.length) queues[queue] = actions; else delete queues[queue];
      return { queues };
    }
    case "json-input":
      return JSON.parse(fields.get("input") || "{}");
    case "trigger": {
      const config = fields.get("type") === "schedule"
        ? { cron: fields.get("cron"), timezone: fields.get("timezone") || "UTC" } : {};
      return { type: fields.get("type"), name: fields.get("name"), config };
    }
    default: {
      const body = {};
      for (const [name, value] of fields) if (value !== "") body[name] = value;
      return body;
    }
  }
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.dataset.url) return;
  event.preventDefault();
  const submit = $("button:not([type=button])", form);
  if (submit) submit.disabled = true;
  try {
    const data = await call(form.dataset.method || "POST", form.dataset.url, bodyOf(form));
    if (form.id === "new-trigger" && data && data.webhook_url) {
      $("#new-trigger-value").textContent = "Webhook URL (shown once): " + data.webhook_url;
      return;
    }
    after(form, data);
  } catch (e) {
    flash(e.message);
  } finally {
    if (submit) submit.disabled = false;
  }
});

// The overview: live over /ws, else polling /dashboard/snapshot every 2 s.
function overview() {
  const live = $("#live");
  const filters = $("#filters");
  if (!live || !filters) return;
  const state = {};
  for (const field of $$("input, select", filters)) state[field.name] = field.value;
  let socket = null;
  let polling = null;

  const show = (mode, text) => { live.dataset.mode = mode; live.textContent = text; };
  const render = (message) => {
    if (message.type === "error") return flash(message.error);
    if (message.type !== "update") return;
    $("#cards").innerHTML = message.cards;
    $("#table").innerHTML = message.table;
    localize($("#cards"));
    localize($("#table"));
  };
  const query = () => {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(state)) if (v) params.set(k, v);
    return params;
  };
  const poll = async () => {
    try { render(await call("GET", "/dashboard/snapshot?" + query())); }
    catch (e) { show("poll", "polling (" + e.message + ")"); return; }
    show("poll", "polling every 2 s");
  };
  const startPolling = () => {
    if (polling) return;
    socket = null;
    poll();
    polling = setInterval(poll, 2000);
  };
  const send = (change) => {
    Object.assign(state, change);
    const shown = query();
    shown.delete("cursor");
    history.replaceState(null, "", shown.toString() ? "?" + shown : location.pathname);
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(change));
    else if (polling) poll();
  };

  try {
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    socket = new WebSocket(scheme + location.host + "/ws");
  } catch (_) { socket = null; }
  if (!socket) startPolling();
  else {
    let heard = false;
    socket.onopen = () => {
      socket.send(JSON.stringify({ type: "auth", token: live.dataset.ticket }));
      const filter = Object.assign({}, state);
      socket.send(JSON.stringify(filter));
    };
    socket.onmessage = (event) => {
      heard = true;
      show("ws", "live");
      render(JSON.parse(event.data));
    };
    socket.onclose = () => {
      // No WebSocket here (API Gateway's HTTP API), or it went away: poll.
      if (!heard) show("poll", "polling every 2 s");
      startPolling();
    };
  }

  let timer = null;
  filters.addEventListener("input", (event) => {
    const field = event.target;
    clearTimeout(timer);
    timer = setTimeout(() => send({ [field.name]: field.value, cursor: "" }), 300);
  });
  filters.addEventListener("reset", () => {
    setTimeout(() => {
      const cleared = { cursor: "" };
      for (const field of $$("input, select", filters)) cleared[field.name] = "";
      send(cleared);
    });
  });
  filters.addEventListener("submit", (event) => event.preventDefault());
  document.addEventListener("click", (event) => {
    const pager = event.target.closest("button[data-cursor]");
    if (pager) send({ cursor: pager.dataset.cursor });
  });
}

localize();
overview();
