/**
 * Manifests and tags go to the upstream registry on every request, with the client's own
 * Authorization and every Accept value it sent (each as its own header line: collapsing
 * them makes the distribution registry down-convert to schema1). The upstream decides,
 * auth included, whenever it answers: a cached manifest is served only when it cannot
 * (connection refused, timeout, 5xx) — by digest, or for a tag its last known digest
 * with a warning. Only 200 answers are cached, never a 401 or a 404.
 */
import { Readable } from 'node:stream'
import { TimeoutError, UpstreamError } from '../../shared/errors.js'
import { digestOf, isDigest } from '../../shared/oci/digest.js'
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { headerValue, readCapped, wrapTransportError } from '../../shared/oci/registry-errors.js'
import type { Credentials, RegistryResponse, RequestOptions } from '../../shared/oci/registry-types.js'
import type { Logger } from '../../shared/logging.js'
import type { ManifestCache } from './manifest-cache.js'

/** The slice of the RegistryClient the proxy uses. */
export interface UpstreamRequester {
  request: (endpoint: RegistryEndpoint, path: string, options?: RequestOptions) => Promise<RegistryResponse>
}

export interface ManifestFetchRequest {
  endpoint: RegistryEndpoint
  repository: string
  /** A tag or a digest, already validated. */
  reference: string
  method: 'GET' | 'HEAD'
  /** Every Accept header value the client sent, one entry per header line, in order. */
  accept: string[]
  /** The client's Authorization header, forwarded unchanged; anonymous when absent. */
  authorization?: string
  /** Aborted when the client goes away. */
  signal?: AbortSignal
}

export interface ManifestFetchResult {
  /** The upstream's status, passed back as is (200, 401, 404, ...). */
  status: number
  /** Only the headers a client needs (lowercased): content-type, docker-content-digest, content-length, etag, www-authenticate on 401. */
  headers: Record<string, string>
  /** The upstream body for GET (consume or destroy it); undefined for HEAD. */
  body: Readable | undefined
  /** The same body's bytes, when it was read whole (a 200 the cache keeps, or the cache's own answer). */
  bytes?: Buffer
}

/** What the mirror app needs from a manifest source; ManifestProxy is the real one. */
export interface ManifestSource {
  fetch: (req: ManifestFetchRequest) => Promise<ManifestFetchResult>
}

export interface ManifestProxyComponents {
  client: UpstreamRequester
  logger?: Logger
  /** Manifests kept for when the upstream is unreachable; none when absent. */
  cache?: ManifestCache
}

export interface ManifestProxyInit {
  /** Deadline for the upstream's response headers (token dance and redirects included). */
  headersTimeoutMs?: number
  /** Deadline for the whole body once headers are in. */
  bodyTimeoutMs?: number
  /** Manifests larger than this are refused (distribution's own limit is 4 MiB). */
  maxManifestBytes?: number
}

export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000
export const DEFAULT_BODY_TIMEOUT_MS = 60_000
export const DEFAULT_MAX_MANIFEST_BYTES = 4 * 1024 * 1024

const PASSED_HEADERS = ['content-type', 'docker-content-digest', 'content-length', 'etag'] as const

export class ManifestProxy implements ManifestSource {
  private readonly client: UpstreamRequester
  private readonly cache: ManifestCache | undefined
  private readonly log: Logger | undefined
  private readonly headersTimeoutMs: number
  private readonly bodyTimeoutMs: number
  private readonly maxManifestBytes: number

  constructor (components: ManifestProxyComponents, init: ManifestProxyInit = {}) {
    this.client = components.client
    this.cache = components.cache
    this.log = components.logger?.child({ component: 'manifest-proxy' })
    this.headersTimeoutMs = init.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS
    this.bodyTimeoutMs = init.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS
    this.maxManifestBytes = init.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES
  }

  async fetch (req: ManifestFetchRequest): Promise<ManifestFetchResult> {
    let result: ManifestFetchResult
    try {
      result = await this.fromUpstream(req)
    } catch (err) {
      if (req.signal?.aborted === true || !(err instanceof UpstreamError || err instanceof TimeoutError)) throw err
      const cached = await this.fromCache(req, (err as Error).message)
      if (cached === undefined) throw err
      return cached
    }
    if (result.status >= 500) {
      const cached = await this.fromCache(req, `upstream answered ${result.status}`)
      if (cached !== undefined) {
        result.body?.destroy()
        return cached
      }
    }
    return result
  }

