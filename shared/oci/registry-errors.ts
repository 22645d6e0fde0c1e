/** Registry HTTP answers and transport failures → the typed errors of shared/errors.ts. */
import {
  BlobUnknownError, DamselflyError, DeniedError, InvalidRangeError, ManifestUnknownError, NameUnknownError,
  TimeoutError, TooManyRequestsError, UnauthorizedError, UpstreamError
} from '../errors.js'
import type { RegistryResponse } from './registry-types.js'

export type ResourceKind = 'manifest' | 'blob' | 'other'

const ERROR_BODY_LIMIT = 64 * 1024
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

export function headerValue (headers: RegistryResponse['headers'], name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v.join(', ') : v
}

/** Read a body into memory, failing with UpstreamError past `limit` bytes. */
export async function readCapped (body: AsyncIterable<Uint8Array> & { destroy?: (err?: Error) => unknown }, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of body) {
    total += chunk.byteLength
    if (total > limit) {
      body.destroy?.()
      throw new UpstreamError(`${what} larger than ${limit} bytes`)
    }
    chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength))
  }
  return Buffer.concat(chunks, total)
}

async function ociErrorCodes (res: RegistryResponse): Promise<string[]> {
  try {
    const text = (await readCapped(res.body, ERROR_BODY_LIMIT, 'error body')).toString('utf8')
    const parsed = JSON.parse(text) as { errors?: Array<{ code?: unknown }> }
    return (parsed.errors ?? []).map((e) => String(e.code ?? ''))
  } catch {
    res.body.destroy()
    return []
  }
}

/** The typed error for a non-success answer; consumes (or discards) the response body. */
export async function errorFromResponse (res: RegistryResponse, kind: ResourceKind, what: string): Promise<DamselflyError> {
  let codes: string[] = []
  if (res.status === 404) codes = await ociErrorCodes(res)
  else await res.body.dump().catch(() => undefined)
  switch (res.status) {
    case 401: return new UnauthorizedError(`${what}: authentication required`, headerValue(res.headers, 'www-authenticate'))
    case 403: return new DeniedError(`${what}: access denied`)
    case 404:
      if (codes.includes('NAME_UNKNOWN')) return new NameUnknownError(`${what}: repository unknown`)
      if (kind === 'manifest') return new ManifestUnknownError(`${what}: manifest unknown`)
      if (kind === 'blob') return new BlobUnknownError(`${what}: blob unknown`)
      return new UpstreamError(`${what}: not found`, 404)
    case 416: return new InvalidRangeError(`${what}: range not satisfiable`)
    case 429: return new TooManyRequestsError(`${what}: too many requests`)
    default: return new UpstreamError(`${what}: upstream answered ${res.status}`, res.status)
  }
}

/**
 * A transport failure → TimeoutError / UpstreamError. A caller's abort is passed through
 * unchanged (it is the caller's decision, not an upstream fault); typed errors stay as they are.
 */
export function wrapTransportError (err: unknown, what: string, signal?: AbortSignal): Error {
  if (signal?.aborted === true) return signal.reason instanceof Error ? signal.reason : (err as Error)
  if (err instanceof DamselflyError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code === 'string' && TIMEOUT_CODES.has(code)) return new TimeoutError(`${what}: ${code}`, { cause: err })
  const message = err instanceof Error ? err.message : String(err)
  return new UpstreamError(`${what}: ${message}`, undefined, { cause: err })
}
