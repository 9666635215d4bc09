// giftwheel control room: the fleet from GET /v1/console/status (polled, and again at once when the
// realtime feed, the overlay's /v1/realtime, reports a motor or a gift), and the operator's actions.
// Everything shown that a person typed (names, reasons, gift names) is set as text, never as HTML.

import { Unauthorized, call, problemText, setCsrf } from "./api.js";
import { el } from "/overlay/dom.js";

const POLL_MS = 2000;
const RATE_WINDOW_MS = 60_000;
const AUDIT_SHOWN = 30;
const ACTIONS = [
  ["hold", "Hold", ""],
  ["resume", "Resume", ""],
  ["cancel", "Cancel held", "warn"],
  ["stop", "Stop", "danger"],
];

const $ = (id) => document.getElementById(id);
const giftTimes = []; // arrival times of live gifts, for the rate
let pollTimer = null;
let refreshSoon = null;

// ---- login

function showLogin(message = "") {
  $("room").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  clearTimeout(pollTimer);
}

function showRoom(operator) {
  $("login").hidden = true;
  $("room").hidden = false;
  $("operator").textContent = operator;
  refreshAll();
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const { status, body } = await call("POST", "login", {
    user: $("login-user").value,
    password: $("login-password").value,
  }).catch((e) => ({ status: 401, body: { detail: e.message } }));
  $("login-password").value = "";
  if (status !== 200) return showLogin(problemText(body));
  setCsrf(body.csrf);
  showRoom(body.operator);
});

$("logout").addEventListener("click", async () => {
  await guarded(() => call("POST", "logout"));
  setCsrf(null);
  showLogin("logged out");
});

// Every call: a 401 (session expired, logged out elsewhere) brings the login form back.
async function guarded(run) {
  try {
    return await run();
  } catch (error) {
    if (error instanceof Unauthorized) showLogin(error.message);
    else throw error;
    return null;
  }
}

// ---- status

