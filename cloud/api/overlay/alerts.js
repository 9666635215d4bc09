// Gift alerts are shown one at a time. A burst (a thousand gifts in a minute) must neither keep the
// stream busy for an hour nor grow the page's memory: past LIMIT waiting alerts, further gifts are
// only counted, and shown once as one summary after the waiting ones.

export const ALERT_QUEUE_LIMIT = 20;

export class AlertQueue {
  constructor(limit = ALERT_QUEUE_LIMIT) {
    this.limit = limit;
    this.waiting = [];
    this.summary = { gifts: 0, diamonds: 0 };
  }

  push(gift) {
    if (this.waiting.length < this.limit) {
      this.waiting.push(gift);
    } else {
      this.summary.gifts += 1;
      this.summary.diamonds += (gift.diamond ?? 0) * (gift.quantity ?? 1);
    }
  }

  // The next thing to show: {gift} or {summary}, or null when nothing waits.
  next() {
    if (this.waiting.length) return { gift: this.waiting.shift() };
    if (this.summary.gifts) {
      const summary = this.summary;
      this.summary = { gifts: 0, diamonds: 0 };
      return { summary };
    }
    return null;
  }

  get size() {
    return this.waiting.length;
  }
}
