// One wheel's card: the SVG wheel, its rounds, whom it turns for and its queue.

import { el, giftText, svg } from "./dom.js";
import { angleOf } from "./wheel.js";

const SEGMENTS = 8;

function drawRotor() {
  const rotor = svg("g", { class: "rotor" });
  for (let i = 0; i < SEGMENTS; i++) {
    const a = (2 * Math.PI * i) / SEGMENTS;
    const b = (2 * Math.PI * (i + 1)) / SEGMENTS;
    const d = `M0 0 L${(100 * Math.sin(a)).toFixed(2)} ${(-100 * Math.cos(a)).toFixed(2)} A100 100 0 0 1 ${(100 * Math.sin(b)).toFixed(2)} ${(-100 * Math.cos(b)).toFixed(2)} Z`;
    rotor.append(svg("path", { d, class: `segment s${i % 4}` }));
  }
  rotor.append(svg("circle", { r: "100", class: "rim" }), svg("circle", { r: "16", class: "hub" }));
  return rotor;
}

export function makeWheelCard(device, t) {
  const card = el("div", "wheel");
  card.dataset.device = device;
  const picture = svg("svg", { viewBox: "-110 -120 220 230", class: "picture", role: "img" });
  picture.setAttribute("aria-label", t("wheel.label", { device }));
  const rotor = drawRotor();
  picture.append(rotor, svg("path", { d: "M-12 -118 L12 -118 L0 -92 Z", class: "pointer" }));
  const info = el("div", "info");
  info.append(el("div", "device", device), el("div", "rounds"), el("div", "for"), el("div", "queued"));
  card.append(picture, info);
  return { card, rotor };
}

function formatEta(seconds, t) {
  if (!(seconds > 0)) return "";
  const time =
    seconds < 60
      ? t("time.seconds", { n: Math.max(1, Math.round(seconds)) })
      : t("time.minutes", { n: Math.round(seconds / 60) });
  return t("wheel.eta", { time });
}

export function writeWheelCard(wheel, t) {
  const m = wheel.state;
  const total = m.commandRounds ?? 0;
  const finished = Boolean(m.commandDone);
  const queued = m.queuedRounds ?? 0;
  const card = wheel.card;
  card.classList.toggle("done", finished);
  card.classList.toggle("turning", !finished && total > 0);
  card.dataset.commandId = m.commandId ?? "";
  card.dataset.total = String(total);
  card.dataset.done = String(wheel.reported);
  card.dataset.queued = String(queued);
  card.querySelector(".rounds").textContent = total
    ? `${t("wheel.rounds", { done: wheel.reported, total })}${finished ? ` \u00b7 ${t("wheel.done")}` : ""}`
    : t("wheel.idle");
  const gifter = wheel.gifter;
  card.querySelector(".for").textContent = gifter
    ? `${t("wheel.for", { user: gifter.user })} \u00b7 ${giftText(gifter)}${gifter.more ? ` +${gifter.more}` : ""}`
    : "";
  const eta = queued ? formatEta(m.etaS, t) : "";
  card.querySelector(".queued").textContent = queued ? [t("wheel.queued", { queued }), eta].filter(Boolean).join(" \u00b7 ") : "";
  drawWheelAngle(wheel);
}

export function drawWheelAngle(wheel) {
  wheel.rotor.style.transform = `rotate(${angleOf(wheel.shown).toFixed(2)}deg)`;
  wheel.card.dataset.shownRounds = String(wheel.shown);
  wheel.card.dataset.reportedRounds = String(wheel.reported);
}
