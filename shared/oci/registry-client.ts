/**
 * An OCI distribution API client: auth challenges and bearer tokens, manifests by tag or
 * digest, blobs streamed (ranges, redirects to storage, digest checked while streaming).
 */
import { Agent, type Dispatcher } from 'undici'
import type { Logger } from 'pino'
import { DigestMismatchError, InvalidRangeError, InvalidReferenceError, UpstreamError } from '../errors.js'
import { digestOf, isDigest, parseDigest } from './digest.js'
import { baseMediaType, MANIFEST_ACCEPT } from './media-types.js'
import { isValidTag, validateRepository } from './reference.js'
import type { RegistryEndpoint } from './endpoints.js'
import { RegistryAuth } from './registry-auth.js'
import { TokenCache } from './token-cache.js'
import { errorFromResponse, headerValue, readCapped, wrapTransportError } from './registry-errors.js'
import { blobBody } from './blob-body.js'
import {
  ANONYMOUS, type BlobOptions, type BlobResult, type GetBlobOptions, type ManifestOptions, type ManifestResult,
  type PingResult, type RegistryResponse, type RequestOptions
} from './registry-types.js'

export interface RegistryClientInit {
  logger: Logger
  userAgent?: string
  connectTimeoutMs?: number
  headersTimeoutMs?: number
  /** Longest silence while reading a body. */
  bodyTimeoutMs?: number
  tokenCache?: TokenCache
  /** Upstream TLS: extra CAs (with the system ones) and/or no verification (see upstream-tls.ts). */
  tls?: { ca?: string | Buffer | Array<string | Buffer>, rejectUnauthorized?: boolean }
}

export const DEFAULT_USER_AGENT = 'damselfly/0.1'
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
export const DEFAULT_HEADERS_TIMEOUT_MS = 30_000
export const DEFAULT_BODY_TIMEOUT_MS = 30_000
export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024
const MAX_REDIRECTS = 5
const REDIRECTS = new Set([301, 302, 303, 307, 308])
const REPOSITORY_IN_PATH = /^\/v2\/(.+)\/(?:manifests\/[^/]+|blobs\/uploads\/[^/]*|blobs\/[^/]+|tags\/list)$/

/** URL without query or credentials, safe to log (storage redirects carry signatures in the query). */
function redact (url: URL): string {
  return `${url.origin}${url.pathname}`
}

function flatHeaders (headers: RegistryResponse['headers']): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of Object.keys(headers)) {
    const v = headerValue(headers, name)
    if (v !== undefined) out[name] = v
  }
  return out
}

function intHeader (headers: RegistryResponse['headers'], name: string): number | undefined {
  const v = headerValue(headers, name)
  if (v === undefined || !/^\d+$/.test(v.trim())) return undefined
  return Number(v.trim())
}

function checkReference (reference: string): void {
  if (reference.includes(':')) parseDigest(reference)
  else if (!isValidTag(reference)) throw new InvalidReferenceError(`invalid tag: ${JSON.stringify(reference.slice(0, 80))}`)
}

export class RegistryClient {
  private readonly log: Logger
  private readonly agent: Agent
  private readonly auth: RegistryAuth
  private readonly userAgent: string

  constructor (init: RegistryClientInit) {
    this.log = init.logger.child({ component: 'registry-client' })
    this.userAgent = init.userAgent ?? DEFAULT_USER_AGENT
    this.agent = new Agent({
      connectTimeout: init.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      headersTimeout: init.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS,
      bodyTimeout: init.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
      ...(init.tls !== undefined ? { connect: { ...init.tls } } : {})
    })
    this.auth = new RegistryAuth({ dispatcher: this.agent, tokenCache: init.tokenCache ?? new TokenCache(), logger: this.log, userAgent: this.userAgent })
  }

  async close (): Promise<void> {
    await this.agent.close()
  }

  /**
   * One registry request, authenticated: answers a 401 once (Basic, or a bearer token for
   * `scope`) unless the credentials are a pass-through header, and follows redirects for
   * GET/HEAD, dropping Authorization when a redirect leaves the registry's origin.
   * Returns any status; throws only on transport failures (UpstreamError / TimeoutError, or the
   * caller's abort reason) and when the token server refuses (UnauthorizedError, DeniedError).
   */
  async request (endpoint: RegistryEndpoint, path: string, opts: RequestOptions = {}): Promise<RegistryResponse> {
    const method = opts.method ?? 'GET'
    const creds = opts.credentials ?? ANONYMOUS
    const base = new URL(endpoint.url)
    let url = new URL(`${endpoint.url}${path.startsWith('/') ? path : `/${path}`}`)
    const scope = opts.scope ?? this.defaultScope(url, base)

    let authorization: string | undefined
    if (creds.kind === 'authorization') authorization = creds.header === '' ? undefined : creds.header
    else authorization = this.auth.preemptive(endpoint.url, creds, scope)

    let res = await this.send(url, method, opts, authorization)
    if (res.status === 401 && creds.kind !== 'authorization') {
      const challenge = headerValue(res.headers, 'www-authenticate')
      const retry = await this.auth.answer(endpoint.url, creds, scope, challenge, authorization, opts.signal)
      if (retry !== undefined && retry !== authorization) {
        await res.body.dump().catch(() => undefined)
        authorization = retry
        res = await this.send(url, method, opts, authorization)
      }
    }

    const follow = opts.followRedirects ?? (method === 'GET' || method === 'HEAD')
    let sendMethod = method
    for (let hops = 0; follow && REDIRECTS.has(res.status); hops++) {
      const location = headerValue(res.headers, 'location')
      await res.body.dump().catch(() => undefined)
      if (location === undefined) throw new UpstreamError(`redirect ${res.status} without Location`, res.status)
      if (hops >= MAX_REDIRECTS) throw new UpstreamError('too many redirects', res.status)
      url = new URL(location, url)
      if (url.origin !== base.origin) authorization = undefined
      if (res.status === 303) sendMethod = 'GET'
      res = await this.send(url, sendMethod, { ...opts, body: undefined }, authorization)
    }
    return res
  }

