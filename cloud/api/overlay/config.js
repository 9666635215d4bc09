// The overlay's whole configuration is its URL: an OBS browser source has no other settings, and a
// refresh of the source must come back the same. Unknown or bad values fall back to the defaults.

export const THEMES = ["neon", "pastel", "minimal"];
export const LAYOUTS = ["auto", "landscape", "portrait"];
export const GOAL_UNITS = ["diamonds", "rounds"];

function oneOf(value, allowed) {
  return allowed.includes(value) ? value : allowed[0];
}

function number(query, name, fallback, min, max) {
  const value = Number(query.get(name));
  if (!query.has(name) || query.get(name) === "" || !Number.isFinite(value)) return fallback;
  return Math.min(max, Math.max(min, value));
}

// "0", "false", "off" and "no" turn a part off; anything else (or nothing) leaves it on.
function enabled(query, name) {
  return !["0", "false", "off", "no"].includes((query.get(name) ?? "").toLowerCase());
}

export function readConfig(search, browserLanguages) {
  const query = new URLSearchParams(search);
  const lang = query.get("lang");
  return {
    theme: oneOf(query.get("theme"), THEMES),
    layout: oneOf(query.get("layout"), LAYOUTS),
    // The languages to try, best first: the URL's, else the browser's (OBS: its own UI language).
    languages: lang ? [lang] : [...browserLanguages],
    scale: number(query, "scale", 1, 0.25, 4),
    goal: Math.round(number(query, "goal", 0, 0, 1e12)), // 0: no goal bar
    goalUnit: oneOf(query.get("unit"), GOAL_UNITS),
    top: Math.round(number(query, "top", 5, 1, 10)),
    alertSeconds: number(query, "alert_s", 4, 0.5, 30),
    alerts: enabled(query, "alerts"),
    leaderboard: enabled(query, "leaderboard"),
    wheel: enabled(query, "wheel"),
    queue: enabled(query, "queue"),
    session: query.get("session") ?? "",
    // What the realtime endpoint is told: only the rooms (repeatable), nothing of the look.
    rooms: new URLSearchParams([
      ...query.getAll("channel").map((c) => ["channel", c]),
      ...query.getAll("device").map((d) => ["device", d]),
    ]),
  };
}
