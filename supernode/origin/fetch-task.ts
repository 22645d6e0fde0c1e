import type { PieceManifest } from '../../shared/pieces/piece-manifest.js'

/** A piece of the blob became complete (written and hashed) on the supernode. */
export interface PieceComplete {
  index: number
  /** Hex sha256 of the piece's bytes. */
  sha256: string
}

export type PieceListener = (piece: PieceComplete) => void

/**
 * One blob's origin fetch as its waiters see it. `manifest` fills in as pieces
 * complete; `onPiece` reports each new piece the moment it is written, before
 * the rest of the blob has arrived; `done` settles when the blob is committed
 * to the store (or rejects with the typed error the fetch failed with).
 */
export class FetchTask {
  readonly manifest: PieceManifest
  readonly done: Promise<void>
  private readonly listeners = new Set<PieceListener>()
  private settled = false
  private error_: Error | undefined
  private resolveDone!: () => void
  private rejectDone!: (err: Error) => void

  constructor (manifest: PieceManifest) {
    this.manifest = manifest
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve
      this.rejectDone = reject
    })
    // a task nobody waits on must not raise an unhandled rejection
    this.done.catch(() => {})
  }

  /** A finished task for a blob already complete in the store. */
  static completed (manifest: PieceManifest): FetchTask {
    const task = new FetchTask(manifest)
    task.finish()
    return task
  }

  /** True once the blob is committed or the fetch failed. */
  get finished (): boolean {
    return this.settled
  }

  /** The error the fetch failed with, if it did. */
  get error (): Error | undefined {
    return this.error_
  }

  /** Listen for completed pieces; returns the function that stops listening. */
  onPiece (listener: PieceListener): () => void {
    if (this.settled) return () => {}
    this.listeners.add(listener)
    return () => { this.listeners.delete(listener) }
  }

  /** Number of current piece listeners (for tests: waiters must not leak). */
  get listenerCount (): number {
    return this.listeners.size
  }

  /** @internal called by the fetcher after the piece was written. */
  pieceComplete (index: number, sha256: string): void {
    for (const listener of [...this.listeners]) {
      try {
        listener({ index, sha256 })
      } catch {
        // a waiter's bug must not break the fetch that feeds every other waiter
      }
    }
  }

  /** @internal */
  finish (): void {
    if (this.settled) return
    this.settled = true
    this.listeners.clear()
    this.resolveDone()
  }

  /** @internal */
  fail (err: Error): void {
    if (this.settled) return
    this.settled = true
    this.error_ = err
    this.listeners.clear()
    this.rejectDone(err)
  }
}
