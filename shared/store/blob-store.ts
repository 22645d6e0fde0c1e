import { mkdir, readFile, rename, rm, stat, readdir, statfs } from 'node:fs/promises'
import { createReadStream } from 'node:fs'
import type { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { Digest } from '../oci/digest.js'
import { parseDigest } from '../oci/digest.js'
import { manifestFromWire, manifestToWire, type PieceManifest } from '../pieces/piece-manifest.js'
import { pieceRange } from '../pieces/piece-math.js'
import { BlobUnknownError, InvalidRangeError } from '../errors.js'
import { PartialBlob } from './partial-blob.js'
import { StoreLayout } from './layout.js'
import { writeFileAtomic } from './atomic-write.js'
import { asDiskFull } from './disk-full.js'
import { DiskQuota, type DiskQuotaInit, type EvictReason } from './disk-quota.js'
import { UsageIndex, type UsageEntry } from './usage-index.js'
import { OpenFiles } from './open-files.js'

/** Where each side reports the store's numbers (it registers its own metric names). */
export interface StoreHooks {
  /** Bytes the store's entries take, after every change. */
  usage?: (bytes: number) => void
  /** An entry was evicted: a complete blob, or a partial one no download had resumed. */
  evicted?: (event: { digest: string, kind: UsageEntry['kind'], bytes: number, reason: EvictReason }) => void
}

export interface BlobStoreInit {
  /** Root directory; the store owns everything under it. */
  dir: string
  logger: Logger
  /** Byte quota and free-space watermark; unbounded when unset (a new blob must still fit the free space). */
  quota?: DiskQuotaInit
  hooks?: StoreHooks
}

type Kind = UsageEntry['kind']

export interface CompleteBlob {
  manifest: PieceManifest
  size: number
}

/**
 * The piece and blob store both the supernode and the daemons use: partial
 * blobs written piece by piece (resumable), complete blobs by digest. One
 * PartialBlob object per digest per process, so the downloader and the piece
 * server see the same bitfield.
 *
 * Disk: every entry's size and last use are kept in a UsageIndex (recency is
 * the complete data file's mtime, so it survives a restart); a DiskQuota evicts
 * the least recently used idle entries. A partial blob being downloaded, and a
 * complete blob with a lease (an open read stream, a piece read), never go.
 */
export class BlobStore {
  readonly layout: StoreLayout
  private readonly log: Logger
  private readonly hooks: StoreHooks
  private readonly partials = new Map<string, PartialBlob>()
  private readonly opening = new Map<string, Promise<PartialBlob>>()
  private readonly manifests = new Map<string, PieceManifest>()
  private readonly index: UsageIndex
  private readonly quota: DiskQuota
  /** Removals in flight, by `kind:hex`: nothing reads or recreates such an entry until they end. */
  private readonly removing = new Map<string, Promise<void>>()
  /** New partial blobs between their reservation and their first state write: bytes still to write. */
  private readonly reserved = new Map<string, number>()
  /** Complete data files kept open between piece reads (dropped around every removal). */
  private readonly files = new OpenFiles()

  constructor (init: BlobStoreInit) {
    this.layout = new StoreLayout(init.dir)
    this.index = new UsageIndex(this.layout)
    this.log = init.logger.child({ component: 'store' })
    this.hooks = init.hooks ?? {}
    this.quota = new DiskQuota({
      usedBytes: () => this.usedBytes,
      pendingBytes: () => this.pendingBytes,
      freeBytes: async () => await this.freeBytes(),
      evictable: () => this.evictable(),
      evict: async (entry, reason) => await this.evict(entry, reason)
    }, this.log, init.quota)
  }

  /** Create the directories, learn what is on disk, get within bounds, start periodic eviction. */
  async init (): Promise<void> {
    await mkdir(this.layout.blobsDir, { recursive: true })
    await mkdir(this.layout.partialDir, { recursive: true })
    await this.index.load()
    this.reportUsage()
    await this.quota.enforce().catch((err: unknown) => { this.log.warn({ err }, 'eviction pass failed') })
    this.quota.start()
  }

  /** Bytes of the store's own entries: complete blobs, and partial ones at their full size. */
  get usedBytes (): number {
    return this.index.usedBytes
  }

  /** Bytes the open partial blobs have yet to write (their data files are sparse). */
  get pendingBytes (): number {
    let n = 0
    for (const size of this.reserved.values()) n += size
    for (const p of this.partials.values()) n += p.manifest.size - p.heldBytes
    return n
  }

  /** One eviction pass now (it also runs after each commit, when room is needed, and periodically). */
  async enforceQuota (): Promise<void> {
    await this.quota.enforce()
  }

  /**
   * Hold a complete blob against eviction (e.g. across the piece reads of one
   * response) until the returned function is called. Reads through the store
   * take their own leases.
   */
  lease (digest: Digest): () => void {
    return this.index.lease(digest.hex)
  }

  /** A complete blob's manifest and size, or undefined. */
  async getComplete (digest: Digest): Promise<CompleteBlob | undefined> {
    if (this.removing.has(`complete:${digest.hex}`)) return undefined
    const cached = this.manifests.get(digest.value)
    if (cached != null) return { manifest: cached, size: cached.size }
    let text: string
    try {
      text = await readFile(this.layout.completeManifest(digest), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    try {
      const manifest = manifestFromWire(JSON.parse(text))
      const st = await stat(this.layout.completeData(digest))
      if (manifest.digest.value !== digest.value || st.size !== manifest.size) throw new Error('size or digest mismatch')
      if (this.removing.has(`complete:${digest.hex}`)) return undefined
      this.manifests.set(digest.value, manifest)
      // committed by another store over the same directory: count it from now on
      if (this.index.get('complete', digest.hex) == null) {
        this.index.set({ hex: digest.hex, kind: 'complete', size: st.size, lastUsed: st.mtimeMs })
        this.reportUsage()
      }
      return { manifest, size: manifest.size }
    } catch (err) {
      this.log.warn({ digest: digest.value, err }, 'dropping a damaged complete blob entry')
      await this.remove(digest)
      return undefined
    }
  }

  /** Stream bytes [start, end] (inclusive) of a complete blob. */
  async createReadStream (digest: Digest, range?: { start: number, end: number }): Promise<Readable> {
    // leased before the lookup: an eviction pass cannot slip in between
    const release = this.index.lease(digest.hex)
    let stream: Readable
    try {
      const blob = await this.getComplete(digest)
      if (blob == null) throw new BlobUnknownError()
      const start = range?.start ?? 0
      const end = range?.end ?? blob.size - 1
      if (start < 0 || end >= blob.size || (start > end && blob.size > 0)) throw new InvalidRangeError()
      stream = blob.size === 0
        ? createReadStream('/dev/null')
        : createReadStream(this.layout.completeData(digest), { start, end, highWaterMark: 1 << 20 })
    } catch (err) {
      release()
      throw err
    }
    stream.once('close', release)
    this.index.use(digest)
    return stream
  }

  /** The partial blob for `digest`, resumed from disk if an earlier run left one. */
  async getPartial (digest: Digest): Promise<PartialBlob | undefined> {
    const open_ = this.partials.get(digest.value)
    if (open_ != null) return open_
    const pending = this.opening.get(digest.value)
    if (pending != null) return await pending
    await this.removing.get(`partial:${digest.hex}`)
    let text: string
    try {
      text = await readFile(this.layout.partialState(digest), 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
    // while we read, openPartial may have created (and written the state of) this
    // very entry: resuming it too would give one digest two PartialBlobs
    const raced = this.partials.get(digest.value) ?? this.opening.get(digest.value)
    if (raced != null) return await raced
    // or an eviction (or a discard) began removing it
    if (this.removing.has(`partial:${digest.hex}`)) return undefined
    const p = PartialBlob.resume(this.layout.partialData(digest), this.layout.partialState(digest), text)
    this.opening.set(digest.value, p)
    let blob: PartialBlob | undefined
    try {
      blob = await p
      if (blob.manifest.digest.value !== digest.value) throw new Error('digest mismatch')
      this.adopt(blob)
      return blob
    } catch (err) {
      await blob?.close().catch(() => {})
      this.log.warn({ digest: digest.value, err }, 'discarding an unreadable partial blob')
      this.index.delete('partial', digest.hex)
      this.reportUsage()
      await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
      return undefined
    } finally {
      this.opening.delete(digest.value)
    }
  }

  /** Resume the partial blob for the manifest's digest, or start a new one. */
  async openPartial (manifest: PieceManifest): Promise<PartialBlob> {
    const existing = await this.getPartial(manifest.digest)
    if (existing != null) {
      if (existing.manifest.size === manifest.size && existing.manifest.pieceSize === manifest.pieceSize) {
        manifest.pieces.forEach((h, i) => { if (h != null) existing.setPieceHash(i, h) })
        return existing
      }
      await this.discardPartial(manifest.digest)
    }
    const pending = this.opening.get(manifest.digest.value)
    if (pending != null) return await pending
    const digest = manifest.digest
    const p = (async () => {
      // counted before asking for room, so concurrent new blobs see each other
      this.index.set({ hex: digest.hex, kind: 'partial', size: manifest.size, lastUsed: Date.now() })
      this.reserved.set(digest.hex, manifest.size)
      this.reportUsage()
      try {
        await this.quota.reserve()
        await mkdir(this.layout.partialEntry(digest), { recursive: true })
        const blob = await PartialBlob.create(manifest, this.layout.partialData(digest), this.layout.partialState(digest))
        this.adopt(blob)
        return blob
      } catch (err) {
        this.index.delete('partial', digest.hex)
        this.reportUsage()
        await rm(this.layout.partialEntry(digest), { recursive: true, force: true }).catch(() => {})
        throw asDiskFull(err, 'starting a blob')
      } finally {
        this.reserved.delete(digest.hex)
      }
    })()
    this.opening.set(digest.value, p)
    try {
      return await p
    } finally {
      this.opening.delete(digest.value)
    }
  }

  /**
   * Move a fully held partial blob into the complete store. Unless the caller
   * vouches for the bytes (`verified`: it hashed them in order, or every piece
   * matched a hash of the checked blob) and no piece was found rotten since, the
   * whole file is hashed; a mismatch discards the entry and throws DigestMismatchError.
   */
  async commit (blob: PartialBlob, options: { verified?: boolean } = {}): Promise<void> {
    const digest = blob.manifest.digest
    // a failed blob was discarded already
    if (blob.failure != null) throw blob.failure
    // a premature commit is the caller's mistake, not bad bytes: keep the pieces held so far
    if (!blob.complete) throw new Error(`blob ${digest.value} is missing pieces`)
    let moved = false
    try {
      await this.removing.get(`complete:${digest.hex}`)
      if (options.verified !== true || blob.suspect) await blob.verify()
      // the data on disk before its manifest makes the entry complete; the partial's state is not saved again
      await blob.seal()
      // The partial stays readable (its open handle survives the rename) until
      // the complete entry exists, so a piece reader never finds neither. The
      // manifest is written last: it is what makes the entry complete, and
      // getComplete drops an entry whose manifest has no data beside it.
      await mkdir(this.layout.completeDir(digest), { recursive: true })
      await rename(this.layout.partialData(digest), this.layout.completeData(digest))
      moved = true
      // a handle kept on a file this one replaced must not serve it
      this.files.drop(this.layout.completeData(digest))
      await writeFileAtomic(this.layout.completeManifest(digest), JSON.stringify(manifestToWire(blob.manifest)))
      this.manifests.set(digest.value, blob.manifest)
    } catch (err) {
      await this.discardPartial(digest)
      if (moved) await this.remove(digest)
      throw asDiskFull(err, 'committing a blob')
    }
    this.partials.delete(digest.value)
    this.index.delete('partial', digest.hex)
    this.index.set({ hex: digest.hex, kind: 'complete', size: blob.manifest.size, lastUsed: Date.now() })
    this.index.use(digest)
    this.reportUsage()
    await this.removal('partial', digest, async () => {
      await blob.close()
      await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
    })
    this.quota.schedule()
  }

  /** A piece of this partial blob (if one is open) read back wrong: its commit hashes the whole file. */
  distrustPartial (digest: Digest): void {
    this.partials.get(digest.value)?.distrust()
  }

  async discardPartial (digest: Digest): Promise<void> {
    const blob = this.partials.get(digest.value)
    this.partials.delete(digest.value)
    this.index.delete('partial', digest.hex)
    this.reportUsage()
    await this.removal('partial', digest, async () => {
      if (blob != null) await blob.close().catch(() => {})
      await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
    })
  }

  /** Bytes of one piece from a complete or a partial blob, or undefined when not held. */
  async readPiece (digest: Digest, index: number): Promise<Uint8Array | undefined> {
    const partial = this.partials.get(digest.value)
    if (partial != null) {
      try {
        const bytes = await partial.readPiece(index)
        if (bytes != null) return bytes
      } catch (err) {
        // the entry may have just been committed: fall through to the complete blob
        this.log.debug({ digest: digest.value, index, err }, 'partial read failed')
      }
    }
    const release = this.index.lease(digest.hex)
    try {
      const complete = await this.getComplete(digest)
      if (complete == null || index < 0 || index >= complete.manifest.pieces.length) return undefined
      const { start, end } = pieceRange(complete.size, complete.manifest.pieceSize, index)
      const bytes = await this.files.use(this.layout.completeData(digest), async (fh) => {
        const buf = Buffer.allocUnsafe(end - start)
        let read = 0
        while (read < buf.byteLength) {
          const { bytesRead } = await fh.read(buf, read, buf.byteLength - read, start + read)
          if (bytesRead === 0) return undefined
          read += bytesRead
        }
        return buf
      })
      if (bytes != null) this.index.use(digest)
      return bytes
    } finally {
      release()
    }
  }

  /** Whether piece `index` of the blob is held (in a partial or a complete blob), without reading it. */
  async holdsPiece (digest: Digest, index: number): Promise<boolean> {
    const partial = this.partials.get(digest.value)
    if (partial?.bitfield.has(index) === true) return true
    const complete = await this.getComplete(digest)
    return complete != null && Number.isInteger(index) && index >= 0 && index < complete.manifest.pieces.length
  }

  /** The manifest of a blob held in part or whole. */
  async getManifest (digest: Digest): Promise<PieceManifest | undefined> {
    return this.partials.get(digest.value)?.manifest ?? (await this.getComplete(digest))?.manifest
  }

  async remove (digest: Digest): Promise<void> {
    this.manifests.delete(digest.value)
    this.index.delete('complete', digest.hex)
    this.reportUsage()
    await this.removal('complete', digest, async () => { await this.removeComplete(digest) })
  }

  /** Digests of every complete blob on disk. */
  async listComplete (): Promise<Digest[]> {
    const names = await readdir(this.layout.blobsDir).catch(() => [] as string[])
    const out: Digest[] = []
    for (const n of names) {
      try { out.push(parseDigest(`sha256:${n}`)) } catch { /* not ours */ }
    }
    return out
  }

  async close (): Promise<void> {
    await this.quota.stop()
    this.files.closeAll()
    for (const blob of this.partials.values()) await blob.close().catch(() => {})
    this.partials.clear()
    await this.index.settle()
  }

  /** Take a partial blob as this digest's one PartialBlob; a failure (full disk) discards it. */
  private adopt (blob: PartialBlob): void {
    const digest = blob.manifest.digest
    this.partials.set(digest.value, blob)
    this.index.set({ hex: digest.hex, kind: 'partial', size: blob.manifest.size, lastUsed: Date.now() })
    this.reportUsage()
    blob.onFailure = (err) => {
      this.log.warn({ digest: digest.value, err: { name: err.name, message: err.message } }, 'partial blob failed; discarding it')
      if (this.partials.get(digest.value) !== blob) return
      this.discardPartial(digest).catch((e: unknown) => { this.log.warn({ digest: digest.value, err: e }, 'discarding a failed partial blob failed') })
    }
  }

  /** Idle entries, least recently used first: complete blobs not leased, partial ones no download holds. */
  private evictable (): UsageEntry[] {
    return this.index.lru().filter(e => !this.busy(e.kind, e.hex))
  }

  private busy (kind: Kind, hex: string): boolean {
    if (this.removing.has(`${kind}:${hex}`)) return true
    if (kind === 'complete') return this.index.leased(hex)
    const value = `sha256:${hex}`
    return this.partials.has(value) || this.opening.has(value) || this.reserved.has(hex)
  }

  private async evict (entry: UsageEntry, reason: EvictReason): Promise<boolean> {
    if (this.busy(entry.kind, entry.hex)) return false
    const digest = parseDigest(`sha256:${entry.hex}`)
    const held = this.index.delete(entry.kind, entry.hex)
    if (entry.kind === 'complete') this.manifests.delete(digest.value)
    this.reportUsage()
    try {
      await this.removal(entry.kind, digest, async () => {
        if (entry.kind === 'complete') await this.removeComplete(digest)
        else await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
      })
    } catch (err) {
      this.log.warn({ digest: digest.value, err }, 'could not evict')
      return false
    }
    const bytes = held?.size ?? entry.size
    this.log.info({ digest: digest.value, kind: entry.kind, bytes, reason, used: this.usedBytes }, 'evicted')
    this.hooks.evicted?.({ digest: digest.value, kind: entry.kind, bytes, reason })
    return true
  }

  /**
   * Remove a complete entry's files. Its kept read handle is dropped before and again after:
   * a piece read that had looked the entry up just before may open the file in between.
   */
  private async removeComplete (digest: Digest): Promise<void> {
    const data = this.layout.completeData(digest)
    this.files.drop(data)
    try {
      await rm(this.layout.completeDir(digest), { recursive: true, force: true })
    } finally {
      this.files.drop(data)
    }
  }

  /** Run a removal of an entry; readers and creators of that entry wait for it or look past it. */
  private async removal (kind: Kind, digest: Digest, remove: () => Promise<void>): Promise<void> {
    const key = `${kind}:${digest.hex}`
    const p = remove()
    const settled = p.catch(() => {})
    this.removing.set(key, settled)
    try {
      await p
    } finally {
      if (this.removing.get(key) === settled) this.removing.delete(key)
    }
  }

  private async freeBytes (): Promise<number | undefined> {
    try {
      const st = await statfs(this.layout.root)
      return st.bavail * st.bsize
    } catch {
      return undefined
    }
  }

  private reportUsage (): void {
    this.hooks.usage?.(this.index.usedBytes)
  }
}
