import type { Logger } from 'pino'
import type { Digest } from '../../shared/oci/digest.js'
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import type { BlobResult, Credentials, GetBlobOptions } from '../../shared/oci/registry-types.js'
import type { BlobStore } from '../../shared/store/blob-store.js'
import type { PartialBlob } from '../../shared/store/partial-blob.js'
import { newManifest } from '../../shared/pieces/piece-manifest.js'
import { pieceCount, pieceLength, pieceSizeFor } from '../../shared/pieces/piece-math.js'
import { sha256Hex } from '../../shared/oci/digest.js'
import { DamselflyError, UnavailableError, UpstreamError } from '../../shared/errors.js'
import type { SupernodeMetrics } from '../metrics.js'
import { FetchTask } from './fetch-task.js'
import type { UrlClient } from '../../shared/http/url-origin.js'

/** What the fetcher needs of a registry client (RegistryClient satisfies it). */
export interface OriginClient {
  getBlob: (endpoint: RegistryEndpoint, repository: string, digest: string, options: GetBlobOptions) => Promise<BlobResult>
}

export interface OriginRequest {
  /** Registry name as clients know it: docker.io, 127.0.0.1:5000. */
  registry: string
  repository: string
  digest: Digest
  /** Used against the origin; never logged. */
  credentials: Credentials
  /** dfget: the blob is this HTTP(S) file, fetched with a plain GET and checked against `digest`. */
  url?: string
}

export interface OriginFetcherComponents {
  store: Pick<BlobStore, 'getComplete' | 'openPartial' | 'commit' | 'discardPartial'>
  client: OriginClient
  /** Registry name → where its API lives (configured endpoints, insecure registries). */
  resolveEndpoint: (registry: string) => RegistryEndpoint
  logger: Logger
  metrics: Pick<SupernodeMetrics, 'originBytes' | 'originFetches'>
  /** Where files named by URL come from (dfget); absent: URL requests are refused. */
  urls?: Pick<UrlClient, 'get'>
}

interface Flight {
  /** Resolves once the origin answered and the piece manifest is known. */
  task: Promise<FetchTask>
  /** Who started it: a joiner with other credentials may not share its refusal. */
  who: string
  /** Settles when the fetch has finished either way. */
  settled: Promise<void>
}

/** Errors that depend on who asked; a joiner with other credentials retries on its own. */
const PER_REQUESTER = new Set(['UnauthorizedError', 'DeniedError', 'NameUnknownError', 'BlobUnknownError'])

/**
 * Fetches each blob from its origin once, however many ask at the same time
 * (single flight by digest), cutting it into pieces as the bytes arrive: each
 * piece is hashed and written to the store the moment it is complete, so it
 * can be served before the rest of the blob has arrived. A blob already
 * complete in the store is answered without contacting the origin.
 */
export class OriginFetcher {
  private readonly components: OriginFetcherComponents
  private readonly log: Logger
  private readonly flights = new Map<string, Flight>()
  private readonly abort = new AbortController()

  constructor (components: OriginFetcherComponents) {
    this.components = components
    this.log = components.logger.child({ component: 'origin' })
  }

  /**
   * The task for `req.digest`: a finished one when the store holds the blob,
   * else the running fetch (joined or started). Resolves once the piece
   * manifest is known; rejects with the origin's typed error (an
   * UnauthorizedError carries the origin's challenge).
   */
  async ensure (req: OriginRequest): Promise<FetchTask> {
    if (this.abort.signal.aborted) throw new UnavailableError('supernode is stopping')
    const who = identity(req)
    const joined = this.flights.get(req.digest.value)
    if (joined != null) return await this.join(joined, req, who)
    const complete = await this.components.store.getComplete(req.digest)
    if (complete != null) return FetchTask.completed(complete.manifest)
    // another request may have started the fetch while the store was asked
    const raced = this.flights.get(req.digest.value)
    if (raced != null) return await this.join(raced, req, who)
    return await this.begin(req, who).task
  }

  /** Digests being fetched from an origin now (for the operator API). */
  running (): string[] {
    return [...this.flights.keys()]
  }

  /** Abort every running fetch and wait until they have cleaned up. */
  async stop (): Promise<void> {
    this.abort.abort(new UnavailableError('supernode is stopping'))
    await Promise.all([...this.flights.values()].map(async f => { await f.settled }))
  }

  private async join (flight: Flight, req: OriginRequest, who: string): Promise<FetchTask> {
    try {
      return await flight.task
    } catch (err) {
      if (who === flight.who || !PER_REQUESTER.has((err as Error).name)) throw err
    }
    // the starter was refused; this requester may be allowed: ask on its own behalf
    const current = this.flights.get(req.digest.value)
    if (current != null && current !== flight) return await this.join(current, req, who)
    const complete = await this.components.store.getComplete(req.digest)
    if (complete != null) return FetchTask.completed(complete.manifest)
    return await this.begin(req, who).task
  }

