/**
 * The `Range` header of a blob GET, parsed against the blob's size (RFC 9110 §14).
 *
 * - No header, or a unit other than `bytes`: undefined (serve the whole blob; RFC 9110 says
 *   an unknown unit is ignored).
 * - `bytes=a-b`, `bytes=a-`, `bytes=-n`: one range, both ends inclusive, `b` clamped to the
 *   last byte.
 * - Several ranges (`bytes=0-9,20-29`): ignored, the whole blob is served (200). RFC 9110
 *   allows a server to ignore Range; no registry client sends multi-range requests, and we
 *   never build multipart/byteranges bodies. Every part must still be well-formed (else 416).
 * - Malformed, reversed, negative, too long, beyond the end, or any range of an empty blob:
 *   InvalidRangeError (416; the caller adds `Content-Range: bytes *\/size`).
 */
import { InvalidRangeError } from '../../shared/errors.js'
import type { ByteRange } from '../blob-provider.js'

/** A Range header longer than this is refused rather than parsed. */
export const MAX_RANGE_HEADER_LENGTH = 256
/** Digits in one position: 15 keeps every value below Number.MAX_SAFE_INTEGER. */
const MAX_DIGITS = 15
const SPEC_RE = new RegExp(`^(?:(\\d{1,${MAX_DIGITS}})-(\\d{1,${MAX_DIGITS}})?|-(\\d{1,${MAX_DIGITS}}))$`)

export function parseRange (header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined
  if (header.length > MAX_RANGE_HEADER_LENGTH) throw new InvalidRangeError('range header too long')
  const eq = header.indexOf('=')
  if (eq === -1) throw new InvalidRangeError('malformed range')
  const unit = header.slice(0, eq).trim().toLowerCase()
  if (unit !== 'bytes') {
    if (/^[!#$%&'*+.^_`|~0-9a-z-]+$/.test(unit)) return undefined
    throw new InvalidRangeError('malformed range')
  }

  const specs = header.slice(eq + 1).split(',').map((s) => SPEC_RE.exec(s.trim()))
  if (specs.some((m) => m == null)) throw new InvalidRangeError('malformed range')
  if (specs.length > 1) return undefined
  return resolveSpec(specs[0] as RegExpExecArray, size)
}

function resolveSpec (m: RegExpExecArray, size: number): ByteRange {
  if (size <= 0) throw new InvalidRangeError('range of an empty blob')
  const last = size - 1

  if (m[3] !== undefined) {
    const suffix = Number(m[3])
    if (suffix === 0) throw new InvalidRangeError('empty suffix range')
    return { start: Math.max(0, size - suffix), end: last }
  }
  const start = Number(m[1])
  if (start > last) throw new InvalidRangeError('range starts beyond the end')
  if (m[2] === undefined) return { start, end: last }
  const end = Number(m[2])
  if (end < start) throw new InvalidRangeError('range ends before it starts')
  return { start, end: Math.min(end, last) }
}

/** `bytes 0-9/100` */
export function contentRange (range: ByteRange, size: number): string {
  return `bytes ${range.start}-${range.end}/${size}`
}

/** `bytes *\/100`, the Content-Range of a 416. */
export function unsatisfiedRange (size: number): string {
  return `bytes */${size}`
}
