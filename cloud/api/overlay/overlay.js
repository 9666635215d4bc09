// giftwheel overlay: listens on the plain WebSocket endpoint (/v1/realtime) and reconnects by
// itself; its URL is all its configuration (config.js, docs/overlay.md). Everything a viewer
// typed (names, gift names) is set as text, never as HTML.

import { AlertQueue } from "./alerts.js";
import { el, giftText } from "./dom.js";
import { readConfig } from "./config.js";
import { loadStrings } from "./i18n.js";
import { SessionTotals } from "./session.js";
import { advanceShown, commandIdFor, secondsPerRound } from "./wheel.js";
import { drawWheelAngle, makeWheelCard, writeWheelCard } from "./wheel-card.js";

const PENDING_LIMIT = 50; // gifts kept to find who a command turns for, and shown as the queue
const QUEUE_SHOWN = 5;
const RUN_LIMIT = 8; // the most gifts of one coalesced command looked for
// Every motor reporting idle clears the queue of gifts this much older than the report: a gift
// accepted just before may not have reached the worker yet.
const IDLE_CLEARS_OLDER_MS = 2000;

const config = readConfig(location.search, navigator.languages ?? [navigator.language]);
const root = document.documentElement;
root.dataset.theme = config.theme;
const portrait = matchMedia("(orientation: portrait)");
function setLayout() {
  root.dataset.layout = config.layout === "auto" ? (portrait.matches ? "portrait" : "landscape") : config.layout;
}
portrait.addEventListener("change", setLayout);
setLayout();
root.style.setProperty("--scale", String(config.scale));
const reducedMotion = matchMedia("(prefers-reduced-motion: reduce)");

const $ = (id) => document.getElementById(id);
const parts = {
  wheels: $("wheels"),
  queue: $("queue"),
  alerts: $("alerts"),
  goal: $("goal"),
  leaderboard: $("leaderboard"),
};
parts.wheels.hidden = !config.wheel;
parts.queue.hidden = true;
parts.goal.hidden = !config.goal;
parts.leaderboard.hidden = true;

const strings = await loadStrings(config.languages);
const { t } = strings;
root.lang = strings.lang;
$("queue-title").textContent = t("queue.title");
$("leaderboard-title").textContent = t("leaderboard.title");

const sessionKey = `giftwheel-overlay:${config.rooms}:${config.session}`;
const session = new SessionTotals(globalThis.localStorage, sessionKey, Date.now());
addEventListener("pagehide", () => session.save());
const alerts = new AlertQueue();
const wheels = new Map(); // device -> wheel
let pending = []; // recent gifts not yet matched to a command, oldest first
const turned = new Set(); // eventIds matched to a command: a reconnect's state does not queue them again

// ---- status

function setStatus(state) {
  const status = $("status");
  status.dataset.state = state;
  $("status-text").textContent = t(`status.${state === "open" ? "live" : state === "closed" ? "reconnecting" : "connecting"}`);
}

// ---- wheels

function wheelFor(device) {
  let wheel = wheels.get(device);
  if (wheel) return wheel;
  const { card, rotor } = makeWheelCard(device, t);
  parts.wheels.append(card);
  wheel = { device, card, rotor, state: null, reported: 0, shown: 0, spr: 0, gifter: null };
  wheels.set(device, wheel);
  return wheel;
}

// how: "join" (from the state a joining viewer gets), "progress" or "done".
function applyMotor(m, how) {
  const wheel = wheelFor(m.device);
  const previous = wheel.state;
  if (how === "done") {
    // A recovered done (its report was lost; a heartbeat named it) only finishes the wheel still
    // showing that command, never one the motor has moved on to since.
    if (m.recovered && previous && previous.commandId !== m.commandId) return;
  } else if (previous && (previous.ts ?? 0) > (m.ts ?? 0)) {
    return; // an older update arrived late
  }
  const state = how === "done" ? { ...previous, ...m } : m;
  wheel.spr = secondsPerRound(wheel.spr, state, previous);
  const total = state.commandRounds ?? 0;
  const reported = how === "done" ? total : Math.min(state.commandRoundsDone ?? 0, total);
  const newCommand = state.commandId !== previous?.commandId;
  if (newCommand) {
    wheel.gifter = null;
    if (state.commandId) findGifter(wheel, state.commandId);
  }
  // Joining, the wheel resumes where the motor is; a done puts it exactly on the commanded rounds;
  // a new command starts from its first round; otherwise the frames chase the report.
  if (how !== "progress" || reducedMotion.matches) wheel.shown = reported;
  else if (newCommand) wheel.shown = 0;
  wheel.reported = reported;
  wheel.state = state;
  writeWheelCard(wheel, t);
  requestFrame();
}

