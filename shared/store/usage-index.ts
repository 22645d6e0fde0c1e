import { readdir, stat, utimes } from 'node:fs/promises'
import { parseDigest, type Digest } from '../oci/digest.js'
import type { StoreLayout } from './layout.js'

/** A complete blob's data file carries its last use as mtime, written at most this often per blob. */
export const STAMP_INTERVAL_MS = 30_000

/** One entry of the store as eviction sees it. */
export interface UsageEntry {
  hex: string
  kind: 'complete' | 'partial'
  /** Bytes of its data file (a partial counts its full size: its sparse file fills up). */
  size: number
  /** Last access, ms since the epoch. */
  lastUsed: number
}

/**
 * The store's own accounting: the size and last access of every entry it holds
 * (complete and partial), and leases on complete blobs being served. Disk usage
 * is the sum of these sizes, never a walk of the directory, so files that are
 * not the store's never count. A complete blob's last use is kept on disk as
 * its data file's mtime (the bytes never change once committed; atime is not
 * reliable under noatime/relatime), so recency survives a restart with no index
 * file to keep consistent.
 */
export class UsageIndex {
  private readonly layout: StoreLayout
  private readonly entries = new Map<string, UsageEntry>()
  private readonly leases = new Map<string, number>()
  private readonly saving = new Map<string, Promise<void>>()
  private readonly saveAgain = new Set<string>()
  /** When each complete blob's file was last stamped, and the blobs used since. */
  private readonly stampedAt = new Map<string, number>()
  private readonly unstamped = new Map<string, Digest>()
  private used = 0

  constructor (layout: StoreLayout) {
    this.layout = layout
  }

  /** Learn the entries on disk: their sizes, and their last use from the data files' mtimes. */
  async load (): Promise<void> {
    for (const kind of ['complete', 'partial'] as const) {
      const dir = kind === 'complete' ? this.layout.blobsDir : this.layout.partialDir
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        let digest: Digest
        try { digest = parseDigest(`sha256:${name}`) } catch { continue }
        const data = kind === 'complete' ? this.layout.completeData(digest) : this.layout.partialData(digest)
        const st = await stat(data).catch(() => undefined)
        if (st == null || this.get(kind, digest.hex) != null) continue
        this.set({ hex: digest.hex, kind, size: st.size, lastUsed: st.mtimeMs })
      }
    }
  }

  /**
   * A complete blob was used: record it, and stamp its data file (one stamp in
   * flight per blob). A blob served piece by piece is used many times a second:
   * its file is stamped at most once per STAMP_INTERVAL_MS, and the uses in
   * between are stamped by `settle` (on close). A crash loses at most that much
   * recency, never an entry.
   */
  use (digest: Digest, now = Date.now()): void {
    const hex = digest.hex
    if (!this.touch('complete', hex, now)) return
    const last = this.stampedAt.get(hex)
    if (last !== undefined && now - last < STAMP_INTERVAL_MS) {
      this.unstamped.set(hex, digest)
      return
    }
    this.stampedAt.set(hex, now)
    this.unstamped.delete(hex)
    this.stamp(digest)
  }

  private stamp (digest: Digest): void {
    const hex = digest.hex
    if (this.saving.has(hex)) {
      this.saveAgain.add(hex)
      return
    }
    const path = this.layout.completeData(digest)
    const p = (async () => {
      do {
        this.saveAgain.delete(hex)
        const t = this.get('complete', hex)?.lastUsed
        if (t == null) return
        await utimes(path, t / 1000, t / 1000).catch(() => {})
      } while (this.saveAgain.has(hex))
    })().finally(() => { this.saving.delete(hex) })
    this.saving.set(hex, p)
  }

  /** Stamp the uses not yet on disk, and wait for every stamp in flight. */
  async settle (): Promise<void> {
    for (const digest of this.unstamped.values()) this.stamp(digest)
    this.unstamped.clear()
    await Promise.all(this.saving.values())
  }

  get usedBytes (): number {
    return this.used
  }

  get (kind: UsageEntry['kind'], hex: string): UsageEntry | undefined {
    return this.entries.get(key(kind, hex))
  }

  set (entry: UsageEntry): void {
    this.delete(entry.kind, entry.hex)
    this.entries.set(key(entry.kind, entry.hex), { ...entry })
    this.used += entry.size
  }

  delete (kind: UsageEntry['kind'], hex: string): UsageEntry | undefined {
    const k = key(kind, hex)
    const e = this.entries.get(k)
    if (e == null) return undefined
    this.entries.delete(k)
    if (kind === 'complete') {
      this.stampedAt.delete(hex)
      this.unstamped.delete(hex)
    }
    this.used -= e.size
    return e
  }

  /** Record an access; false when the entry is not held. */
  touch (kind: UsageEntry['kind'], hex: string, now = Date.now()): boolean {
    const e = this.entries.get(key(kind, hex))
    if (e == null) return false
    e.lastUsed = Math.max(e.lastUsed, now)
    return true
  }

  /** Hold `hex` against eviction until the returned function is called (once is enough; more are ignored). */
  lease (hex: string): () => void {
    this.leases.set(hex, (this.leases.get(hex) ?? 0) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const n = (this.leases.get(hex) ?? 1) - 1
      if (n <= 0) this.leases.delete(hex)
      else this.leases.set(hex, n)
    }
  }

  leased (hex: string): boolean {
    return this.leases.has(hex)
  }

  /** Every entry, least recently used first. */
  lru (): UsageEntry[] {
    return [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed).map(e => ({ ...e }))
  }
}

function key (kind: UsageEntry['kind'], hex: string): string {
  return `${kind}:${hex}`
}
