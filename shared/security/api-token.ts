import { createHash, timingSafeEqual } from 'node:crypto'

/**
 * Whether an `Authorization` header carries `Bearer <token>`, compared in
 * constant time (both sides hashed first, so lengths leak nothing either).
 */
export function bearerMatches (header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '')
  const given = createHash('sha256').update(m?.[1] ?? '').digest()
  const wanted = createHash('sha256').update(token).digest()
  return timingSafeEqual(given, wanted) && m != null
}
