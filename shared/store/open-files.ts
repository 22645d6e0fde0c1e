import { open as openFile, type FileHandle } from 'node:fs/promises'

export interface OpenFilesInit {
  /** An idle handle is closed after this long without a read. */
  idleMs?: number
  /** Idle handles kept at most; past it, a handle is closed as its last reader leaves. */
  maxIdle?: number
  /** How a file is opened for reading (tests count the calls). */
  open?: (path: string) => Promise<FileHandle>
}

interface Entry {
  handle: Promise<FileHandle>
  readers: number
  /** Dropped: closed once its last reader leaves, never handed out again. */
  dropped: boolean
  idle?: NodeJS.Timeout
}

export const DEFAULT_IDLE_MS = 10_000
export const DEFAULT_MAX_IDLE = 64

/**
 * Read handles of complete data files, kept open between reads: serving a
 * blob piece by piece is then one read per piece instead of an open, a read
 * and a close. A file about to be removed or replaced must be dropped first
 * (and again once it is gone): a reader that opened it in between must not
 * leave a handle on the old bytes for the next reader of that path.
 */
export class OpenFiles {
  private readonly entries = new Map<string, Entry>()
  private readonly idleMs: number
  private readonly maxIdle: number
  private readonly openFile: (path: string) => Promise<FileHandle>

  constructor (init: OpenFilesInit = {}) {
    this.idleMs = init.idleMs ?? DEFAULT_IDLE_MS
    this.maxIdle = init.maxIdle ?? DEFAULT_MAX_IDLE
    this.openFile = init.open ?? (async (path) => await openFile(path, 'r'))
  }

  /** Run `read` with an open handle on `path` (opened if none is kept); the handle stays the store's. */
  async use<T> (path: string, read: (fh: FileHandle) => Promise<T>): Promise<T> {
    let entry = this.entries.get(path)
    if (entry == null) {
      entry = { handle: this.openFile(path), readers: 0, dropped: false }
      this.entries.set(path, entry)
    } else {
      // most recently used last, so the first idle entries are the oldest
      this.entries.delete(path)
      this.entries.set(path, entry)
    }
    clearTimeout(entry.idle)
    entry.idle = undefined
    entry.readers++
    try {
      return await read(await entry.handle)
    } catch (err) {
      // a failed open, or a handle that failed a read: not kept for the next reader
      this.forget(path, entry)
      throw err
    } finally {
      entry.readers--
      if (entry.readers === 0) this.idle(path, entry)
    }
  }

  /** Close the handle on `path` now, or as its last reader leaves; the next reader opens the file anew. */
  drop (path: string): void {
    const entry = this.entries.get(path)
    if (entry == null) return
    this.forget(path, entry)
    if (entry.readers === 0) this.close(entry)
  }

  /** Close every handle (readers still running close theirs as they leave). */
  closeAll (): void {
    for (const path of [...this.entries.keys()]) this.drop(path)
  }

  /** Handles kept now, open or opening. */
  get size (): number {
    return this.entries.size
  }

  private forget (path: string, entry: Entry): void {
    entry.dropped = true
    if (this.entries.get(path) === entry) this.entries.delete(path)
  }

  private idle (path: string, entry: Entry): void {
    if (entry.dropped) {
      this.close(entry)
      return
    }
    entry.idle = setTimeout(() => { this.drop(path) }, this.idleMs)
    entry.idle.unref()
    // at most maxIdle entries: nothing to count (the common case, on every piece read)
    if (this.entries.size <= this.maxIdle) return
    let idleCount = 0
    for (const e of this.entries.values()) if (e.readers === 0) idleCount++
    for (const [p, e] of this.entries) {
      if (idleCount <= this.maxIdle) break
      if (e.readers > 0) continue
      this.drop(p)
      idleCount--
    }
  }

  private close (entry: Entry): void {
    clearTimeout(entry.idle)
    entry.idle = undefined
    entry.handle.then(async (fh) => { await fh.close() }).catch(() => {})
  }
}
