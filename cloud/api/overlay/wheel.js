// How far a wheel is drawn: the shown rounds chase the rounds the motor reported, at the motor's
// speed, and never pass them. Pure functions: the page calls them once per animation frame.

// Behind by more than a round (updates came in a batch, or the page was in the background), the
// wheel turns faster in proportion, so it never trails the motor by much more than a round.
export function advanceShown(shown, reported, secondsPerRound, dtSeconds) {
  if (!(secondsPerRound > 0) || shown >= reported) return reported;
  const lag = reported - shown;
  return Math.min(reported, shown + (Math.max(1, lag) / secondsPerRound) * Math.max(0, dtSeconds));
}

// The wheel's angle in degrees for the shown rounds (whole rounds put it back at 0).
export function angleOf(shownRounds) {
  return (shownRounds % 1) * 360;
}

// Seconds per round: the join state carries the server's smoothed figure; a progress update
// carries an ETA for its queued rounds; else it is estimated here from two successive updates of
// the same command (the edge's own timestamps), smoothed as the server smooths it.
export function secondsPerRound(known, update, previous) {
  if (update.secondsPerRound > 0) return update.secondsPerRound;
  if (update.etaS > 0 && update.queuedRounds > 0) return update.etaS / update.queuedRounds;
  if (previous && previous.commandId === update.commandId) {
    const rounds = (update.commandRoundsDone ?? 0) - (previous.commandRoundsDone ?? 0);
    const seconds = ((update.ts ?? 0) - (previous.ts ?? 0)) / 1000;
    if (rounds > 0 && seconds > 0) {
      const sample = seconds / rounds;
      return known > 0 ? 0.5 * known + 0.5 * sample : sample;
    }
  }
  return known;
}

// The commandId the worker gives a command carrying these gifts (giftwheel.contracts.motor.
// command_id_for): "c-" + the first 32 hex digits of SHA-256 over the sorted eventIds joined by
// newlines. WebCrypto exists only in secure contexts (https, localhost): elsewhere, null.
export async function commandIdFor(eventIds) {
  if (!globalThis.crypto?.subtle) return null;
  const text = [...eventIds].sort().join("\n");
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return `c-${hex.slice(0, 32)}`;
}
