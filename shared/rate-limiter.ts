/**
 * A token bucket of bytes per second, shared by every transfer of a process
 * (uploads to all peers, or downloads from all sources). A take larger than
 * the bucket is granted and paid back before the next one, so pieces bigger
 * than a second's worth still flow at the configured rate.
 */
export class RateLimiter {
  readonly bytesPerSecond: number
  private readonly burst: number
  private readonly now: () => number
  private tokens: number
  private last: number
  private queue: Promise<void> = Promise.resolve()

  constructor (bytesPerSecond: number, init: { burst?: number, now?: () => number } = {}) {
    if (!(bytesPerSecond > 0)) throw new RangeError('rate must be positive')
    this.bytesPerSecond = bytesPerSecond
    this.burst = init.burst ?? bytesPerSecond
    this.now = init.now ?? (() => performance.now())
    this.tokens = this.burst
    this.last = this.now()
  }

  /** Wait until `bytes` may pass; callers are served in order. */
  async take (bytes: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const turn = this.queue.then(async () => { await this.wait(bytes, signal) })
    // a cancelled waiter must not block the ones behind it
    this.queue = turn.catch(() => {})
    if (signal == null) {
      await turn
      return
    }
    // cancelled while queued behind others: reject now, not when its turn comes
    // (its turn then passes at once, uncharged, in wait())
    await new Promise<void>((resolve, reject) => {
      const onAbort = (): void => { reject(signal.reason as Error) }
      signal.addEventListener('abort', onAbort, { once: true })
      void turn.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
    })
  }

  /** How long (ms) the next take would wait now. */
  delayFor (): number {
    this.refill()
    return this.tokens >= 0 ? 0 : (-this.tokens / this.bytesPerSecond) * 1000
  }

  private async wait (bytes: number, signal?: AbortSignal): Promise<void> {
    for (;;) {
      signal?.throwIfAborted()
      this.refill()
      if (this.tokens >= 0) {
        this.tokens -= bytes
        return
      }
      const ms = Math.ceil((-this.tokens / this.bytesPerSecond) * 1000)
      await new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve() }, ms)
        // a transfer waiting here has a socket that keeps the process up; the wait alone must not
        // (a stopped node's queued uploads would otherwise hold the process for queue × piece / rate)
        t.unref()
        const onAbort = (): void => { clearTimeout(t); reject(signal?.reason as Error) }
        signal?.addEventListener('abort', onAbort, { once: true })
      })
    }
  }

  private refill (): void {
    const now = this.now()
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.bytesPerSecond)
    this.last = now
  }
}
