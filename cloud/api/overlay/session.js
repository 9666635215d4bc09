// The session's totals (goal and top gifters), kept in localStorage so that OBS refreshing the
// source, or the page reconnecting, neither loses them nor counts a gift or a done twice.
// Everything kept is bounded: a long stream with many gifters cannot grow the page's memory.

export const SEEN_LIMIT = 2000; // > the recent gifts and done events a join state replays (500 + 1,000)
export const GIFTERS_LIMIT = 300;
// A session kept this long without a gift is over: the next load starts a fresh one.
export const SESSION_IDLE_MS = 6 * 3600 * 1000;
const SAVE_DELAY_MS = 1000;

function diamondsOf(gift) {
  return (gift.diamond ?? 0) * (gift.quantity ?? 1);
}

export class SessionTotals {
  constructor(storage, key, nowMs) {
    this.storage = storage;
    this.key = key;
    this.saveTimer = null;
    const stored = this.load();
    const fresh = !stored || nowMs - stored.updatedMs > SESSION_IDLE_MS;
    const s = fresh ? { startedMs: nowMs, diamonds: 0, rounds: 0, gifters: {}, seen: [] } : stored;
    this.startedMs = s.startedMs;
    this.updatedMs = nowMs;
    this.diamonds = s.diamonds;
    this.rounds = s.rounds;
    this.gifters = new Map(Object.entries(s.gifters));
    this.seen = new Set(s.seen);
  }

  load() {
    try {
      const value = JSON.parse(this.storage?.getItem(this.key) ?? "null");
      return value && typeof value.startedMs === "number" ? value : null;
    } catch {
      return null; // storage refused (private mode) or garbled: a fresh session
    }
  }

  // Counts a gift once; one from a join state only if it came after the session started.
  addGift(gift, live) {
    if (!live && !(gift.ts >= this.startedMs)) return false;
    if (!this.remember(`g:${gift.eventId}`)) return false;
    const diamonds = diamondsOf(gift);
    this.diamonds += diamonds;
    this.gifters.set(gift.user, (this.gifters.get(gift.user) ?? 0) + diamonds);
    if (this.gifters.size > GIFTERS_LIMIT) this.dropSmallestGifter();
    this.changed();
    return true;
  }

  // Counts a finished command's rounds once (a reconnect replays recent done events).
  addDone(done, live) {
    if (!live && !(done.ts >= this.startedMs)) return false;
    if (!this.remember(`d:${done.commandId}`)) return false;
    this.rounds += done.commandRounds ?? 0;
    this.changed();
    return true;
  }

  top(count) {
    return [...this.gifters].sort((a, b) => b[1] - a[1]).slice(0, count);
  }

  remember(id) {
    if (this.seen.has(id)) return false;
    this.seen.add(id);
    if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value);
    return true;
  }

  dropSmallestGifter() {
    let smallest = null;
    for (const [user, diamonds] of this.gifters) {
      if (smallest === null || diamonds < this.gifters.get(smallest)) smallest = user;
    }
    this.gifters.delete(smallest);
  }

  changed() {
    this.updatedMs = Date.now();
    if (this.saveTimer === null) this.saveTimer = setTimeout(() => this.save(), SAVE_DELAY_MS);
  }

  save() {
    this.saveTimer = null;
    const value = {
      startedMs: this.startedMs,
      updatedMs: this.updatedMs,
      diamonds: this.diamonds,
      rounds: this.rounds,
      gifters: Object.fromEntries(this.gifters),
      seen: [...this.seen],
    };
    try {
      this.storage?.setItem(this.key, JSON.stringify(value));
    } catch {
      // Storage full or refused: the totals still count on this page, only a refresh loses them.
    }
  }
}
