import type { PeerId, PublicKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import { verifyTicket } from '../../shared/security/ticket.js'
import { DeniedError, UnauthorizedError, UnavailableError } from '../../shared/errors.js'

export interface TicketGuardComponents {
  /** Whether the blob is private on this host (marked, or its running download holds a ticket). */
  isPrivate: (digest: string) => boolean
  /** The pinned supernode's public key, once known. */
  supernodeKey: () => PublicKey | undefined
  logger: Logger
  now?: () => number
}

/**
 * What a daemon asks before it welcomes a neighbour or serves a piece: a
 * public blob goes to any swarm member; a private one only to a peer whose
 * ticket verifies with the supernode's key and names that peer and blob. No
 * supernode key (never reached it) means no private blob leaves this host.
 */
export class TicketGuard {
  private readonly c: TicketGuardComponents
  private readonly log: Logger

  constructor (components: TicketGuardComponents) {
    this.c = components
    this.log = components.logger.child({ component: 'ticket-guard' })
  }

  async authorize (digest: string, peer: PeerId, ticket: string | undefined): Promise<void> {
    if (!this.c.isPrivate(digest)) return
    const key = this.c.supernodeKey()
    if (key == null) throw new UnavailableError('private blob: the supernode is not known, tickets cannot be checked')
    const check = await verifyTicket(ticket, { publicKey: key, peer: peer.toString(), digest, now: (this.c.now ?? Date.now)() })
    if (check.ok) return
    this.log.info({ peer: peer.toString(), digest, reason: check.reason }, 'refused a private blob to a peer')
    if (check.reason === 'missing') throw new UnauthorizedError('this blob needs a ticket from the supernode')
    throw new DeniedError(`ticket refused: ${check.reason}`)
  }
}