let frameRequested = false;
let lastFrameMs = null;

function requestFrame() {
  if (frameRequested) return;
  frameRequested = true;
  requestAnimationFrame(frame);
}

function frame(nowMs) {
  frameRequested = false;
  const dt = lastFrameMs === null ? 0 : (nowMs - lastFrameMs) / 1000;
  lastFrameMs = nowMs;
  let moving = false;
  for (const wheel of wheels.values()) {
    if (wheel.shown === wheel.reported) continue;
    wheel.shown = reducedMotion.matches ? wheel.reported : advanceShown(wheel.shown, wheel.reported, wheel.spr, dt);
    drawWheelAngle(wheel);
    moving ||= wheel.shown < wheel.reported;
  }
  if (moving) requestFrame();
  else lastFrameMs = null;
}

// ---- who a command turns for, and the queue

// A command's id is the hash of its gifts' eventIds: look for one gift, or a run of consecutive
// ones (the worker coalesces a device's waiting gifts), among the gifts not yet matched.
async function findGifter(wheel, commandId) {
  for (let length = 1; length <= RUN_LIMIT; length++) {
    for (let start = 0; start + length <= pending.length; start++) {
      const run = pending.slice(start, start + length);
      const id = await commandIdFor(run.map((g) => g.eventId));
      if (id === null) return; // no WebCrypto here (plain http to another host)
      if (id !== commandId) continue;
      if (wheel.state?.commandId !== commandId) return; // the motor moved on meanwhile
      wheel.gifter = { ...run[0], more: length - 1 };
      for (const gift of run) remember(turned, gift.eventId, PENDING_LIMIT);
      pending = pending.filter((g) => !run.includes(g) && g.receivedMs > run[0].receivedMs);
      writeWheelCard(wheel, t);
      renderQueue();
      return;
    }
  }
}

function remember(set, value, limit) {
  set.add(value);
  if (set.size > limit) set.delete(set.values().next().value);
}

function idle(wheel) {
  return wheel.state?.state === "idle" && !(wheel.state.queuedRounds > 0);
}

// receivedMs: when the page got it, or for a gift from a join state its own ts (the best guess).
function addPending(gift, receivedMs) {
  if (turned.has(gift.eventId) || pending.some((g) => g.eventId === gift.eventId)) return;
  pending.push({ ...gift, receivedMs });
  if (pending.length > PENDING_LIMIT) pending.shift();
  renderQueue();
}

// Every motor idle with nothing queued at ``atMs``: the gifts before are turned. A join state's
// gifts are dated by their own ts, so a refreshed page does not list what turned long ago.
function clearTurnedIfIdle(atMs) {
  if (![...wheels.values()].every(idle)) return;
  const before = pending.length;
  pending = pending.filter((g) => g.receivedMs > atMs - IDLE_CLEARS_OLDER_MS);
  if (pending.length !== before) renderQueue();
}

function renderQueue() {
  const list = $("queue-list");
  const shown = config.queue ? pending.slice(0, QUEUE_SHOWN) : [];
  list.replaceChildren(
    ...shown.map((gift) => {
      const item = el("li", "queued-gift");
      item.dataset.eventId = gift.eventId;
      item.append(el("span", "who", gift.user), el("span", "what", giftText(gift)));
      return item;
    }),
  );
  parts.queue.hidden = shown.length === 0;
}

// ---- alerts

let alertShowing = false;