  /**
   * GET /v2/: the API version check. Anonymous pings send no credentials, so a registry that
   * wants authentication answers 401 with its challenge; other credentials are tried in full.
   */
  async ping (endpoint: RegistryEndpoint, opts: { credentials?: RequestOptions['credentials'], signal?: AbortSignal } = {}): Promise<PingResult> {
    const credentials = opts.credentials === undefined || opts.credentials.kind === 'anonymous' ? { kind: 'authorization' as const, header: '' } : opts.credentials
    const res = await this.request(endpoint, '/v2/', { credentials, signal: opts.signal, scope: '' })
    await res.body.dump().catch(() => undefined)
    const challenge = res.status === 401 ? headerValue(res.headers, 'www-authenticate') : undefined
    return challenge === undefined ? { status: res.status } : { status: res.status, challenge }
  }

  async getManifest (endpoint: RegistryEndpoint, repository: string, reference: string, opts: ManifestOptions = {}): Promise<ManifestResult> {
    validateRepository(repository)
    checkReference(reference)
    const method = opts.method ?? 'GET'
    const what = `manifest ${repository}:${reference}`
    const res = await this.request(endpoint, `/v2/${repository}/manifests/${reference}`, {
      method, credentials: opts.credentials, signal: opts.signal, headers: { accept: [...(opts.accept ?? MANIFEST_ACCEPT)] }
    })
    if (res.status !== 200) throw await errorFromResponse(res, 'manifest', what)

    const headers = flatHeaders(res.headers)
    const announced = headers['docker-content-digest']
    if (announced !== undefined && !isDigest(announced)) {
      await res.body.dump().catch(() => undefined)
      throw new UpstreamError(`${what}: invalid Docker-Content-Digest`, res.status)
    }
    const expected = isDigest(reference) ? reference : announced
    if (announced !== undefined && expected !== announced) {
      await res.body.dump().catch(() => undefined)
      throw new DigestMismatchError(`${what}: registry announced ${announced}`)
    }
    const length = intHeader(res.headers, 'content-length')
    if (length !== undefined && length > MAX_MANIFEST_BYTES) {
      res.body.destroy()
      throw new UpstreamError(`${what}: manifest of ${length} bytes exceeds the limit`, res.status)
    }
    let mediaType = baseMediaType(headers['content-type']) ?? ''

    if (method === 'HEAD') {
      await res.body.dump().catch(() => undefined)
      if (expected === undefined) throw new UpstreamError(`${what}: HEAD answer without Docker-Content-Digest`, res.status)
      if (length === undefined) throw new UpstreamError(`${what}: HEAD answer without Content-Length`, res.status)
      return { status: res.status, mediaType, digest: expected, size: length, headers }
    }

    const body = await this.readBody(res, MAX_MANIFEST_BYTES, what, opts.signal)
    const actual = digestOf(body).value
    if (expected !== undefined && actual !== expected) throw new DigestMismatchError(`${what}: content hashes to ${actual}`)
    if (mediaType === '' || mediaType === 'application/json' || mediaType === 'application/octet-stream') {
      mediaType = this.embeddedMediaType(body) ?? mediaType
    }
    return { status: res.status, mediaType, digest: actual, size: body.length, headers, body }
  }

  async headBlob (endpoint: RegistryEndpoint, repository: string, digest: string, opts: BlobOptions = {}): Promise<{ size: number, digest: string }> {
    validateRepository(repository)
    parseDigest(digest)
    const what = `blob ${repository}@${digest}`
    const res = await this.request(endpoint, `/v2/${repository}/blobs/${digest}`, { method: 'HEAD', credentials: opts.credentials, signal: opts.signal })
    if (res.status !== 200) throw await errorFromResponse(res, 'blob', what)
    await res.body.dump().catch(() => undefined)
    const size = intHeader(res.headers, 'content-length')
    if (size === undefined) throw new UpstreamError(`${what}: HEAD answer without Content-Length`, res.status)
    const announced = headerValue(res.headers, 'docker-content-digest')
    if (announced !== undefined && announced !== digest) throw new DigestMismatchError(`${what}: registry announced ${announced}`)
    return { size, digest }
  }

