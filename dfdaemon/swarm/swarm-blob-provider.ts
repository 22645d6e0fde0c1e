import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import type { BlobStore } from '../../shared/store/blob-store.js'
import { pieceAt, pieceRange } from '../../shared/pieces/piece-math.js'
import { InvalidRangeError, ProtocolError } from '../../shared/errors.js'
import type { BlobProvider, BlobRequest, ByteRange } from '../blob-provider.js'
import type { DaemonMetrics } from '../metrics.js'
import type { BlobDownload } from './blob-download.js'

export interface SwarmBlobProviderComponents {
  store: BlobStore
  metrics: DaemonMetrics
  logger: Logger
  /** Create (not start) the download of a blob. */
  newDownload: (req: BlobRequest) => BlobDownload
}

/**
 * Blobs for the mirror: from the local store when complete, otherwise from the
 * one download of that blob on this host (concurrent clients join it), streamed
 * piece by piece in order as pieces arrive.
 */
export class SwarmBlobProvider implements BlobProvider {
  private readonly components: SwarmBlobProviderComponents
  private readonly downloads = new Map<string, BlobDownload>()
  private readonly log: Logger

  constructor (components: SwarmBlobProviderComponents) {
    this.components = components
    this.log = components.logger.child({ component: 'blobs' })
  }

  async stat (req: BlobRequest): Promise<{ size: number }> {
    const local = await this.components.store.getComplete(req.digest)
    if (local != null) return { size: local.size }
    const manifest = await this.download(req).ready
    return { size: manifest.size }
  }

  async open (req: BlobRequest, range?: ByteRange): Promise<{ size: number, body: Readable }> {
    const local = await this.components.store.getComplete(req.digest)
    if (local != null) {
      this.components.metrics.localHits.inc()
      return { size: local.size, body: await this.components.store.createReadStream(req.digest, range) }
    }
    const dl = this.download(req)
    const manifest = await dl.ready
    const start = range?.start ?? 0
    const end = range?.end ?? manifest.size - 1
    if (manifest.size > 0 && (start < 0 || end >= manifest.size || start > end)) throw new InvalidRangeError()
    const store = this.components.store
    const abort = new AbortController()
    async function * pieces (): AsyncGenerator<Uint8Array> {
      if (manifest.size === 0) return
      for (let i = pieceAt(manifest.pieceSize, start); i <= pieceAt(manifest.pieceSize, end); i++) {
        await dl.waitPiece(i, abort.signal)
        const bytes = await store.readPiece(req.digest, i)
        if (bytes == null) throw new ProtocolError(`piece ${i} vanished from the store`)
        const r = pieceRange(manifest.size, manifest.pieceSize, i)
        yield bytes.subarray(Math.max(start, r.start) - r.start, Math.min(end + 1, r.end) - r.start)
      }
    }
    const body = Readable.from(pieces(), { objectMode: false, highWaterMark: 1 })
    body.once('close', () => { abort.abort(new Error('client went away')) })
    return { size: manifest.size, body }
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
