/** Errors only the mirror endpoint raises; the shared ones live in shared/errors.ts. */
import { DamselflyError } from '../../shared/errors.js'

/** A write method (push, delete) on the pull-only mirror. */
export class MethodNotAllowedError extends DamselflyError {
  static override readonly defaultMessage = 'the mirror is read-only: only GET and HEAD are supported'
  override readonly code = 'UNSUPPORTED'
  override readonly status = 405
}

/** A path that is not part of the pull side of the distribution API. */
export class RouteNotFoundError extends DamselflyError {
  static override readonly defaultMessage = 'no such endpoint on this mirror'
  override readonly code = 'UNSUPPORTED'
  override readonly status = 404
}

export class UriTooLongError extends DamselflyError {
  static override readonly defaultMessage = 'request URI too long'
  override readonly code = 'NAME_INVALID'
  override readonly status = 414
}
