import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import { pieceAt, pieceRange } from '../../shared/pieces/piece-math.js'
import type { PieceManifest } from '../../shared/pieces/piece-manifest.js'
import { DamselflyError, DiskFullError, InvalidRangeError, ProtocolError, UnavailableError } from '../../shared/errors.js'
import type { PieceSource as StoredPieces } from '../../shared/p2p/piece-protocol.js'
import type { BlobProvider, BlobRequest, ByteRange } from '../blob-provider.js'
import type { DaemonMetrics } from '../metrics.js'
import type { BlobDownload } from './blob-download.js'

export interface SwarmBlobProviderComponents {
  store: BlobStore
  /** Pieces from the store, each checked against its hash (VerifiedPieces); the store itself when absent. */
  pieces?: StoredPieces
  metrics: DaemonMetrics
  logger: Logger
  /** Create (not start) the download of a blob. */
  newDownload: (req: BlobRequest) => BlobDownload
  /**
   * Checks a client before it gets a blob this host holds or is already
   * fetching for someone else (a private blob must not pass from one client
   * to another without the origin's word); throws the refusal.
   */
  authorizeLocal?: (req: BlobRequest, signal?: AbortSignal) => Promise<void>
}

/**
 * Blobs for the mirror: from the local store when complete, otherwise from the
 * one download of that blob on this host (concurrent clients join it), streamed
 * piece by piece in order as pieces arrive. Every piece is checked against its
 * hash on its way out, local hits too (no whole-blob rehash before the first
 * byte): a stored piece that fails drops the blob, and the rest of the answer
 * comes from a fresh download. A download that fails for any reason but a
 * refusal or a full disk (507) is reported as UNAVAILABLE (503), so the client moves on.
 */
export class SwarmBlobProvider implements BlobProvider {
  private readonly components: SwarmBlobProviderComponents
  private readonly downloads = new Map<string, BlobDownload>()
  private readonly log: Logger

  constructor (components: SwarmBlobProviderComponents) {
    this.components = components
    this.log = components.logger.child({ component: 'blobs' })
  }

  async stat (req: BlobRequest, signal?: AbortSignal): Promise<{ size: number }> {
    const local = await this.components.store.getComplete(req.digest)
    if (local != null || this.active(req.digest.value) != null) await this.components.authorizeLocal?.(req, signal)
    if (local != null) return { size: local.size }
    const manifest = await this.ready(this.download(req))
    return { size: manifest.size }
  }

  async open (req: BlobRequest, range?: ByteRange, signal?: AbortSignal): Promise<{ size: number, body: Readable }> {
    const local = await this.components.store.getComplete(req.digest)
    if (local != null || this.active(req.digest.value) != null) await this.components.authorizeLocal?.(req, signal)
    let dl: BlobDownload | undefined
    let manifest: PieceManifest
    if (local != null) {
      this.components.metrics.localHits.inc()
      manifest = local.manifest
    } else {
      dl = this.download(req)
      manifest = await this.ready(dl)
    }
    const start = range?.start ?? 0
    const end = range?.end ?? manifest.size - 1
    if (manifest.size > 0 && (start < 0 || end >= manifest.size || start > end)) throw new InvalidRangeError()
    const abort = new AbortController()
    const body = Readable.from(this.pieces(req, manifest, start, end, dl, abort.signal), { objectMode: false, highWaterMark: 1 })
    body.once('close', () => { abort.abort(new Error('client went away')) })
    return { size: manifest.size, body }
  }

  /** Bytes [start, end] piece by piece, verified; from the store, or from `dl` as its pieces arrive. */
  private async * pieces (req: BlobRequest, manifest: PieceManifest, start: number, end: number, dl: BlobDownload | undefined, signal: AbortSignal): AsyncGenerator<Uint8Array> {
    if (manifest.size === 0) return
    const store = this.components.store
    // every piece is checked on its way out (a download's as it arrived, and not again while fresh)
    const verified = this.components.pieces ?? store
    for (let i = pieceAt(manifest.pieceSize, start); i <= pieceAt(manifest.pieceSize, end); i++) {
      if (dl != null) await dl.waitPiece(i, signal)
      let bytes = await verified.readPiece(req.digest, i)
      if (bytes == null && dl == null) {
        // a local hit whose piece failed its hash (the blob is dropped now) or vanished: fetch it again
        this.log.warn({ digest: req.digest.value, index: i }, 'stored blob unusable; fetching it again for the rest of the answer')
        dl = this.download(req)
        const fresh = await this.ready(dl)
        if (fresh.size !== manifest.size || fresh.pieceSize !== manifest.pieceSize) throw new ProtocolError('blob changed shape while being served')
        await dl.waitPiece(i, signal)
        bytes = await store.readPiece(req.digest, i)
      }
      if (bytes == null) throw new ProtocolError(`piece ${i} vanished from the store`)
      const r = pieceRange(manifest.size, manifest.pieceSize, i)
      yield bytes.subarray(Math.max(start, r.start) - r.start, Math.min(end + 1, r.end) - r.start)
    }
  }

  /**
   * The download's manifest; a failure other than a refusal or a full disk becomes
   * UNAVAILABLE. A full disk stays a 507, so the operator can tell it from a swarm
   * that could not deliver.
   */
  private async ready (dl: BlobDownload): Promise<PieceManifest> {
    try {
      return await dl.ready
    } catch (err) {
      if (err instanceof UnavailableError || err instanceof DiskFullError || (err instanceof DamselflyError && err.status < 500)) throw err
      throw new UnavailableError('no source could provide the blob', { cause: err })
    }
  }

  /** Whether any download is running on this host. */
  downloading (): boolean {
    return this.downloads.size > 0
  }

  /** The running download of a blob, if any. */
  active (digest: string): BlobDownload | undefined {
    const dl = this.downloads.get(digest)
    return dl?.error == null ? dl : undefined
  }

  /** The download of `req.digest` on this host, started if needed. */
  private download (req: BlobRequest): BlobDownload {
    const key = req.digest.value
    const existing = this.downloads.get(key)
    if (existing != null && existing.error == null) return existing
    const dl = this.components.newDownload(req)
    this.downloads.set(key, dl)
    const forget = (): void => { if (this.downloads.get(key) === dl) this.downloads.delete(key) }
    dl.done.then(forget, (err: Error) => {
      forget()
      this.log.debug({ digest: key, err: err.name }, 'download ended with an error')
    })
    dl.start()
    return dl
  }

  /** Cancel every download (shutdown). */
  close (): void {
    for (const dl of this.downloads.values()) dl.cancel()
    this.downloads.clear()
  }
}
