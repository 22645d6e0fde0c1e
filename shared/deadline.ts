/**
 * A deadline joined with a caller's signal, for work done thousands of times a
 * second (one frame, one piece). A plain timer, cleared when the work is done:
 * AbortSignal.timeout cannot be cancelled, so with one per frame thousands of
 * them would stay armed for their full timeout, and AbortSignal.any ties every
 * short-lived signal to the caller's long-lived one until both are collected.
 */
export class Deadline {
  private readonly controller = new AbortController()
  private readonly timer: ReturnType<typeof setTimeout>
  private readonly parent: AbortSignal | undefined
  private readonly onParentAbort = (): void => { this.controller.abort(this.parent?.reason) }

  /** `reason`: what the signal is aborted with when the time is up. */
  constructor (parent: AbortSignal | undefined, timeoutMs: number, reason: () => Error) {
    this.parent = parent
    this.timer = setTimeout(() => { this.controller.abort(reason()) }, timeoutMs)
    if (parent?.aborted === true) this.controller.abort(parent.reason)
    else parent?.addEventListener('abort', this.onParentAbort, { once: true })
  }

  /** Aborted when the time is up (with the reason) or the parent aborts (with the parent's reason). */
  get signal (): AbortSignal {
    return this.controller.signal
  }

  /** Disarm: the timer stops and the parent is let go. Call when the work is done, either way. */
  clear (): void {
    clearTimeout(this.timer)
    this.parent?.removeEventListener('abort', this.onParentAbort)
  }
}
