/** Types shared by the registry client and its callers (the supernode's origin fetch, the mirror). */
import type { Dispatcher } from 'undici'

/**
 * How to authenticate to a registry.
 * - `anonymous` / `basic`: the client answers Basic and Bearer challenges itself (token dance).
 * - `identity-token`: an OAuth2 refresh token (Docker's `identitytoken`), exchanged for bearer
 *   tokens by the token server's refresh-token grant; never sent to a registry as is.
 * - `authorization`: a registry client's own `Authorization` header, forwarded unchanged by
 *   the mirror; never exchanged for a token. An empty header means "send none".
 */
export type Credentials =
  | { kind: 'anonymous' }
  | { kind: 'basic', username: string, password: string }
  | { kind: 'identity-token', token: string }
  | { kind: 'authorization', header: string }

export const ANONYMOUS: Credentials = Object.freeze({ kind: 'anonymous' })

export type HttpMethod = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

export interface RequestOptions {
  method?: HttpMethod
  /** Extra headers; an array value is sent as repeated header lines (e.g. several Accept). */
  headers?: Record<string, string | string[] | undefined>
  /** Request body; kept in memory so the request can be replayed after an auth challenge. */
  body?: Buffer | string
  credentials?: Credentials
  /** Scope to ask a token server for; default `repository:<repo>:pull`, the repository taken from the path. */
  scope?: string
  /** Follow 301/302/303/307/308 (default: true for GET and HEAD). */
  followRedirects?: boolean
  signal?: AbortSignal
}

export interface RegistryResponse {
  status: number
  /** Lowercased header names, as undici reports them. */
  headers: Record<string, string | string[] | undefined>
  /** Final URL after redirects. */
  url: string
  /** The response body; consume it, or call `dump()`/`destroy()` to release the connection. */
  body: Dispatcher.ResponseData['body']
}

export interface ManifestOptions {
  credentials?: Credentials
  /** Accepted media types, each sent as its own Accept header value (default MANIFEST_ACCEPT). */
  accept?: readonly string[]
  method?: 'GET' | 'HEAD'
  signal?: AbortSignal
}

export interface ManifestResult {
  status: number
  mediaType: string
  /** Docker-Content-Digest, or the digest of the body. */
  digest: string
  size: number
  /** Response headers, repeated values joined with `, `. */
  headers: Record<string, string>
  /** Present for GET. */
  body?: Buffer
}

export interface BlobOptions {
  credentials?: Credentials
  signal?: AbortSignal
}

export interface GetBlobOptions extends BlobOptions {
  /** Byte range, `end` inclusive. */
  range?: { start: number, end?: number }
  /** Hash the body while streaming and throw DigestMismatchError at the end (whole-blob reads only; default true without a range). */
  verify?: boolean
}

export interface BlobResult {
  status: 200 | 206
  /** Total blob size, when the registry said. */
  size: number | undefined
  /** Offset of the first byte of `body` in the blob. */
  start: number
  /** Bytes `body` will yield, when known. */
  length: number | undefined
  /** Streamed bytes; throws DigestMismatchError / UpstreamError / TimeoutError at the end or mid-way. */
  body: AsyncIterable<Uint8Array>
  /** Release the connection without reading the body. */
  cancel: () => void
}

export interface PingResult {
  status: number
  /** WWW-Authenticate of a 401, if any. */
  challenge?: string
}