function showNextAlert() {
  const next = alerts.next();
  const box = parts.alerts;
  box.dataset.waiting = String(alerts.size);
  box.dataset.summarised = String(alerts.summary.gifts);
  if (next === null) {
    alertShowing = false;
    box.replaceChildren();
    return;
  }
  alertShowing = true;
  const card = el("div", "alert");
  if (next.gift) {
    const gift = next.gift;
    card.dataset.eventId = gift.eventId;
    card.append(
      el("div", "who", gift.user),
      el("div", "verb", t("alert.sent")),
      el("div", "what", giftText(gift)),
    );
    // An operator's test gift (the control room's): turned like any other, never mistaken for a viewer's.
    if (gift.platform === "test") {
      card.classList.add("test");
      card.append(el("div", "test-badge", t("alert.test")));
    }
  } else {
    card.classList.add("summary");
    card.dataset.gifts = String(next.summary.gifts);
    card.append(
      el("div", "who", t("alert.summary", { gifts: next.summary.gifts })),
      el("div", "what", t("alert.summaryDiamonds", { diamonds: next.summary.diamonds })),
    );
  }
  box.replaceChildren(card);
  setTimeout(showNextAlert, config.alertSeconds * 1000);
}

function queueAlert(gift) {
  if (!config.alerts) return;
  alerts.push(gift);
  parts.alerts.dataset.waiting = String(alerts.size);
  parts.alerts.dataset.summarised = String(alerts.summary.gifts);
  if (!alertShowing) showNextAlert();
}

// ---- goal and leaderboard

let totalsRequested = false;

function renderTotalsSoon() {
  if (totalsRequested) return;
  totalsRequested = true;
  requestAnimationFrame(renderTotals);
}

function renderTotals() {
  totalsRequested = false;
  if (config.goal) {
    const value = config.goalUnit === "rounds" ? session.rounds : session.diamonds;
    const goal = parts.goal;
    goal.dataset.value = String(value);
    goal.classList.toggle("reached", value >= config.goal);
    const progress = t(`goal.${config.goalUnit}`, { value, goal: config.goal });
    $("goal-text").textContent = value >= config.goal ? `${t("goal.reached")} ${progress}` : progress;
    $("goal-fill").style.width = `${Math.min(100, (100 * value) / config.goal)}%`;
  }
  if (config.leaderboard) {
    const top = session.top(config.top);
    $("leaderboard-list").replaceChildren(
      ...top.map(([user, diamonds], i) => {
        const item = el("li", "leader");
        item.dataset.rank = String(i + 1);
        item.dataset.diamonds = String(diamonds);
        item.append(el("span", "rank", String(i + 1)), el("span", "who", user), el("span", "diamonds", strings.number(diamonds)));
        return item;
      }),
    );
    parts.leaderboard.hidden = top.length === 0;
  }
}

// ---- events

function handle(message) {
  switch (message.event) {
    case "state":
      // Gifts first: the wheels look among them for whom they turn.
      for (const gift of message.data.gifts.slice().reverse()) {
        session.addGift(gift, false);
        addPending(gift, gift.ts ?? 0);
      }
      for (const m of message.data.devices) applyMotor(m, "join");
      clearTurnedIfIdle(Math.max(0, ...message.data.devices.map((m) => m.ts ?? 0)));
      for (const done of message.data.done ?? []) session.addDone(done, false);
      renderTotalsSoon();
      break;
    case "gift.accepted":
      if (session.addGift(message.data, true)) {
        queueAlert(message.data);
        addPending(message.data, Date.now());
        renderTotalsSoon();
      }
      break;
    case "motor.progress":
      applyMotor(message.data, "progress");
      clearTurnedIfIdle(Date.now());
      break;
    case "motor.done":
      applyMotor(message.data, "done");
      clearTurnedIfIdle(Date.now());
      session.addDone(message.data, true);
      renderTotalsSoon();
      break;
  }
}

let retryMs = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = config.rooms.toString();
  const socket = new WebSocket(`${scheme}//${location.host}/v1/realtime${query ? `?${query}` : ""}`);
  setStatus("connecting");
  socket.onopen = () => {
    retryMs = 500;
    setStatus("open");
  };
  socket.onmessage = (frame) => {
    const parsed = JSON.parse(frame.data);
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) handle(message);
  };
  socket.onclose = () => {
    setStatus("closed");
    const wait = retryMs + Math.random() * retryMs * 0.3;
    retryMs = Math.min(retryMs * 2, 5000);
    setTimeout(connect, wait);
  };
}

connect();