function ago(ms) {
  if (!ms) return "never";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 60 ? `${s} s ago` : s < 3600 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function actionButtons(device, held) {
  const box = el("span", "actions");
  box.dataset.device = device;
  for (const [action, label, cls] of ACTIONS) {
    const button = el("button", cls, label);
    button.dataset.action = action;
    if (action === "cancel" && !held) button.disabled = true;
    box.append(button);
  }
  return box;
}

function motorRow(motor) {
  const row = el("tr");
  row.dataset.device = motor.device;
  const state = motor.hold ? "held" : (motor.state ?? "unknown");
  row.dataset.state = state;
  row.dataset.online = String(motor.online);
  const link = el("td", `link ${motor.online ? "online" : "offline"}`, motor.online ? "online" : "offline");
  link.title = `last report ${ago(motor.lastSeenMs)}`;
  const stateCell = el("td", `state state-${state}`, state);
  if (motor.hold && motor.state && motor.state !== "held") stateCell.title = `motor reports ${motor.state}`;
  if (motor.estop === "engaged" || motor.state === "stopped_by_estop") stateCell.append(el("span", "badge danger", "E-STOP"));
  const current = motor.current;
  const progress = el("td", "command", current ? `${current.roundsDone ?? 0} / ${current.rounds ?? "?"} rounds` : "—");
  if (current) progress.title = current.commandId;
  const queued = [`${motor.queuedRounds ?? 0} rounds at the edge`];
  if (motor.heldCommands) queued.push(`${motor.heldCommands} commands held`);
  const hold = el("td", "hold", motor.hold ? `${motor.hold.by}${motor.hold.reason ? `: ${motor.hold.reason}` : ""}` : "—");
  const t = motor.totals;
  const name = el("td", "name", motor.device);
  name.title =
    `ledger rounds: ${t.accepted} accepted, ${t.done} done, ${t.held} held, ${t.cancelled} cancelled, ` +
    `${t.failed} failed, ${t.outstanding} outstanding`;
  if (t.failed) name.append(el("span", "badge danger", `${t.failed} failed`));
  const last = el("td", "last", motor.lastDone ? ago(motor.lastDone.atMs) : "—");
  if (motor.lastDone) last.title = motor.lastDone.commandId;
  const actions = el("td");
  actions.append(actionButtons(motor.device, Boolean(motor.hold)));
  row.append(
    name,
    link,
    stateCell,
    progress,
    el("td", "queued", queued.join(", ")),
    hold,
    last,
    actions,
  );
  return row;
}

async function refreshStatus() {
  const answer = await guarded(() => call("GET", "status"));
  if (!answer) return;
  clearTimeout(pollTimer);
  pollTimer = setTimeout(refreshStatus, POLL_MS);
  if (!answer.ok) {
    $("outcome").textContent = `status: ${problemText(answer.body)}`;
    return;
  }
  const s = answer.body;
  $("motors").replaceChildren(...s.motors.map(motorRow));
  $("fig-backlog").textContent = String(s.backlog);
  $("fig-dlq").textContent = String(s.dlqSize);
  $("fig-online").textContent = `${s.motors.filter((m) => m.online).length} / ${s.motors.length}`;
  // null on the first read (nothing to count against yet): the realtime feed's count stands in.
  if (s.ingestPerS !== null) {
    $("fig-rate").dataset.fromStatus = "true";
    $("fig-rate").textContent = (s.ingestPerS * 60).toFixed(0);
  }
  $("fig-lag").textContent = `${(s.workerLagMs / 1000).toFixed(1)} s`;
  document.querySelector(".all-actions").dataset.held = String(Boolean(s.allHeld));
}

function refreshStatusSoon() {
  if (refreshSoon !== null) return;
  refreshSoon = setTimeout(() => {
    refreshSoon = null;
    refreshStatus();
  }, 150);
}

// ---- control

document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-action]");
  if (!button) return;
  const device = button.closest("[data-device]").dataset.device;
  const action = button.dataset.action;
  const target = device === "*" ? "all motors" : device;
  if ((action === "stop" || action === "cancel") && !confirm(`${action} ${target}? Held work is cancelled.`)) return;
  $("outcome").textContent = `${action} ${target}…`;
  const answer = await guarded(() => call("POST", "control", { action, device, reason: $("reason").value }));
  if (!answer) return;
  $("outcome").textContent = outcomeText(action, target, answer);
  $("outcome").dataset.result = answer.ok && answer.body?.ok !== false ? "ok" : "failed";
  refreshStatus();
  refreshAudit();
});

function outcomeText(action, target, { status, body }) {
  if (status === 200) {
    const motors = body.motors.map((m) => `${m.device}: ${m.ok ? "ok" : "NOT ok"}${m.detail ? ` (${m.detail})` : ""}`);
    return `${action} ${target}: ${body.ok ? "done" : "partly done"}${motors.length ? ` — ${motors.join("; ")}` : ""}`;
  }
  return `${action} ${target}: ${problemText(body)}`;
}

// ---- test gift

$("test-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await guarded(() =>
    call("POST", "test-gift", {
      giftName: $("test-gift").value,
      diamond: Number($("test-diamond").value),
      quantity: Number($("test-quantity").value),
    }),
  );
  if (!answer) return;
  $("test-result").textContent = answer.ok ? `accepted: ${answer.body.eventId}` : problemText(answer.body);
  refreshAudit();
});

// ---- dead letters

async function refreshDlq() {
  const answer = await guarded(() => call("GET", "dlq"));
  if (!answer?.ok) return;
  $("dlq").replaceChildren(
    ...answer.body.letters.map((letter) => {
      const row = el("tr");
      const replay = el("button", "", "Replay");
      replay.dataset.replay = letter.id;
      const cell = el("td");
      cell.append(replay);
      row.append(el("td", "mono", letter.id), el("td", "", letter.reason), el("td", "", String(letter.deliveries)),
        el("td", "mono event", letter.event), cell);
      return row;
    }),
  );
}

