import { randomUUID } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Logger } from 'pino'
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { parseDigest } from '../../shared/oci/digest.js'
import { TooManyRequestsError, UnavailableError } from '../../shared/errors.js'
import { pieceLength } from '../../shared/pieces/piece-math.js'
import type { OriginFetcher } from '../origin/origin-fetcher.js'
import { resolveImageBlobs, type ManifestClient } from './image-blobs.js'
import { PreheatJob, type LayerProgress, type PreheatRequest } from './preheat-job.js'
import { PreheatJobUnknownError } from './errors.js'
import type { RegistryAllowlist } from '../../shared/security/registry-allowlist.js'

export const DEFAULT_MAX_JOBS = 1000
export const DEFAULT_CONCURRENT_JOBS = 2
export const DEFAULT_BLOBS_PER_JOB = 4

export interface PreheatManagerComponents {
  fetcher: Pick<OriginFetcher, 'ensure'>
  client: ManifestClient
  resolveEndpoint: (registry: string) => RegistryEndpoint
  /** The registries blobs are fetched from (--allow-registry); absent: any. */
  registries?: Pick<RegistryAllowlist, 'check'>
  logger: Logger
}

export interface PreheatManagerInit {
  /** Recent jobs remembered (least recently used forgotten first); also the bound on queued jobs. */
  maxJobs?: number
  /** Jobs running at once; the rest wait in PENDING. */
  concurrentJobs?: number
  /** Blobs of one job fetched at once. */
  blobsPerJob?: number
}

/**
 * Runs preheat jobs: resolve the image, then have the OriginFetcher fetch every
 * config and layer blob into the store (single flight: a daemon asking for the
 * same blob meanwhile joins the fetch, and asks no origin afterwards). Jobs live
 * in memory, a bounded number of recent ones, a bounded number running.
 */
export class PreheatManager {
  private readonly components: PreheatManagerComponents
  private readonly log: Logger
  private readonly jobs: LRUCache<string, PreheatJob>
  private readonly bySeq = new Map<number, string>()
  private readonly queue: PreheatJob[] = []
  private readonly running = new Set<Promise<void>>()
  private readonly abort = new AbortController()
  private readonly maxJobs: number
  private readonly concurrentJobs: number
  private readonly blobsPerJob: number
  private seq = 0

  constructor (components: PreheatManagerComponents, init: PreheatManagerInit = {}) {
    this.components = components
    this.log = components.logger.child({ component: 'preheat' })
    this.maxJobs = init.maxJobs ?? DEFAULT_MAX_JOBS
    this.concurrentJobs = init.concurrentJobs ?? DEFAULT_CONCURRENT_JOBS
    this.blobsPerJob = init.blobsPerJob ?? DEFAULT_BLOBS_PER_JOB
    this.jobs = new LRUCache({
      max: this.maxJobs,
      dispose: (job) => { this.bySeq.delete(job.seq) }
    })
  }

  /**
   * Queue a preheat; throws TooManyRequestsError when maxJobs are already waiting,
   * RegistryNotAllowedError for a registry outside --allow-registry.
   */
  submit (request: PreheatRequest): PreheatJob {
    if (this.abort.signal.aborted) throw new UnavailableError('supernode is stopping')
    this.components.registries?.check(request.registry)
    if (this.queue.length >= this.maxJobs) throw new TooManyRequestsError('too many preheat jobs waiting')
    const job = new PreheatJob(randomUUID(), ++this.seq, request)
    this.jobs.set(job.id, job)
    this.bySeq.set(job.seq, job.id)
    this.queue.push(job)
    this.log.info({ id: job.id, image: job.image, platforms: job.platforms }, 'preheat queued')
    this.pump()
    return job
  }

  /** The job by id; PreheatJobUnknownError when unknown or forgotten. */
  get (id: string): PreheatJob {
    const job = this.jobs.get(id)
    if (job === undefined) throw new PreheatJobUnknownError()
    return job
  }

  /** The job by its numeric id (Dragonfly's open API). */
  getBySeq (seq: number): PreheatJob {
    return this.get(this.bySeq.get(seq) ?? '')
  }

  /** Fail queued jobs, abort running ones and wait until they have ended. */
  async stop (): Promise<void> {
    const reason = new UnavailableError('supernode is stopping')
    this.abort.abort(reason)
    for (const job of this.queue.splice(0)) job.finish(reason)
    await Promise.all([...this.running])
  }

  private pump (): void {
    while (this.running.size < this.concurrentJobs && this.queue.length > 0) {
      const job = this.queue.shift() as PreheatJob
      const run: Promise<void> = this.run(job).finally(() => {
        this.running.delete(run)
        this.pump()
      })
      this.running.add(run)
    }
  }

  private async run (job: PreheatJob): Promise<void> {
    const req = job.request
    if (req === undefined || this.abort.signal.aborted) return
    job.start()
    try {
      const signal = this.abort.signal
      const endpoint = this.components.resolveEndpoint(req.registry)
      const blobs = await resolveImageBlobs(this.components.client, endpoint, req.repository, req.reference, { platforms: req.platforms, credentials: req.credentials, signal })
      job.setBlobs(blobs)
      const errors: Error[] = []
      let next = 0
      const worker = async (): Promise<void> => {
        while (next < job.layers.length && !signal.aborted) {
          const layer = job.layers[next++]
          await this.fetchBlob(req, layer, signal).catch((err: Error) => { errors.push(err) })
        }
      }
      await Promise.all(Array.from({ length: Math.min(this.blobsPerJob, job.layers.length) }, worker))
      signal.throwIfAborted()
      if (errors.length > 0) throw errors[0]
      job.finish()
      this.log.info({ id: job.id, image: job.image, blobs: job.layers.length }, 'preheat done')
    } catch (err) {
      job.finish(err as Error)
      this.log.warn({ id: job.id, image: job.image, err: { name: (err as Error).name, message: (err as Error).message } }, 'preheat failed')
    }
  }

  private async fetchBlob (req: PreheatRequest, layer: LayerProgress, signal: AbortSignal): Promise<void> {
    layer.state = 'RUNNING'
    try {
      const task = await this.components.fetcher.ensure({ registry: req.registry, repository: req.repository, digest: parseDigest(layer.digest), credentials: req.credentials })
      const { size, pieceSize, pieces } = task.manifest
      layer.bytes = pieces.reduce((sum, p, i) => p != null ? sum + pieceLength(size, pieceSize, i) : sum, 0)
      const unlisten = task.onPiece(({ index }) => { layer.bytes += pieceLength(size, pieceSize, index) })
      try {
        await untilAborted(task.done, signal)
      } finally {
        unlisten()
      }
      layer.bytes = size
      layer.state = 'SUCCESS'
    } catch (err) {
      layer.state = 'FAILURE'
      throw err
    }
  }
}

/** `p`, or the signal's abort reason if that comes first. */
async function untilAborted (p: Promise<void>, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted()
  let onAbort: (() => void) | undefined
  const aborted = new Promise<never>((_resolve, reject) => {
    onAbort = () => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
  })
  try {
    await Promise.race([p, aborted])
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
  }
}
