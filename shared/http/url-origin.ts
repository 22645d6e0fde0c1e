/**
 * Any HTTP(S) file as an origin, for dfget: the same BlobResult shape the
 * registry client gives for a blob, so the supernode's fetcher and a daemon's
 * back-to-source treat a plain URL like a layer. Redirects are followed one hop
 * at a time, each hop asked of the policy (the supernode's --allow-url list).
 */
import type { Digest } from '../oci/digest.js'
import { DigestHasher } from '../oci/digest.js'
import type { BlobResult } from '../oci/registry-types.js'
import { BlobUnknownError, DeniedError, DigestMismatchError, UnavailableError, UpstreamError } from '../errors.js'

export interface UrlHead {
  size: number
  /** Validators, to tell whether a file changed since it was last fetched. */
  etag?: string
  lastModified?: string
}

export interface UrlGetOptions {
  /** Bytes [start, end], both inclusive. */
  range?: { start: number, end: number }
  /** Hash the whole body and throw DigestMismatchError at its end when it is not this. */
  verify?: Digest
  signal?: AbortSignal
}

/** What the fetcher and back-to-source need of a file origin (UrlOrigin is the real one). */
export interface UrlClient {
  head: (url: string, signal?: AbortSignal) => Promise<UrlHead>
  get: (url: string, opts?: UrlGetOptions) => Promise<BlobResult>
}

/** Which URLs may be requested (UrlAllowlist is the real one); throws to refuse. */
export interface UrlPolicy {
  /** `redirected`: the URL is where a redirect pointed, not the one asked for. */
  check: (url: URL, redirected: boolean) => void
}

export interface UrlOriginComponents {
  /** Asked before every request, each redirect hop included; absent: any http(s) URL. */
  policy?: UrlPolicy
}

export interface UrlOriginInit {
  /** Redirects followed per request before giving up. */
  maxRedirects?: number
}

export const DEFAULT_MAX_REDIRECTS = 10

/**
 * Only http: and https: URLs without a user name or password are fetched
 * (fetch() refuses credentials in a URL anyway); anything else is refused.
 */
export function checkFileUrl (input: string): URL {
  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw new DeniedError('not a URL')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new DeniedError(`only http and https URLs can be fetched, not ${url.protocol}`)
  if (url.username !== '' || url.password !== '') throw new DeniedError('URLs with a user name or password are not fetched')
  return url
}

export class UrlOrigin implements UrlClient {
  private readonly policy: UrlPolicy | undefined
  private readonly maxRedirects: number

  constructor (components: UrlOriginComponents = {}, init: UrlOriginInit = {}) {
    this.policy = components.policy
    this.maxRedirects = init.maxRedirects ?? DEFAULT_MAX_REDIRECTS
  }

  async head (url: string, signal?: AbortSignal): Promise<UrlHead> {
    const res = await this.send(url, { method: 'HEAD', signal })
    const size = Number(res.headers.get('content-length') ?? NaN)
    if (!Number.isSafeInteger(size) || size < 0) throw new UpstreamError(`${url}: the server did not say how big the file is`, res.status)
    return validators({ size }, res.headers)
  }

  async get (url: string, opts: UrlGetOptions = {}): Promise<BlobResult> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity' }
    if (opts.range != null) headers.range = `bytes=${opts.range.start}-${opts.range.end}`
    const res = await this.send(url, { method: 'GET', headers, signal: opts.signal })
    const length = optionalNumber(res.headers.get('content-length'))
    let start = 0
    let size = res.status === 200 ? length : undefined
    if (res.status === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '')
      if (m == null) throw cancelled(res, new UpstreamError(`${url}: malformed Content-Range`, 206))
      start = Number(m[1])
      size = m[3] === '*' ? undefined : Number(m[3])
    }
    if (opts.range != null && start !== opts.range.start) throw cancelled(res, new UpstreamError(`${url}: the server ignored the range`, res.status))
    const stream = res.body
    return {
      status: res.status === 206 ? 206 : 200,
      size,
      start,
      length,
      body: body(stream, opts.verify, url),
      cancel: () => { void stream?.cancel().catch(() => {}) }
    }
  }

  /** One request, following redirects by hand so that every hop is checked; errors name `url`, never a hop. */
  private async send (url: string, init: { method: string, headers?: Record<string, string>, signal?: AbortSignal }): Promise<Response> {
    let target = checkFileUrl(url)
    for (let hop = 0; ; hop++) {
      this.policy?.check(target, hop > 0)
      let res: Response
      try {
        res = await fetch(target, { method: init.method, headers: init.headers, signal: init.signal, redirect: 'manual' })
      } catch (err) {
        if (init.signal?.aborted === true) throw err
        throw new UnavailableError(`${url} unreachable`, { cause: err })
      }
      if (res.status === 200 || res.status === 206) return res
      void res.body?.cancel().catch(() => {})
      if (REDIRECTS.has(res.status)) {
        if (hop >= this.maxRedirects) throw new UpstreamError(`${url}: more than ${this.maxRedirects} redirects`, res.status)
        target = redirectTarget(url, target, res)
        continue
      }
      if (res.status === 404 || res.status === 410) throw new BlobUnknownError(`${url}: HTTP ${res.status}`)
      if (res.status === 401 || res.status === 403) throw new DeniedError(`${url}: HTTP ${res.status}`)
      throw new UpstreamError(`${url}: HTTP ${res.status}`, res.status)
    }
  }
}

async function * body (stream: ReadableStream<Uint8Array> | null, verify: Digest | undefined, url: string): AsyncGenerator<Uint8Array> {
  if (stream == null) return
  const hasher = verify != null ? new DigestHasher() : undefined
  try {
    for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
      hasher?.update(chunk)
      yield chunk
    }
  } catch (err) {
    throw new UpstreamError(`${url}: body interrupted`, undefined, { cause: err })
  }
  if (hasher == null || verify == null) return
  // a Hash can be finished once: digest() a second time throws a plain Error
  const got = hasher.digest().value
  if (got !== verify.value) throw new DigestMismatchError(`${url} does not hash to ${verify.value} (got ${got})`)
}

/** Only GET and HEAD are sent, so every redirect status keeps the method. */
const REDIRECTS = new Set([301, 302, 303, 307, 308])

function redirectTarget (url: string, from: URL, res: Response): URL {
  const location = res.headers.get('location')
  if (location == null) throw new UpstreamError(`${url}: HTTP ${res.status} without a Location`, res.status)
  let next: URL
  try {
    next = new URL(location, from)
  } catch {
    throw new UpstreamError(`${url}: HTTP ${res.status} to an invalid Location`, res.status)
  }
  return checkFileUrl(next.href)
}

function cancelled (res: Response, err: Error): Error {
  void res.body?.cancel().catch(() => {})
  return err
}

function optionalNumber (v: string | null): number | undefined {
  if (v == null) return undefined
  const n = Number(v)
  return Number.isSafeInteger(n) && n >= 0 ? n : undefined
}

function validators (head: UrlHead, headers: Headers): UrlHead {
  const etag = headers.get('etag')
  const lastModified = headers.get('last-modified')
  if (etag != null) head.etag = etag
  if (lastModified != null) head.lastModified = lastModified
  return head
}
