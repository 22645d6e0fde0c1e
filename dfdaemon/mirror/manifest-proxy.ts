/**
 * Manifests and tags go to the upstream registry on every request, with the client's own
 * Authorization and every Accept value it sent (each as its own header line: collapsing
 * them makes the distribution registry down-convert to schema1). Nothing is cached yet;
 * a cache by digest slots in here.
 */
import type { Readable } from 'node:stream'
import { TimeoutError, UpstreamError } from '../../shared/errors.js'
import type { RegistryEndpoint } from '../../shared/oci/endpoints.js'
import { headerValue, wrapTransportError } from '../../shared/oci/registry-errors.js'
import type { Credentials, RegistryResponse, RequestOptions } from '../../shared/oci/registry-types.js'
import type { Logger } from '../../shared/logging.js'

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
}

/** What the mirror app needs from a manifest source; ManifestProxy is the real one. */
export interface ManifestSource {
  fetch: (req: ManifestFetchRequest) => Promise<ManifestFetchResult>
}

export interface ManifestProxyComponents {
  client: UpstreamRequester
  logger?: Logger
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
  private readonly log: Logger | undefined
  private readonly headersTimeoutMs: number
  private readonly bodyTimeoutMs: number
  private readonly maxManifestBytes: number

  constructor (components: ManifestProxyComponents, init: ManifestProxyInit = {}) {
    this.client = components.client
    this.log = components.logger?.child({ component: 'manifest-proxy' })
    this.headersTimeoutMs = init.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS
    this.bodyTimeoutMs = init.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS
    this.maxManifestBytes = init.maxManifestBytes ?? DEFAULT_MAX_MANIFEST_BYTES
  }

  async fetch (req: ManifestFetchRequest): Promise<ManifestFetchResult> {
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
      return { status: res.status, headers, body: undefined }
    }
    clearTimeout(timer)
    timer = deadline(controller, this.bodyTimeoutMs, `${what}: body not received in time`)
    res.body.once('close', release)
    return { status: res.status, headers, body: res.body }
  }
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
