// giftwheel overlay: listens on the plain WebSocket endpoint (/v1/realtime), reconnects by itself.
// The page's own query string (?channel=...&device=...) chooses what it shows.
"use strict";

const MAX_GIFTS = 8;
const motors = new Map(); // device -> latest state (kept only if newer by ts)
const giftList = document.getElementById("gifts");
const motorBox = document.getElementById("motors");
const statusBox = document.getElementById("status");
const statusText = document.getElementById("status-text");

function setStatus(state, text) {
  statusBox.dataset.state = state;
  statusText.textContent = text;
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showGift(gift, animate) {
  if (giftList.querySelector(`[data-event-id="${CSS.escape(gift.eventId)}"]`)) return;
  const item = el("li", "gift");
  item.dataset.eventId = gift.eventId;
  if (!animate) item.style.animation = "none";
  item.append(el("span", "who", gift.user), document.createTextNode(" "));
  const what = gift.quantity > 1 ? `${gift.giftName} \u00d7${gift.quantity}` : gift.giftName;
  item.append(el("span", "what", what));
  giftList.prepend(item);
  while (giftList.children.length > MAX_GIFTS) giftList.lastElementChild.remove();
}

function formatEta(seconds) {
  if (seconds === undefined || seconds === null) return "";
  if (seconds < 60) return ` \u00b7 about ${Math.max(1, Math.round(seconds))} s left`;
  return ` \u00b7 about ${Math.round(seconds / 60)} min left`;
}

function renderMotor(m) {
  let card = motorBox.querySelector(`[data-device="${CSS.escape(m.device)}"]`);
  if (!card) {
    card = el("div", "motor");
    card.dataset.device = m.device;
    const name = el("div", "name");
    name.append(el("span", "label", m.device), el("span", "state"));
    const bar = el("div", "bar");
    bar.append(el("div", "bar-fill"));
    card.append(name, bar, el("div", "numbers"));
    motorBox.append(card);
  }
  const total = m.commandRounds || 0;
  const done = Math.min(m.commandRoundsDone || 0, total);
  const queued = m.queuedRounds || 0;
  const finished = Boolean(m.commandDone);
  const fill = card.querySelector(".bar-fill");
  fill.style.width = total ? `${(100 * done) / total}%` : "0%";
  card.dataset.done = String(done);
  card.dataset.total = String(total);
  card.dataset.queued = String(queued);
  card.classList.toggle("done", finished);
  card.querySelector(".state").textContent = m.state || "";
  const rounds = total ? `${done} / ${total} rounds` : "no rounds yet";
  card.querySelector(".numbers").textContent =
    `${rounds} \u00b7 ${queued} queued${queued ? formatEta(m.etaS) : ""}`;
}

function applyMotor(m, force) {
  const known = motors.get(m.device);
  if (!force && known && (known.ts || 0) > (m.ts || 0)) return; // an older update arrived late
  motors.set(m.device, m);
  renderMotor(m);
}

function handle(message) {
  switch (message.event) {
    case "state":
      for (const m of message.data.devices) applyMotor(m, false);
      for (const g of message.data.gifts.slice().reverse()) showGift(g, false);
      break;
    case "gift.accepted":
      showGift(message.data, true);
      break;
    case "motor.progress":
      applyMotor(message.data, false);
      break;
    case "motor.done":
      // A recovered done (its report was lost; a heartbeat named it) only finishes the bar still
      // showing that command, never one the motor has moved on to since.
      if (message.data.recovered && motors.get(message.data.device)?.commandId !== message.data.commandId) break;
      applyMotor(message.data, true);
      break;
  }
}

let retryMs = 500;

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/v1/realtime${location.search}`);
  setStatus("connecting", "connecting");
  socket.onopen = () => {
    retryMs = 500;
    setStatus("open", "live");
  };
  socket.onmessage = (frame) => {
    const parsed = JSON.parse(frame.data);
    for (const message of Array.isArray(parsed) ? parsed : [parsed]) handle(message);
  };
  socket.onclose = () => {
    setStatus("closed", "reconnecting");
    const wait = retryMs + Math.random() * retryMs * 0.3;
    retryMs = Math.min(retryMs * 2, 5000);
    setTimeout(connect, wait);
  };
}

connect();
