/**
 * The supernode's gate for blobs: every task request is checked with the
 * origin (AccessChecker) before the blob is fetched, joined or answered from
 * the store; a private blob's answer carries a ticket for the asking daemon;
 * and the supernode's own piece server serves a blob not known to be public
 * only against such a ticket.
 */
import type { PeerId, PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { AccessChecker, AccessRequest } from '../../shared/security/access-check.js'
import { DEFAULT_TICKET_TTL_MS, signTicket, verifyTicket } from '../../shared/security/ticket.js'
import { DamselflyError, DeniedError, UnauthorizedError } from '../../shared/errors.js'
import type { Digest } from '../../shared/oci/digest.js'
import type { BlobVisibility } from '../../shared/security/blob-visibility.js'

export interface BlobAccessComponents {
  access: Pick<AccessChecker, 'check'>
  /** Digests known to be public, kept on disk so a restarted supernode still serves them with the origin down. */
  visibility: Pick<BlobVisibility, 'isPublic' | 'set'>
  /** The supernode's libp2p key: tickets are signed with it. */
  privateKey: PrivateKey
  logger: Logger
}

export interface BlobAccessInit {
  ticketTtlMs?: number
  now?: () => number
}

export interface Grant {
  /** Present for a private blob: the asking peer shows it to the holders of the blob. */
  ticket?: string
}

export class BlobAccess {
  private readonly c: BlobAccessComponents
  private readonly ticketTtlMs: number
  private readonly now: () => number
  private readonly log: Logger

  constructor (components: BlobAccessComponents, init: BlobAccessInit = {}) {
    this.c = components
    this.ticketTtlMs = init.ticketTtlMs ?? DEFAULT_TICKET_TTL_MS
    this.now = init.now ?? Date.now
    this.log = components.logger.child({ component: 'blob-access' })
  }

  /** Check the request with the origin; a refusal rejects (UnauthorizedError, DeniedError, BlobUnknownError). */
  async authorize (req: AccessRequest, peer: PeerId, signal?: AbortSignal): Promise<Grant> {
    let visibility
    try {
      visibility = await this.c.access.check(req, signal)
    } catch (err) {
      // the origin cannot be asked: a digest known to be public stays servable, a private one does not
      if (!isRefusal(err) && this.c.visibility.isPublic(req.digest)) return {}
      throw err
    }
    if (visibility === 'public') {
      // a digest some repository serves anonymously: its bytes are public whatever repository is asked
      await this.c.visibility.set(req.digest, true)
      return {}
    }
    const exp = Math.floor((this.now() + this.ticketTtlMs) / 1000)
    const ticket = await signTicket(this.c.privateKey, { peer: peer.toString(), digest: req.digest, exp })
    this.log.debug({ peer: peer.toString(), digest: req.digest, exp }, 'ticket issued')
    return { ticket }
  }

  /** A ticket for `peer` without asking a registry (dfget: the caller proved access another way). */
  async ticketFor (digest: string, peer: PeerId): Promise<string> {
    const exp = Math.floor((this.now() + this.ticketTtlMs) / 1000)
    return await signTicket(this.c.privateKey, { peer: peer.toString(), digest, exp })
  }

  /** For the piece server: a blob not known to be public needs the asker's valid ticket. */
  async authorizePiece (digest: Digest, peer: PeerId, ticket: string | undefined): Promise<void> {
    if (this.c.visibility.isPublic(digest.value)) return
    const check = await verifyTicket(ticket, { publicKey: this.c.privateKey.publicKey, peer: peer.toString(), digest: digest.value, now: this.now() })
    if (check.ok) return
    this.log.debug({ peer: peer.toString(), digest: digest.value, reason: check.reason }, 'piece refused')
    if (check.reason === 'missing') throw new UnauthorizedError('this blob needs a ticket from the supernode')
    throw new DeniedError(`ticket refused: ${check.reason}`)
  }
}

function isRefusal (err: unknown): boolean {
  return err instanceof DamselflyError && ['UNAUTHORIZED', 'DENIED', 'BLOB_UNKNOWN', 'NAME_UNKNOWN'].includes(err.code)
}