  /** Stream a blob (or a range of it). The body must be consumed or `cancel()`ed. */
  async getBlob (endpoint: RegistryEndpoint, repository: string, digest: string, opts: GetBlobOptions = {}): Promise<BlobResult> {
    validateRepository(repository)
    parseDigest(digest)
    const what = `blob ${repository}@${digest}`
    const range = opts.range
    if (range !== undefined && (!Number.isSafeInteger(range.start) || range.start < 0 ||
        (range.end !== undefined && (!Number.isSafeInteger(range.end) || range.end < range.start)))) {
      throw new InvalidRangeError(`${what}: invalid range`)
    }
    const headers: Record<string, string> = {}
    if (range !== undefined) headers.range = `bytes=${range.start}-${range.end ?? ''}`
    const res = await this.request(endpoint, `/v2/${repository}/blobs/${digest}`, { credentials: opts.credentials, signal: opts.signal, headers })
    if (res.status !== 200 && res.status !== 206) throw await errorFromResponse(res, 'blob', what)

    const contentLength = intHeader(res.headers, 'content-length')
    const wrapError = (err: unknown): Error => wrapTransportError(err, what, opts.signal)
    const cancel = (): void => { res.body.destroy() }

    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(headerValue(res.headers, 'content-range')?.trim() ?? '')
      if (m === null || range === undefined || Number(m[1]) !== range.start) {
        res.body.destroy()
        throw new UpstreamError(`${what}: unusable Content-Range`, res.status)
      }
      const length = Number(m[2]) - Number(m[1]) + 1
      const size = m[3] === '*' ? undefined : Number(m[3])
      const body = blobBody({ source: res.body, expectedLength: contentLength ?? length, wrapError, what })
      return { status: 206, size, start: range.start, length, body, cancel }
    }

    // 200: the whole blob, either asked for or because the registry ignored the Range.
    if (range === undefined || (range.start === 0 && range.end === undefined)) {
      const verify = opts.verify ?? range === undefined
      const body = blobBody({ source: res.body, expectedLength: contentLength, digest: verify ? digest : undefined, wrapError, what })
      return { status: 200, size: contentLength, start: 0, length: contentLength, body, cancel }
    }
    if (contentLength !== undefined && range.start >= contentLength) {
      res.body.destroy()
      throw new InvalidRangeError(`${what}: range starts past the end of the blob`)
    }
    const limit = range.end === undefined ? undefined : range.end - range.start + 1
    const length = contentLength === undefined ? limit : Math.min(limit ?? Infinity, contentLength - range.start)
    const body = blobBody({ source: res.body, expectedLength: contentLength, skip: range.start, limit, wrapError, what })
    return { status: 206, size: contentLength, start: range.start, length, body, cancel }
  }

  private defaultScope (url: URL, base: URL): string {
    const path = url.pathname.slice(base.pathname.replace(/\/+$/, '').length)
    const m = REPOSITORY_IN_PATH.exec(path)
    return m === null ? '' : `repository:${m[1]}:pull`
  }

  private async send (url: URL, method: string, opts: RequestOptions, authorization: string | undefined): Promise<RegistryResponse> {
    const headers: Record<string, string | string[]> = { 'user-agent': this.userAgent }
    for (const [name, value] of Object.entries(opts.headers ?? {})) {
      const lower = name.toLowerCase()
      if (value === undefined || lower === 'authorization' || lower === 'host') continue
      headers[lower] = value
    }
    if (authorization !== undefined) headers.authorization = authorization
    let res: Dispatcher.ResponseData
    try {
      res = await this.agent.request({ origin: url.origin, path: `${url.pathname}${url.search}`, method: method as Dispatcher.HttpMethod, headers, body: opts.body, signal: opts.signal })
    } catch (err) {
      this.log.debug({ method, url: redact(url), err: (err as Error).message }, 'request failed')
      throw wrapTransportError(err, `${method} ${redact(url)}`, opts.signal)
    }
    this.log.debug({ method, url: redact(url), status: res.statusCode }, 'registry request')
    return { status: res.statusCode, headers: res.headers, url: url.href, body: res.body }
  }

  private async readBody (res: RegistryResponse, limit: number, what: string, signal?: AbortSignal): Promise<Buffer> {
    try {
      return await readCapped(res.body, limit, what)
    } catch (err) {
      throw wrapTransportError(err, what, signal)
    }
  }

  private embeddedMediaType (body: Buffer): string | undefined {
    try {
      const parsed = JSON.parse(body.toString('utf8')) as { mediaType?: unknown }
      return typeof parsed.mediaType === 'string' ? parsed.mediaType : undefined
    } catch {
      return undefined
    }
  }
}
