import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { PartialBlob } from '../../shared/store/partial-blob.js'
import { manifestFromWire, type PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { DamselflyError, UnavailableError, errorFromCode } from '../../shared/errors.js'
import type { BlobRequest } from '../blob-provider.js'
import type { DaemonMetrics } from '../metrics.js'
import type { PiecePolicy } from './piece-policy.js'
import type { PieceSource } from './piece-source.js'
import type { TaskStream } from './supernode-client.js'

export interface BlobDownloadComponents {
  store: BlobStore
  metrics: DaemonMetrics
  logger: Logger
  /** Opens the blob's task on the supernode. */
  openTask: (req: BlobRequest) => Promise<TaskStream>
  /** Makes the supernode a piece source for this blob, given what it holds. */
  supernodeSource: (manifest: PieceManifest, has: (index: number) => boolean) => PieceSource
}

export interface BlobDownloadInit {
  req: BlobRequest
  policy: PiecePolicy
  /** Attempts per piece before the download fails. */
  maxPieceAttempts?: number
}

/** A failing source is set aside for this long, doubling per consecutive failure up to the max. */
const SET_ASIDE_BASE_MS = 250
const SET_ASIDE_MAX_MS = 30_000

interface Waiter {
  resolve: () => void
  reject: (err: Error) => void
}

/**
 * One blob's download on this host: asks the supernode for the task, then
 * fetches pieces from the sources it knows, several in flight at once, each
 * verified before it is written; clients wait on pieces in order while the
 * rest arrives. When every piece is held the blob is checked whole and moved
 * into the store.
 */
export class BlobDownload {
  readonly req: BlobRequest
  /** Resolves with the piece manifest once the blob's size is known. */
  readonly ready: Promise<PieceManifest>
  /** Resolves when the blob is complete and committed to the store. */
  readonly done: Promise<void>

  private readonly components: BlobDownloadComponents
  private readonly policy: PiecePolicy
  private readonly maxAttempts: number
  private readonly log: Logger
  private readonly abort = new AbortController()
  private readonly sources: PieceSource[] = []
  private readonly inFlight = new Map<number, AbortController>()
  private readonly sourceLoad = new Map<string, number>()
  private readonly attempts = new Map<number, number>()
  /** Consecutive failures per source, and until when a failing source is set aside. */
  private readonly sourceFailures = new Map<string, number>()
  private readonly setAsideUntil = new Map<string, number>()
  private wakeTimer?: NodeJS.Timeout
  private readonly waiters = new Map<number, Waiter[]>()
  private partial?: PartialBlob
  private task?: TaskStream
  private failure?: Error
  private finished = false
  private resolveReady!: (m: PieceManifest) => void
  private rejectReady!: (err: Error) => void
  private resolveDone!: () => void
  private rejectDone!: (err: Error) => void
  private committing = false

  constructor (components: BlobDownloadComponents, init: BlobDownloadInit) {
    this.components = components
    this.req = init.req
    this.policy = init.policy
    this.maxAttempts = init.maxPieceAttempts ?? 5
    this.log = components.logger.child({ component: 'download', digest: init.req.digest.value })
    this.ready = new Promise((resolve, reject) => { this.resolveReady = resolve; this.rejectReady = reject })
    this.done = new Promise((resolve, reject) => { this.resolveDone = resolve; this.rejectDone = reject })
    // callers may only await one of them; never leave a rejection unhandled
    this.ready.catch(() => {})
    this.done.catch(() => {})
  }

  get error (): Error | undefined {
    return this.failure
  }

  /** Start the download; failures surface through `ready`, `done` and piece waits. */
  start (): void {
    this.run().catch(err => { this.fail(err as Error) })
  }

  hasPiece (index: number): boolean {
    return this.partial?.bitfield.has(index) ?? false
  }

  /** Resolve once piece `index` is held (verified, written); reject if the download fails. */
  async waitPiece (index: number, signal?: AbortSignal): Promise<void> {
    if (this.failure != null) throw this.failure
    if (this.finished || this.hasPiece(index)) return
    await new Promise<void>((resolve, reject) => {
      const list = this.waiters.get(index) ?? []
      const waiter: Waiter = {
        resolve: () => { signal?.removeEventListener('abort', onAbort); resolve() },
        reject: (err) => { signal?.removeEventListener('abort', onAbort); reject(err) }
      }
      const onAbort = (): void => {
        const l = this.waiters.get(index)
        if (l != null) this.waiters.set(index, l.filter(w => w !== waiter))
        reject(signal?.reason as Error)
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      list.push(waiter)
      this.waiters.set(index, list)
      this.pump()
    })
  }

  /** Stop everything (daemon shutdown). */
  cancel (err: Error = new UnavailableError('download cancelled')): void {
    this.fail(err)
  }

  private async run (): Promise<void> {
    const stored = await this.components.store.getComplete(this.req.digest)
    if (stored != null) {
      // finished by an earlier download a moment ago
      this.finished = true
      this.resolveReady(stored.manifest)
      this.resolveDone()
      return
    }
    const task = await this.components.openTask(this.req)
    this.task = task
    const answers = task[Symbol.asyncIterator]()
    const first = await answers.next()
    if (first.done === true) throw new UnavailableError('supernode closed the task without an answer')
    const answer = first.value
    if (answer.type === 'error') throw errorFromCode(answer.code, answer.message, answer.challenge)
    if (answer.type !== 'manifest') throw new UnavailableError('supernode answered out of order')
    const manifest = manifestFromWire(answer.manifest)
    if (manifest.digest.value !== this.req.digest.value) throw new UnavailableError('supernode answered for another blob')

    this.partial = await this.components.store.openPartial(manifest)
    const known = this.partial.manifest
    this.sources.push(this.components.supernodeSource(known, (i) => known.pieces[i] != null))
    this.resolveReady(known)
    this.log.debug({ size: known.size, pieceSize: known.pieceSize, pieces: known.pieces.length, held: this.partial.bitfield.count }, 'download started')
    this.pump()
    await this.maybeCommit()

    // the rest of the task: piece hashes as the supernode completes them
    for (;;) {
      const next = await answers.next()
      if (next.done === true || this.finished || this.failure != null) break
      const a = next.value
      if (a.type === 'piece') {
        this.partial.setPieceHash(a.index, a.sha256)
        this.pump()
      } else if (a.type === 'error') {
        throw errorFromCode(a.code, a.message, a.challenge)
      } else if (a.type === 'done') {
        break
      }
    }
  }

  /** Fill every source's free request slots with pieces chosen by the policy. */
  private pump (): void {
    const partial = this.partial
    if (partial == null || this.finished || this.failure != null) return
    const manifest = partial.manifest
    const now = Date.now()
    for (const source of this.sources) {
      const until = this.setAsideUntil.get(source.id) ?? 0
      if (until > now) {
        this.wakeAt(until)
        continue
      }
      let load = this.sourceLoad.get(source.id) ?? 0
      while (load < source.maxInFlight) {
        const candidates: number[] = []
        for (let i = 0; i < manifest.pieces.length; i++) {
          if (!partial.bitfield.has(i) && !this.inFlight.has(i) && manifest.pieces[i] != null && source.has(i)) candidates.push(i)
        }
        const index = this.policy.pick(candidates, {
          availability: (i) => this.sources.reduce((n, s) => n + (s.has(i) ? 1 : 0), 0),
          urgent: this.lowestWaited()
        })
        if (index === undefined) break
        load++
        this.sourceLoad.set(source.id, load)
        this.request(source, index)
      }
    }
  }

  /** Pump again at `time`, when a set-aside source may be asked again. */
  private wakeAt (time: number): void {
    if (this.wakeTimer != null) return
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined
      this.pump()
    }, Math.max(0, time - Date.now()))
    this.wakeTimer.unref()
  }

  private lowestWaited (): number | undefined {
    let low: number | undefined
    for (const [i, list] of this.waiters) if (list.length > 0 && (low === undefined || i < low)) low = i
    return low
  }

  private request (source: PieceSource, index: number): void {
    const ac = new AbortController()
    this.inFlight.set(index, ac)
    this.components.metrics.piecesInFlight.inc()
    const signal = AbortSignal.any([ac.signal, this.abort.signal])
    source.fetch(index, signal).then(async (bytes) => {
      await this.partial?.writePiece(index, bytes)
      this.sourceFailures.delete(source.id)
      this.components.metrics.pieceBytes.inc({ source: source.kind }, bytes.byteLength)
      this.components.metrics.pieces.inc({ source: source.kind })
      this.wake(index)
    }, (err: Error) => {
      if (this.failure != null || this.finished) return
      const n = (this.attempts.get(index) ?? 0) + 1
      this.attempts.set(index, n)
      // set the source aside for a while, longer after each consecutive failure
      const f = (this.sourceFailures.get(source.id) ?? 0) + 1
      this.sourceFailures.set(source.id, f)
      this.setAsideUntil.set(source.id, Date.now() + Math.min(SET_ASIDE_MAX_MS, SET_ASIDE_BASE_MS * 2 ** (f - 1)))
      this.components.metrics.pieceFailures.inc({ source: source.kind, reason: err.name })
      this.log.warn({ index, source: source.id, attempt: n, err: { name: err.name, message: err.message } }, 'piece request failed')
      if (n >= this.maxAttempts) this.fail(err instanceof DamselflyError ? err : new UnavailableError(`piece ${index} failed ${n} times`, { cause: err }))
    }).catch((err: Error) => { this.fail(err) }).finally(() => {
      this.inFlight.delete(index)
      this.sourceLoad.set(source.id, (this.sourceLoad.get(source.id) ?? 1) - 1)
      this.components.metrics.piecesInFlight.dec()
      this.pump()
      void this.maybeCommit()
    })
  }

  private wake (index: number): void {
    const list = this.waiters.get(index)
    this.waiters.delete(index)
    for (const w of list ?? []) w.resolve()
  }

  private async maybeCommit (): Promise<void> {
    const partial = this.partial
    if (partial == null || !partial.complete || this.committing || this.finished || this.failure != null) return
    this.committing = true
    try {
      await this.components.store.commit(partial)
      this.finished = true
      this.task?.close()
      for (const i of [...this.waiters.keys()]) this.wake(i)
      this.components.metrics.downloads.inc({ result: 'success' })
      this.log.info({ size: partial.manifest.size }, 'blob complete')
      this.resolveDone()
    } catch (err) {
      this.fail(err as Error)
    }
  }

  private fail (err: Error): void {
    if (this.failure != null || this.finished) return
    this.failure = err
    this.abort.abort(err)
    if (this.wakeTimer != null) clearTimeout(this.wakeTimer)
    this.task?.close()
    this.components.metrics.downloads.inc({ result: 'failure' })
    this.log.warn({ err: { name: err.name, message: err.message } }, 'download failed')
    for (const [, list] of this.waiters) for (const w of list) w.reject(err)
    this.waiters.clear()
    this.rejectReady(err)
    this.rejectDone(err)
  }
}