  private async fromUpstream (req: ManifestFetchRequest): Promise<ManifestFetchResult> {
    const what = `manifest ${req.endpoint.name}/${req.repository}:${req.reference}`
    const controller = new AbortController()
    const onClientAbort = (): void => { controller.abort(req.signal?.reason) }
    if (req.signal?.aborted === true) onClientAbort()
    req.signal?.addEventListener('abort', onClientAbort, { once: true })
    let timer = deadline(controller, this.headersTimeoutMs, `${what}: no response headers`)
    const release = (): void => {
      clearTimeout(timer)
      req.signal?.removeEventListener('abort', onClientAbort)
    }

    const credentials: Credentials = req.authorization !== undefined && req.authorization !== ''
      ? { kind: 'authorization', header: req.authorization }
      : { kind: 'anonymous' }
    let res: RegistryResponse
    try {
      res = await this.client.request(req.endpoint, `/v2/${req.repository}/manifests/${req.reference}`, {
        method: req.method,
        headers: req.accept.length > 0 ? { accept: [...req.accept] } : {},
        credentials,
        signal: controller.signal
      })
    } catch (err) {
      release()
      throw wrapTransportError(controller.signal.reason instanceof TimeoutError ? controller.signal.reason : err, what, req.signal)
    }

    const headers = pickHeaders(res)
    const length = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined
    if (length !== undefined && length > this.maxManifestBytes) {
      release()
      res.body.destroy()
      throw new UpstreamError(`${what}: manifest of ${length} bytes exceeds ${this.maxManifestBytes}`, res.status)
    }
    this.log?.debug({ registry: req.endpoint.name, repository: req.repository, reference: req.reference, status: res.status }, 'manifest from upstream')

    if (req.method === 'HEAD') {
      release()
      await res.body.dump().catch(() => undefined)
      const announced = headers['docker-content-digest']
      if (res.status === 200 && announced !== undefined && !isDigest(req.reference)) this.cache?.setTag(req.endpoint.name, req.repository, req.reference, announced)
      return { status: res.status, headers, body: undefined }
    }
    clearTimeout(timer)
    if (this.cache !== undefined && res.status === 200) {
      // small and bounded: read it whole, keep it, hand the client the same bytes
      timer = deadline(controller, this.bodyTimeoutMs, `${what}: body not received in time`)
      let body: Buffer
      try {
        body = await readCapped(res.body, this.maxManifestBytes, what)
      } catch (err) {
        throw wrapTransportError(controller.signal.reason instanceof TimeoutError ? controller.signal.reason : err, what, req.signal)
      } finally {
        release()
      }
      await this.keep(req, headers, body)
      return { status: res.status, headers, body: Readable.from([body]), bytes: body }
    }
    timer = deadline(controller, this.bodyTimeoutMs, `${what}: body not received in time`)
    res.body.once('close', release)
    return { status: res.status, headers, body: res.body }
  }

  /** Cache a 200 answer when its bytes are what it claims to be (by digest, or the announced digest for a tag). */
  private async keep (req: ManifestFetchRequest, headers: Record<string, string>, body: Buffer): Promise<void> {
    const cache = this.cache
    if (cache === undefined) return
    const digest = digestOf(body).value
    const expected = isDigest(req.reference) ? req.reference : headers['docker-content-digest']
    if (expected !== undefined && expected !== digest) {
      this.log?.warn({ registry: req.endpoint.name, repository: req.repository, reference: req.reference, expected, digest }, 'manifest does not match its digest; not cached')
      return
    }
    try {
      await cache.put(digest, repoKey(req), headers['content-type'] ?? '', body)
      if (!isDigest(req.reference)) cache.setTag(req.endpoint.name, req.repository, req.reference, digest)
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'cannot cache a manifest')
    }
  }

  /** The cached answer while the upstream is unreachable, if there is one the client accepts. */
  private async fromCache (req: ManifestFetchRequest, cause: string): Promise<ManifestFetchResult | undefined> {
    const cache = this.cache
    if (cache === undefined) return undefined
    const byTag = !isDigest(req.reference)
    const digest = byTag ? cache.tag(req.endpoint.name, req.repository, req.reference) : req.reference
    if (digest === undefined) return undefined
    const cached = await cache.get(digest, repoKey(req))
    if (cached === undefined || !accepts(req.accept, cached.mediaType)) return undefined
    const where = { registry: req.endpoint.name, repository: req.repository, reference: req.reference, digest, cause }
    if (byTag) this.log?.warn(where, 'upstream unreachable: serving the last known digest of the tag from cache')
    else this.log?.info(where, 'upstream unreachable: serving the manifest from cache')
    const headers: Record<string, string> = {
      'docker-content-digest': digest,
      'content-length': String(cached.body.byteLength),
      etag: `"${digest}"`
    }
    if (cached.mediaType !== '') headers['content-type'] = cached.mediaType
    return { status: 200, headers, ...(req.method === 'HEAD' ? { body: undefined } : { body: Readable.from([cached.body]), bytes: cached.body }) }
  }
}

function repoKey (req: ManifestFetchRequest): string {
  return `${req.endpoint.name}/${req.repository}`
}

/** Whether any Accept value (each possibly a comma-separated list) admits `mediaType`; no Accept admits all. */
function accepts (accept: string[], mediaType: string): boolean {
  if (accept.length === 0 || mediaType === '') return true
  const [type] = mediaType.split('/')
  for (const value of accept) {
    for (const part of value.split(',')) {
      const range = part.split(';')[0].trim().toLowerCase()
      if (range === '*/*' || range === mediaType.toLowerCase() || range === `${type}/*`) return true
    }
  }
  return false
}

function deadline (controller: AbortController, ms: number, message: string): NodeJS.Timeout {
  const timer = setTimeout(() => { controller.abort(new TimeoutError(message)) }, ms)
  timer.unref()
  return timer
}

function pickHeaders (res: RegistryResponse): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of PASSED_HEADERS) {
    const value = headerValue(res.headers, name)
    if (value !== undefined) out[name] = value
  }
  if (res.status === 401) {
    const challenge = headerValue(res.headers, 'www-authenticate')
    if (challenge !== undefined) out['www-authenticate'] = challenge
  }
  return out
}