async function replay(body) {
  const answer = await guarded(() => call("POST", "dlq/replay", body));
  if (!answer) return;
  $("dlq-result").textContent = answer.ok
    ? `replayed ${answer.body.replayed.length}${answer.body.missing.length ? `, gone already: ${answer.body.missing.length}` : ""}`
    : problemText(answer.body);
  refreshDlq();
  refreshStatus();
  refreshAudit();
}

$("dlq").addEventListener("click", (event) => {
  const id = event.target.dataset?.replay;
  if (id) replay({ ids: [id] });
});
$("dlq-replay-all").addEventListener("click", () => replay({ all: true }));

// ---- rules

async function refreshRules() {
  const answer = await guarded(() => call("GET", "rules"));
  if (!answer?.ok) return;
  const r = answer.body;
  $("rules-source").textContent =
    r.source === "upload" ? `uploaded by ${r.by}, ${ago(r.atMs)} (version ${r.version})` : "the workers' rules file (no upload)";
  if (r.yaml !== null && document.activeElement !== $("rules")) $("rules").value = r.yaml;
}

$("rules-upload").addEventListener("click", async () => {
  const answer = await guarded(() => call("PUT", "rules", $("rules").value, { text: true }));
  if (!answer) return;
  const result = $("rules-result");
  result.dataset.result = answer.ok ? "ok" : "failed";
  result.textContent = answer.ok
    ? `in force from the workers' next poll: version ${answer.body.version}, ${answer.body.rules} rules`
    : `refused, the old rules stay: ${problemText(answer.body)}`;
  refreshRules();
  refreshAudit();
});

// ---- audit

async function refreshAudit() {
  const answer = await guarded(() => call("GET", `audit?count=${AUDIT_SHOWN}`));
  if (!answer?.ok) return;
  $("audit").replaceChildren(
    ...answer.body.entries.map((entry) => {
      const item = el("li", `result-${entry.result}`);
      const when = new Date(entry.atMs).toLocaleTimeString();
      const what = entry.detail.device ? `${entry.action} ${entry.detail.device}` : entry.action;
      item.append(el("span", "when", when), el("span", "who", entry.who || "?"), el("span", "what", what),
        el("span", "result", entry.result));
      const why = entry.detail.reason || entry.detail.why;
      if (why) item.title = why;
      return item;
    }),
  );
}

function refreshAll() {
  refreshStatus();
  refreshDlq();
  refreshRules();
  refreshAudit();
}

// ---- the realtime feed (the overlay's): a motor or a gift event refreshes the status at once

function noteGift() {
  const now = Date.now();
  giftTimes.push(now);
  while (giftTimes.length && giftTimes[0] < now - RATE_WINDOW_MS) giftTimes.shift();
  if ($("fig-rate").dataset.fromStatus !== "true") $("fig-rate").textContent = String(giftTimes.length);
}

let retryMs = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/v1/realtime`);
  const feed = $("feed");
  socket.onopen = () => {
    retryMs = 500;
    feed.dataset.state = "open";
    $("feed-text").textContent = "live";
  };
  socket.onmessage = (frame) => {
    const parsed = JSON.parse(frame.data);
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) {
      if (message.event === "gift.accepted") noteGift();
      if (message.event !== "state") refreshStatusSoon();
    }
  };
  socket.onclose = () => {
    feed.dataset.state = "closed";
    $("feed-text").textContent = "reconnecting";
    setTimeout(connect, retryMs + Math.random() * retryMs * 0.3);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}

// ---- start: a live session (the cookie) goes straight in; else the login form

const session = await call("GET", "session").catch((e) => e);
if (session instanceof Unauthorized || !session?.ok) {
  showLogin();
} else {
  setCsrf(session.body.csrf);
  showRoom(session.body.operator);
}
connect();
setInterval(() => {
  if (!$("room").hidden) {
    refreshDlq();
    refreshAudit();
  }
}, POLL_MS * 5);
