import { createWriteStream } from 'node:fs'
import { mkdir, open, rm } from 'node:fs/promises'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { Readable } from 'node:stream'
import type { Logger } from 'pino'
import { DigestHasher, sha256Hex, type Digest } from '../../shared/oci/digest.js'
import type { BlobStore } from '../../shared/store/blob-store.js'
import { newManifest } from '../../shared/pieces/piece-manifest.js'
import { pieceCount, pieceRange, pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { UnavailableError, UpstreamError } from '../../shared/errors.js'
import type { UrlClient, UrlHead } from '../../shared/http/url-origin.js'
import type { SupernodeMetrics } from '../metrics.js'

export interface UrlResolverComponents {
  urls: UrlClient
  store: Pick<BlobStore, 'getComplete' | 'openPartial' | 'commit' | 'discardPartial'>
  /** Scratch space for a file whose digest is not known yet. */
  tmpDir: string
  logger: Logger
  metrics: Pick<SupernodeMetrics, 'originBytes'>
  /** The file was fetched from its URL and verified: its bytes are public. */
  onPublic: (digest: string) => Promise<void>
}

/** Files remembered (URL → digest and validators), oldest forgotten first. */
const MAX_REMEMBERED = 1024

/**
 * dfget without a digest: the file's digest is learnt by fetching it once
 * (single flight per URL) into the store, where it is a blob like any layer.
 * A URL asked again is answered from memory when a HEAD shows the same
 * validators (ETag, or Last-Modified and size) and the blob is still stored;
 * a server that gives no validators is fetched again.
 */
export class UrlResolver {
  private readonly c: UrlResolverComponents
  private readonly log: Logger
  private readonly known = new Map<string, { digest: Digest, head: UrlHead }>()
  private readonly flights = new Map<string, Promise<Digest>>()
  private readonly abort = new AbortController()

  constructor (components: UrlResolverComponents) {
    this.c = components
    this.log = components.logger.child({ component: 'url-resolver' })
  }

  async resolve (url: string): Promise<Digest> {
    if (this.abort.signal.aborted) throw new UnavailableError('supernode is stopping')
    const running = this.flights.get(url)
    if (running != null) return await running
    const flight = this.run(url).finally(() => { this.flights.delete(url) })
    this.flights.set(url, flight)
    return await flight
  }

  async stop (): Promise<void> {
    this.abort.abort(new UnavailableError('supernode is stopping'))
    await Promise.allSettled([...this.flights.values()])
  }

  private async run (url: string): Promise<Digest> {
    const head = await this.c.urls.head(url, this.abort.signal)
    const seen = this.known.get(url)
    if (seen != null && sameFile(seen.head, head) && await this.c.store.getComplete(seen.digest) != null) return seen.digest
    const digest = await this.fetch(url, head.size)
    this.known.delete(url)
    this.known.set(url, { digest, head })
    if (this.known.size > MAX_REMEMBERED) this.known.delete(this.known.keys().next().value as string)
    return digest
  }

  /** Fetch the file to scratch while hashing it, then store it as the blob of that digest. */
  private async fetch (url: string, size: number): Promise<Digest> {
    await mkdir(this.c.tmpDir, { recursive: true })
    const tmp = join(this.c.tmpDir, randomUUID())
    this.log.info({ url: redact(url), size }, 'fetching file to learn its digest')
    try {
      const res = await this.c.urls.get(url, { signal: this.abort.signal })
      const hasher = new DigestHasher()
      const counted = async function * (this: UrlResolver): AsyncGenerator<Uint8Array> {
        for await (const chunk of res.body) {
          hasher.update(chunk)
          this.c.metrics.originBytes.inc(chunk.byteLength)
          yield chunk
        }
      }
      await pipeline(Readable.from(counted.call(this)), createWriteStream(tmp))
      if (hasher.length !== size) throw new UpstreamError(`${redact(url)}: expected ${size} bytes, got ${hasher.length}`)
      const digest = hasher.digest()
      if (await this.c.store.getComplete(digest) == null) await this.store(digest, size, tmp)
      await this.c.onPublic(digest.value)
      this.log.info({ url: redact(url), digest: digest.value, size }, 'file stored')
      return digest
    } finally {
      await rm(tmp, { force: true })
    }
  }

  private async store (digest: Digest, size: number, file: string): Promise<void> {
    const partial = await this.c.store.openPartial(newManifest(digest, size, pieceSizeFor(size)))
    const fh = await open(file, 'r')
    try {
      const { pieceSize } = partial.manifest
      for (let i = 0; i < pieceCount(size, pieceSize); i++) {
        if (partial.bitfield.has(i)) continue
        const r = pieceRange(size, pieceSize, i)
        const buf = Buffer.allocUnsafe(r.end - r.start)
        const { bytesRead } = await fh.read(buf, 0, buf.byteLength, r.start)
        if (bytesRead !== buf.byteLength) throw new UpstreamError('scratch file shorter than the file')
        await partial.writePiece(i, buf, sha256Hex(buf))
      }
      // hashed in order while it streamed
      await this.c.store.commit(partial, { verified: true })
    } catch (err) {
      await this.c.store.discardPartial(digest).catch(() => {})
      throw err
    } finally {
      await fh.close()
    }
  }
}

function sameFile (a: UrlHead, b: UrlHead): boolean {
  if (a.size !== b.size) return false
  if (a.etag != null || b.etag != null) return a.etag === b.etag && !(a.etag ?? '').startsWith('W/')
  return a.lastModified != null && a.lastModified === b.lastModified
}

/** A URL for a log line: no query string (it may carry a signature or a token). */
export function redact (url: string): string {
  try {
    const u = new URL(url)
    return `${u.origin}${u.pathname}`
  } catch {
    return '(invalid URL)'
  }
}
