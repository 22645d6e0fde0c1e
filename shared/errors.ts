/**
 * Error classes shared by every part of damselfly. Each has a stable `name`
 * (tests assert on it) and, where it can cross HTTP, an OCI error code and status.
 */

/** OCI distribution error codes (distribution-spec, "Error codes"), plus UNAVAILABLE for 503s. */
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'UNAVAILABLE'

export class DamselflyError extends Error {
  static readonly defaultMessage: string = 'damselfly error'
  /** OCI error code used when this error is reported to a registry client. */
  readonly code: OciErrorCode = 'UNAVAILABLE'
  /** HTTP status used when this error is reported to a registry client. */
  readonly status: number = 500

  constructor (message?: string, options?: ErrorOptions) {
    super(message ?? (new.target as typeof DamselflyError).defaultMessage, options)
    this.name = new.target.name
  }
}

export class InvalidDigestError extends DamselflyError {
  static override readonly defaultMessage = 'invalid digest'
  override readonly code = 'DIGEST_INVALID'
  override readonly status = 400
}

export class InvalidReferenceError extends DamselflyError {
  static override readonly defaultMessage = 'invalid image reference'
  override readonly code = 'NAME_INVALID'
  override readonly status = 400
}

export class InvalidNameError extends DamselflyError {
  static override readonly defaultMessage = 'invalid repository name'
  override readonly code = 'NAME_INVALID'
  override readonly status = 400
}

export class InvalidRangeError extends DamselflyError {
  static override readonly defaultMessage = 'requested range not satisfiable'
  override readonly code = 'RANGE_INVALID'
  override readonly status = 416
}

export class BlobUnknownError extends DamselflyError {
  static override readonly defaultMessage = 'blob unknown to registry'
  override readonly code = 'BLOB_UNKNOWN'
  override readonly status = 404
}

export class ManifestUnknownError extends DamselflyError {
  static override readonly defaultMessage = 'manifest unknown'
  override readonly code = 'MANIFEST_UNKNOWN'
  override readonly status = 404
}

export class NameUnknownError extends DamselflyError {
  static override readonly defaultMessage = 'repository name not known to registry'
  override readonly code = 'NAME_UNKNOWN'
  override readonly status = 404
}

/** The origin (or the supernode on its behalf) refused the credentials. */
export class UnauthorizedError extends DamselflyError {
  static override readonly defaultMessage = 'authentication required'
  override readonly code = 'UNAUTHORIZED'
  override readonly status = 401
  /** The origin's WWW-Authenticate challenge, passed back so the client can authenticate. */
  readonly challenge: string | undefined

  constructor (message?: string, challenge?: string, options?: ErrorOptions) {
    super(message, options)
    this.challenge = challenge
  }
}

export class DeniedError extends DamselflyError {
  static override readonly defaultMessage = 'requested access to the resource is denied'
  override readonly code = 'DENIED'
  override readonly status = 403
}

export class TooManyRequestsError extends DamselflyError {
  static override readonly defaultMessage = 'too many requests'
  override readonly code = 'TOOMANYREQUESTS'
  override readonly status = 429
}

/** Bytes did not hash to the digest they were announced with. */
export class DigestMismatchError extends DamselflyError {
  static override readonly defaultMessage = 'content does not match its digest'
  override readonly code = 'DIGEST_INVALID'
  override readonly status = 502
}

/** The upstream registry answered in a way we cannot use (5xx, bad headers, truncated body). */
export class UpstreamError extends DamselflyError {
  static override readonly defaultMessage = 'upstream registry error'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 502
  readonly upstreamStatus: number | undefined

  constructor (message?: string, upstreamStatus?: number, options?: ErrorOptions) {
    super(message, options)
    this.upstreamStatus = upstreamStatus
  }
}

/** A deadline passed (connect, first byte, no progress). */
export class TimeoutError extends DamselflyError {
  static override readonly defaultMessage = 'operation timed out'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 504
}

/** A peer or the supernode broke a protocol rule (bad message, oversize, out of order). */
export class ProtocolError extends DamselflyError {
  static override readonly defaultMessage = 'protocol violation'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 502
}

/** The supernode (or the swarm) could not provide what was asked. */
export class UnavailableError extends DamselflyError {
  static override readonly defaultMessage = 'service unavailable'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 503
}

/**
 * The disk holding the store is full (ENOSPC, EDQUOT), or the store cannot make
 * room for a blob within its quota and free-space watermark. The blob in
 * progress is dropped; what is stored stays served. 507 Insufficient Storage
 * (RFC 4918) says exactly this and is still a 5xx, so registry clients treat it
 * as any server failure (retry, or the next host), while logs and dashboards
 * can tell a full disk from an unreachable supernode (503).
 */
export class DiskFullError extends DamselflyError {
  static override readonly defaultMessage = 'insufficient storage'
  override readonly code = 'UNAVAILABLE'
  override readonly status = 507
}

export class ConfigError extends DamselflyError {
  static override readonly defaultMessage = 'invalid configuration'
}

/** The OCI error body a registry client expects. */
export function ociErrorBody (code: OciErrorCode, message: string, detail?: unknown): { errors: Array<{ code: OciErrorCode, message: string, detail?: unknown }> } {
  return { errors: [detail === undefined ? { code, message } : { code, message, detail }] }
}

/** Error classes by name, to rebuild a typed error that crossed a protocol boundary. */
const BY_CODE: Partial<Record<OciErrorCode, new (message?: string) => DamselflyError>> = {
  BLOB_UNKNOWN: BlobUnknownError,
  MANIFEST_UNKNOWN: ManifestUnknownError,
  NAME_UNKNOWN: NameUnknownError,
  NAME_INVALID: InvalidNameError,
  DIGEST_INVALID: InvalidDigestError,
  UNAUTHORIZED: UnauthorizedError,
  DENIED: DeniedError,
  TOOMANYREQUESTS: TooManyRequestsError,
  RANGE_INVALID: InvalidRangeError
}

/** Turn an `{ code, message }` received from a peer back into a typed error. */
export function errorFromCode (code: string, message: string, challenge?: string): DamselflyError {
  if (code === 'UNAUTHORIZED') return new UnauthorizedError(message, challenge)
  const Ctor = BY_CODE[code as OciErrorCode] ?? UnavailableError
  return new Ctor(message)
}
