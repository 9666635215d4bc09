// One string table per language, lang-<code>.json next to this file: adding a language is adding
// a file (the server lists them at /overlay/languages.json). The first of the wanted languages that has a table wins (by its full tag, then its
// primary subtag: vi-VN -> vi), else English.

export const FALLBACK = "en";

function candidates(languages) {
  const tags = [];
  for (const tag of languages) {
    const clean = String(tag).toLowerCase();
    if (!/^[a-z]{2,3}(-[a-z0-9]{2,8})*$/.test(clean)) continue; // names a file: nothing else
    tags.push(clean, clean.split("-")[0]);
  }
  return [...new Set([...tags, FALLBACK])];
}

async function fetchJson(path) {
  const response = await fetch(path).catch(() => null);
  return response?.ok ? response.json() : null;
}

export async function loadStrings(languages) {
  const available = (await fetchJson("/overlay/languages.json")) ?? [FALLBACK];
  const lang = candidates(languages).find((tag) => available.includes(tag)) ?? FALLBACK;
  return makeStrings(lang, (await fetchJson(`/overlay/lang-${lang}.json`)) ?? {});
}

export function makeStrings(lang, table) {
  const numbers = new Intl.NumberFormat(lang);
  // Values are set as text (textContent), never parsed as HTML: a viewer's name stays a name.
  const t = (key, values = {}) =>
    (table[key] ?? key).replace(/\{(\w+)\}/g, (_, name) => {
      const value = values[name];
      return typeof value === "number" ? numbers.format(value) : String(value ?? "");
    });
  return { lang, t, number: (n) => numbers.format(n) };
}
