import type { Logger } from 'pino'
import { DiskFullError } from '../errors.js'
import type { UsageEntry } from './usage-index.js'

export const DEFAULT_EVICT_INTERVAL_MS = 60_000

export type EvictReason = 'quota' | 'free-space'

export interface DiskQuotaInit {
  /** Most bytes the store's own entries may take; no bound when unset. */
  maxBytes?: number
  /** Free bytes to leave on the filesystem holding the store; 0 when unset. */
  minFreeBytes?: number
  /** How often eviction runs on its own, besides after each commit and when room is needed. */
  intervalMs?: number
}

/** What the quota needs from the store it keeps in bounds. */
export interface QuotaSubject {
  /** Bytes of every entry, complete and partial (a partial at its full size). */
  usedBytes: () => number
  /** Bytes the open partial blobs have yet to write into their sparse files. */
  pendingBytes: () => number
  /** Free bytes for us on the filesystem holding the store; undefined when it cannot be read. */
  freeBytes: () => Promise<number | undefined>
  /** Entries that may go now (not leased, not being downloaded), least recently used first. */
  evictable: () => UsageEntry[]
  /** Drop one entry; false when it became busy (or could not be removed). */
  evict: (entry: UsageEntry, reason: EvictReason) => Promise<boolean>
}

/**
 * Keeps a store under its byte quota and above the free-space watermark by
 * evicting least-recently-used entries. Runs one pass at a time: when a new
 * blob needs room (strict: fails with DiskFullError if the room cannot be
 * made), after each commit, and on an unref'd timer.
 */
export class DiskQuota {
  readonly maxBytes: number | undefined
  readonly minFreeBytes: number
  private readonly intervalMs: number
  private readonly subject: QuotaSubject
  private readonly log: Logger
  private chain: Promise<void> = Promise.resolve()
  private timer: NodeJS.Timeout | undefined

  constructor (subject: QuotaSubject, logger: Logger, init: DiskQuotaInit = {}) {
    this.subject = subject
    this.log = logger
    this.maxBytes = init.maxBytes
    this.minFreeBytes = init.minFreeBytes ?? 0
    this.intervalMs = init.intervalMs ?? DEFAULT_EVICT_INTERVAL_MS
  }

  /** True when a bound was configured: only then does eviction run on its own. */
  get bounded (): boolean {
    return this.maxBytes != null || this.minFreeBytes > 0
  }

  start (): void {
    if (this.timer != null || !this.bounded) return
    this.timer = setInterval(() => { this.schedule() }, this.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    if (this.timer != null) clearInterval(this.timer)
    this.timer = undefined
    await this.chain
  }

  /**
   * Make room for what the store already counts (a new partial blob is
   * registered before it asks): evict as needed, or throw DiskFullError
   * without evicting anything when even evicting every idle entry would not do.
   */
  async reserve (): Promise<void> {
    await this.enqueue(async () => { await this.pass(true) })
  }

  /** Evict until within bounds, as far as idle entries allow. */
  async enforce (): Promise<void> {
    if (!this.bounded) return
    await this.enqueue(async () => { await this.pass(false) })
  }

  /** enforce() in the background; failures are logged. */
  schedule (): void {
    this.enforce().catch((err: unknown) => { this.log.warn({ err }, 'eviction pass failed') })
  }

  private async enqueue (task: () => Promise<void>): Promise<void> {
    const run = this.chain.then(task)
    this.chain = run.catch(() => {})
    await run
  }

  private async pass (strict: boolean): Promise<void> {
    const tried = new Set<string>()
    let checkedPotential = false
    for (;;) {
      const used = this.subject.usedBytes()
      const free = await this.subject.freeBytes()
      const room = free == null ? undefined : free - this.subject.pendingBytes()
      const over = this.maxBytes != null && used > this.maxBytes
      const short = room != null && room < this.minFreeBytes
      if (!over && !short) return
      const candidates = this.subject.evictable().filter(e => !tried.has(`${e.kind}:${e.hex}`))
      if (strict && !checkedPotential) {
        // a blob that cannot fit even in an emptied cache must not empty it
        checkedPotential = true
        const potential = candidates.reduce((n, e) => n + e.size, 0)
        if (this.maxBytes != null && used - potential > this.maxBytes) {
          throw new DiskFullError(`the store needs ${used} bytes with its blobs in use, over its max-disk of ${this.maxBytes}`)
        }
        if (room != null && room + potential < this.minFreeBytes) {
          throw new DiskFullError(`${free ?? 0} bytes free, blobs in progress need ${this.subject.pendingBytes()} and min-free-disk keeps ${this.minFreeBytes}`)
        }
      }
      const next = candidates[0]
      if (next == null) {
        if (strict) throw new DiskFullError('no idle blob left to evict')
        this.log.warn({ used, maxBytes: this.maxBytes, free, minFreeBytes: this.minFreeBytes }, 'store over its bounds and nothing idle to evict')
        return
      }
      tried.add(`${next.kind}:${next.hex}`)
      await this.subject.evict(next, over ? 'quota' : 'free-space')
    }
  }
}
