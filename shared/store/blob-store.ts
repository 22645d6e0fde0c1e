import { mkdir, readFile, rename, rm, stat, open, readdir } from 'node:fs/promises'
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

export interface BlobStoreInit {
  /** Root directory; the store owns everything under it. */
  dir: string
  logger: Logger
}

export interface CompleteBlob {
  manifest: PieceManifest
  size: number
}

/**
 * The piece and blob store both the supernode and the daemons use: partial
 * blobs written piece by piece (resumable), complete blobs by digest. One
 * PartialBlob object per digest per process, so the downloader and the piece
 * server see the same bitfield.
 */
export class BlobStore {
  readonly layout: StoreLayout
  private readonly log: Logger
  private readonly partials = new Map<string, PartialBlob>()
  private readonly opening = new Map<string, Promise<PartialBlob>>()
  private readonly manifests = new Map<string, PieceManifest>()

  constructor (init: BlobStoreInit) {
    this.layout = new StoreLayout(init.dir)
    this.log = init.logger.child({ component: 'store' })
  }

  async init (): Promise<void> {
    await mkdir(this.layout.blobsDir, { recursive: true })
    await mkdir(this.layout.partialDir, { recursive: true })
  }

  /** A complete blob's manifest and size, or undefined. */
  async getComplete (digest: Digest): Promise<CompleteBlob | undefined> {
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
      this.manifests.set(digest.value, manifest)
      return { manifest, size: manifest.size }
    } catch (err) {
      this.log.warn({ digest: digest.value, err }, 'dropping a damaged complete blob entry')
      await this.remove(digest)
      return undefined
    }
  }

  /** Stream bytes [start, end] (inclusive) of a complete blob. */
  async createReadStream (digest: Digest, range?: { start: number, end: number }): Promise<Readable> {
    const blob = await this.getComplete(digest)
    if (blob == null) throw new BlobUnknownError()
    const start = range?.start ?? 0
    const end = range?.end ?? blob.size - 1
    if (start < 0 || end >= blob.size || (start > end && blob.size > 0)) throw new InvalidRangeError()
    if (blob.size === 0) return createReadStream('/dev/null')
    return createReadStream(this.layout.completeData(digest), { start, end, highWaterMark: 1 << 20 })
  }

  /** The partial blob for `digest`, resumed from disk if an earlier run left one. */
  async getPartial (digest: Digest): Promise<PartialBlob | undefined> {
    const open_ = this.partials.get(digest.value)
    if (open_ != null) return open_
    const pending = this.opening.get(digest.value)
    if (pending != null) return await pending
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
    const p = PartialBlob.resume(this.layout.partialData(digest), this.layout.partialState(digest), text)
    this.opening.set(digest.value, p)
    try {
      const blob = await p
      if (blob.manifest.digest.value !== digest.value) throw new Error('digest mismatch')
      this.partials.set(digest.value, blob)
      return blob
    } catch (err) {
      this.log.warn({ digest: digest.value, err }, 'discarding an unreadable partial blob')
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
    const p = (async () => {
      await mkdir(this.layout.partialEntry(manifest.digest), { recursive: true })
      return await PartialBlob.create(manifest, this.layout.partialData(manifest.digest), this.layout.partialState(manifest.digest))
    })()
    this.opening.set(manifest.digest.value, p)
    try {
      const blob = await p
      this.partials.set(manifest.digest.value, blob)
      return blob
    } finally {
      this.opening.delete(manifest.digest.value)
    }
  }

  /**
   * Move a fully held partial blob into the complete store. Unless the caller
   * already hashed the bytes in order (`verified`), the whole file is hashed;
   * a mismatch discards the entry and throws DigestMismatchError.
   */
  async commit (blob: PartialBlob, options: { verified?: boolean } = {}): Promise<void> {
    const digest = blob.manifest.digest
    // a premature commit is the caller's mistake, not bad bytes: keep the pieces held so far
    if (!blob.complete) throw new Error(`blob ${digest.value} is missing pieces`)
    let moved = false
    try {
      if (options.verified !== true) await blob.verify()
      await blob.flush()
      // The partial stays readable (its open handle survives the rename) until
      // the complete entry exists, so a piece reader never finds neither. The
      // manifest is written last: it is what makes the entry complete, and
      // getComplete drops an entry whose manifest has no data beside it.
      await mkdir(this.layout.completeDir(digest), { recursive: true })
      await rename(this.layout.partialData(digest), this.layout.completeData(digest))
      moved = true
      await writeFileAtomic(this.layout.completeManifest(digest), JSON.stringify(manifestToWire(blob.manifest)))
      this.manifests.set(digest.value, blob.manifest)
    } catch (err) {
      await this.discardPartial(digest)
      if (moved) await this.remove(digest)
      throw err
    }
    this.partials.delete(digest.value)
    await blob.close()
    await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
  }

  async discardPartial (digest: Digest): Promise<void> {
    const blob = this.partials.get(digest.value)
    this.partials.delete(digest.value)
    if (blob != null) await blob.close().catch(() => {})
    await rm(this.layout.partialEntry(digest), { recursive: true, force: true })
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
    const complete = await this.getComplete(digest)
    if (complete == null || index < 0 || index >= complete.manifest.pieces.length) return undefined
    const { start, end } = pieceRange(complete.size, complete.manifest.pieceSize, index)
    const fh = await open(this.layout.completeData(digest), 'r')
    try {
      const buf = Buffer.allocUnsafe(end - start)
      let read = 0
      while (read < buf.byteLength) {
        const { bytesRead } = await fh.read(buf, read, buf.byteLength - read, start + read)
        if (bytesRead === 0) return undefined
        read += bytesRead
      }
      return buf
    } finally {
      await fh.close()
    }
  }

  /** The manifest of a blob held in part or whole. */
  async getManifest (digest: Digest): Promise<PieceManifest | undefined> {
    return this.partials.get(digest.value)?.manifest ?? (await this.getComplete(digest))?.manifest
  }

  async remove (digest: Digest): Promise<void> {
    this.manifests.delete(digest.value)
    await rm(this.layout.completeDir(digest), { recursive: true, force: true })
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
    for (const blob of this.partials.values()) await blob.close().catch(() => {})
    this.partials.clear()
  }
}