  private begin (req: OriginRequest, who: string): Flight {
    let settle!: () => void
    const settled = new Promise<void>(resolve => { settle = resolve })
    const task = this.open(req, settle)
    const flight: Flight = { task, who, settled }
    this.flights.set(req.digest.value, flight)
    void settled.then(() => {
      if (this.flights.get(req.digest.value) === flight) this.flights.delete(req.digest.value)
    })
    return flight
  }

  /** Ask the origin, learn the size, open the partial blob; the body streams on in the background. */
  private async open (req: OriginRequest, settle: () => void): Promise<FetchTask> {
    const digest = req.digest.value
    let res: BlobResult
    let partial: PartialBlob
    try {
      if (req.url != null) {
        if (this.components.urls == null) throw new UnavailableError('this supernode does not fetch URLs')
        res = await this.components.urls.get(req.url, { verify: req.digest, signal: this.abort.signal })
      } else {
        const endpoint = this.components.resolveEndpoint(req.registry)
        res = await this.components.client.getBlob(endpoint, req.repository, digest, {
          credentials: req.credentials,
          verify: true,
          signal: this.abort.signal
        })
      }
      try {
        const size = res.size ?? res.length
        if (size === undefined || res.start !== 0) throw new UpstreamError('origin did not say how big the blob is')
        partial = await this.components.store.openPartial(newManifest(req.digest, size, pieceSizeFor(size)))
      } catch (err) {
        res.cancel()
        throw err
      }
    } catch (err) {
      this.failed(digest, err)
      settle()
      throw err
    }
    // the store's manifest: a partial resumed from an earlier run already knows some pieces
    const task = new FetchTask(partial.manifest)
    this.log.info({ digest, registry: req.registry, repository: req.repository, size: partial.manifest.size }, 'fetching blob from origin')
    void this.stream(res, partial, task).finally(settle)
    return task
  }

  private async stream (res: BlobResult, partial: PartialBlob, task: FetchTask): Promise<void> {
    const { manifest } = partial
    const digest = manifest.digest.value
    try {
      const count = pieceCount(manifest.size, manifest.pieceSize)
      // one piece in memory at a time; written before the next chunk is read
      const buf = Buffer.allocUnsafe(Math.min(manifest.pieceSize, Math.max(manifest.size, 1)))
      let index = 0
      let filled = 0
      let want = count > 0 ? pieceLength(manifest.size, manifest.pieceSize, 0) : 0
      for await (const chunk of res.body) {
        this.abort.signal.throwIfAborted()
        this.components.metrics.originBytes.inc(chunk.byteLength)
        let off = 0
        while (off < chunk.byteLength) {
          if (index >= count) throw new UpstreamError('origin sent more bytes than the blob size')
          const n = Math.min(chunk.byteLength - off, want - filled)
          buf.set(chunk.subarray(off, off + n), filled)
          filled += n
          off += n
          if (filled === want) {
            const bytes = buf.subarray(0, want)
            const hash = sha256Hex(bytes)
            await partial.writePiece(index, bytes, hash)
            task.pieceComplete(index, hash)
            this.log.trace({ index }, 'piece from origin')
            index++
            filled = 0
            want = index < count ? pieceLength(manifest.size, manifest.pieceSize, index) : 0
          }
        }
      }
      if (index !== count) throw new UpstreamError(`origin body ended after ${index} of ${count} pieces`)
      // the client hashed the body while it streamed and threw on a mismatch
      await this.components.store.commit(partial, { verified: true })
      this.components.metrics.originFetches.inc({ result: 'ok' })
      this.log.info({ digest, size: manifest.size }, 'blob fetched from origin')
      task.finish()
    } catch (err) {
      res.cancel()
      await this.components.store.discardPartial(manifest.digest).catch(() => {})
      this.failed(digest, err)
      task.fail(err as Error)
    }
  }

  private failed (digest: string, err: unknown): void {
    const result = err instanceof DamselflyError ? err.code.toLowerCase() : 'error'
    this.components.metrics.originFetches.inc({ result })
    this.log.warn({ digest, err: { name: (err as Error).name, message: (err as Error).message } }, 'origin fetch failed')
  }
}

/** Who is asking, for deciding whether a refusal applies to a joiner; kept in memory only. */
function identity (req: OriginRequest): string {
  const c = req.credentials
  const cred = c.kind === 'anonymous' ? '' : c.kind === 'basic' ? `${c.username}:${c.password}` : c.kind === 'identity-token' ? c.token : c.header
  return JSON.stringify([req.registry, req.repository, c.kind, cred, req.url ?? ''])
}
