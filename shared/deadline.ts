/** What makes a deadline one on progress rather than on the whole work. */
export interface ProgressRule {
  /** A count that changes while the work moves (bytes received). */
  progress: () => number
  /** The work may not take longer than this in all, moving or not. */
  maxMs: number
  /** What the signal is aborted with at `maxMs` (standing still gives the deadline's own reason). */
  tooLong: () => Error
}

/**
 * A deadline joined with a caller's signal, for work done thousands of times a
 * second (one frame, one piece). A plain timer, cleared when the work is done:
 * AbortSignal.timeout cannot be cancelled, so with one per frame thousands of
 * them would stay armed for their full timeout, and AbortSignal.any ties every
 * short-lived signal to the caller's long-lived one until both are collected.
 *
 * With a ProgressRule the timeout is for standing still: each time it runs out
 * the deadline looks at `progress()`, and starts over when it has changed since
 * the last look (so work that stalls is stopped between one and two timeouts
 * after its last move), until `maxMs` in all. A piece that shares a slow
 * connection with many others keeps its bytes as long as they keep coming.
 *
 * One Deadline may be armed again once cleared, for the next frame on the same
 * stream: it hands out the same signal until that signal has been aborted, so a
 * stream's reads cost no AbortController each (see FramedStream for why its
 * writes do not share one).
 */
export class Deadline {
  private controller = new AbortController()
  private timer: ReturnType<typeof setTimeout> | undefined
  private parent: AbortSignal | undefined
  private armed = false
  private readonly onParentAbort = (): void => { this.controller.abort(this.parent?.reason) }

  /** Not armed yet: see `arm`. */
  constructor ()
  /** Armed at once (see `arm`); `reason`: what the signal is aborted with when the time is up. */
  constructor (parent: AbortSignal | undefined, timeoutMs: number, reason: () => Error, rule?: ProgressRule)
  constructor (parent?: AbortSignal, timeoutMs?: number, reason?: () => Error, rule?: ProgressRule) {
    if (timeoutMs !== undefined && reason !== undefined) this.arm(parent, timeoutMs, reason, rule)
  }

  /** Whether it is armed now (between `arm` and `clear`). */
  get busy (): boolean {
    return this.armed
  }

  /**
   * Start the clock for one piece of work and return the signal it aborts: the
   * last one's, unless that was aborted. Throws when already armed.
   */
  arm (parent: AbortSignal | undefined, timeoutMs: number, reason: () => Error, rule?: ProgressRule): AbortSignal {
    if (this.armed) throw new Error('deadline armed twice')
    this.armed = true
    if (this.controller.signal.aborted) this.controller = new AbortController()
    const controller = this.controller
    this.parent = parent
    if (rule == null) {
      this.timer = setTimeout(() => { controller.abort(reason()) }, timeoutMs)
    } else {
      const end = Date.now() + rule.maxMs
      let seen = rule.progress()
      const look = (): void => {
        const now = rule.progress()
        const left = end - Date.now()
        if (left <= 0 || now === seen) {
          controller.abort(left <= 0 ? rule.tooLong() : reason())
          return
        }
        seen = now
        this.timer = setTimeout(look, Math.min(timeoutMs, left))
      }
      this.timer = setTimeout(look, Math.min(timeoutMs, rule.maxMs))
    }
    if (parent?.aborted === true) controller.abort(parent.reason)
    else parent?.addEventListener('abort', this.onParentAbort, { once: true })
    return controller.signal
  }

  /** Aborted when the time is up (with the reason) or the parent aborts (with the parent's reason). */
  get signal (): AbortSignal {
    return this.controller.signal
  }

  /** Disarm: the timer stops and the parent is let go. Call when the work is done, either way. */
  clear (): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.parent?.removeEventListener('abort', this.onParentAbort)
    this.parent = undefined
    this.armed = false
  }
}
