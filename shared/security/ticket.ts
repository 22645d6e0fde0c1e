/**
 * Tickets: the supernode's signed word that a peer may receive a private blob.
 * `{ peer, digest, exp }` signed with the supernode's libp2p key; a daemon that
 * holds the blob checks the signature with the supernode's public key (its
 * peer id is pinned), that the ticket names the very peer on the connection
 * and the blob asked for, and that it has not expired. A ticket carries no
 * credential and is useless to any other peer id.
 */
import type { PrivateKey, PublicKey } from '@libp2p/interface'
import { Type } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

export const TICKET_VERSION = 'dft1'
/** Domain separation: these bytes are never valid as anything else the key signs. */
const SIGNING_CONTEXT = 'damselfly/ticket/v1\n'
export const MAX_TICKET_LENGTH = 1024
export const DEFAULT_TICKET_TTL_MS = 15 * 60_000

export interface TicketClaims {
  /** Peer id of the daemon the ticket was issued to. */
  peer: string
  /** The blob it may receive. */
  digest: string
  /** Expiry, seconds since the epoch. */
  exp: number
}

const Claims = Type.Object({
  peer: Type.String({ minLength: 1, maxLength: 128 }),
  digest: Type.String({ minLength: 1, maxLength: 80 }),
  exp: Type.Integer({ minimum: 0 })
}, { additionalProperties: false })

export type TicketRefusal = 'missing' | 'malformed' | 'forged' | 'expired' | 'wrong-peer' | 'wrong-digest'
export type TicketCheck = { ok: true, claims: TicketClaims } | { ok: false, reason: TicketRefusal }

function signedBytes (payload: string): Uint8Array {
  return Buffer.from(SIGNING_CONTEXT + payload, 'utf8')
}

/** Sign a ticket: `dft1.<claims, base64url JSON>.<signature, base64url>`. */
export async function signTicket (key: PrivateKey, claims: TicketClaims): Promise<string> {
  const payload = Buffer.from(JSON.stringify({ peer: claims.peer, digest: claims.digest, exp: claims.exp })).toString('base64url')
  const signature = await key.sign(signedBytes(payload))
  return `${TICKET_VERSION}.${payload}.${Buffer.from(signature).toString('base64url')}`
}

/**
 * A ticket's expiry in ms since the epoch, as its claims say — unverified: for
 * timing a renewal, never for trusting the ticket. Undefined when unreadable.
 */
export function ticketExpiry (ticket: string): number | undefined {
  const parsed = parseTicket(ticket)
  return parsed === undefined ? undefined : parsed.claims.exp * 1000
}

/** A ticket's parts and its claims, unverified; undefined when it is not a well-formed ticket. */
function parseTicket (ticket: string): { payload: string, sig: string, claims: TicketClaims } | undefined {
  if (ticket.length > MAX_TICKET_LENGTH) return undefined
  const parts = ticket.split('.')
  if (parts.length !== 3 || parts[0] !== TICKET_VERSION) return undefined
  const [, payload, sig] = parts
  let claims: unknown
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'))
  } catch {
    return undefined
  }
  return Value.Check(Claims, claims) ? { payload, sig, claims } : undefined
}

export interface VerifyTicketOptions {
  /** The issuer's (supernode's) public key. */
  publicKey: PublicKey
  /** The peer presenting it, as the connection authenticated it. */
  peer: string
  digest: string
  /** Milliseconds since the epoch (default Date.now()). */
  now?: number
}

/** Check a ticket; never throws. */
export async function verifyTicket (ticket: string | undefined, opts: VerifyTicketOptions): Promise<TicketCheck> {
  if (ticket == null || ticket === '') return { ok: false, reason: 'missing' }
  const parsed = parseTicket(ticket)
  if (parsed === undefined) return { ok: false, reason: 'malformed' }
  const { payload, sig, claims } = parsed
  let valid = false
  try {
    valid = await opts.publicKey.verify(signedBytes(payload), Buffer.from(sig, 'base64url'))
  } catch {
    valid = false
  }
  if (!valid) return { ok: false, reason: 'forged' }
  // claims are checked only once the signature holds: a forger learns nothing from the order
  if (claims.peer !== opts.peer) return { ok: false, reason: 'wrong-peer' }
  if (claims.digest !== opts.digest) return { ok: false, reason: 'wrong-digest' }
  if (claims.exp * 1000 <= (opts.now ?? Date.now())) return { ok: false, reason: 'expired' }
  return { ok: true, claims }
}
