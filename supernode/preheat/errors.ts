import { DamselflyError } from '../../shared/errors.js'

/** No preheat job by that id (never submitted, or evicted from the recent jobs). */
export class PreheatJobUnknownError extends DamselflyError {
  static override readonly defaultMessage = 'preheat job unknown'
  override readonly code = 'NAME_UNKNOWN'
  override readonly status = 404
}

/** The image (or the platforms asked for) resolved to nothing to fetch. */
export class PlatformUnknownError extends DamselflyError {
  static override readonly defaultMessage = 'no manifest for the requested platform'
  override readonly code = 'MANIFEST_UNKNOWN'
  override readonly status = 404
}
