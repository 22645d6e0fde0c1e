/**
 * A no-progress deadline: calls `onStall` when `progress()` was not called for
 * `timeoutMs`, then keeps watching (from the stall, or from the last progress)
 * until stopped. Its timer never holds the process open.
 */
export class ProgressWatchdog {
  private readonly timeoutMs: number
  private readonly onStall: (stalledMs: number) => void
  private last = Date.now()
  private timer?: NodeJS.Timeout
  private stopped = false

  constructor (timeoutMs: number, onStall: (stalledMs: number) => void) {
    this.timeoutMs = timeoutMs
    this.onStall = onStall
  }

  /** Something arrived: the deadline starts again. */
  progress (): void {
    this.last = Date.now()
  }

  start (): void {
    this.stopped = false
    this.last = Date.now()
    this.arm()
  }

  stop (): void {
    this.stopped = true
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
  }

  private arm (): void {
    if (this.stopped) return
    // at most once a second, however often the stall handler lets it go on
    this.timer = setTimeout(() => {
      this.timer = undefined
      if (this.stopped) return
      const stalled = Date.now() - this.last
      if (stalled >= this.timeoutMs) this.onStall(stalled)
      this.arm()
    }, Math.max(1000, this.last + this.timeoutMs - Date.now()))
    this.timer.unref()
  }
}
