import type { Logger } from 'pino'
import { ticketExpiry } from '../../shared/security/ticket.js'

/** Longest wait before asking again after a renewal failed. */
export const RENEW_RETRY_MS = 30_000

export interface TicketRenewalComponents {
  /** Ask the supernode again for the blob; resolves with its ticket (undefined: the blob is public now). */
  renew: () => Promise<string | undefined>
  /** A renewal's answer, to be shown from now on. */
  onTicket: (ticket: string | undefined) => void
  logger: Logger
  /** Milliseconds since the epoch (tests). */
  now?: () => number
}

/**
 * Keeps a private blob's ticket valid for as long as its download runs: once two
 * thirds of a ticket's life have passed, the supernode is asked again (it checks
 * the client's access with the origin again), and the new ticket replaces the
 * old. A failed renewal is tried again, sooner as the expiry nears; past it,
 * pieces from peers are refused, and a renewal is tried every RENEW_RETRY_MS.
 */
export class TicketRenewal {
  private readonly c: TicketRenewalComponents
  private readonly now: () => number
  private timer?: NodeJS.Timeout
  private stopped = false
  /** The watched ticket ran out before a renewal worked (warned once). */
  private expired = false

  constructor (components: TicketRenewalComponents) {
    this.c = components
    this.now = components.now ?? Date.now
  }

  /** Watch `ticket` (none: nothing to renew), in place of any ticket watched before. */
  watch (ticket: string | undefined): void {
    this.clear()
    if (this.stopped || ticket == null) return
    const exp = ticketExpiry(ticket)
    if (exp === undefined) return
    const life = exp - this.now()
    if (life <= 0) return
    this.schedule(life * 2 / 3, exp)
  }

  stop (): void {
    this.stopped = true
    this.clear()
  }

  private clear (): void {
    if (this.timer != null) clearTimeout(this.timer)
    this.timer = undefined
  }

  private schedule (delayMs: number, exp: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined
      void this.attempt(exp)
    }, Math.max(0, delayMs))
    this.timer.unref()
  }

  private async attempt (exp: number): Promise<void> {
    let ticket: string | undefined
    try {
      ticket = await this.c.renew()
    } catch (err) {
      if (this.stopped) return
      const left = exp - this.now()
      const e = { name: (err as Error).name, message: (err as Error).message }
      if (left > 0) {
        this.c.logger.debug({ err: e, leftMs: left }, 'ticket renewal failed; trying again')
        this.schedule(Math.min(RENEW_RETRY_MS, left / 2), exp)
      } else {
        if (!this.expired) this.c.logger.warn({ err: e }, 'ticket expired and not renewed: peers refuse this blob\'s pieces until it is')
        this.expired = true
        this.schedule(RENEW_RETRY_MS, exp)
      }
      return
    }
    if (this.stopped) return
    this.expired = false
    this.c.logger.debug({ private: ticket != null }, 'ticket renewed')
    this.c.onTicket(ticket)
    this.watch(ticket)
  }
}
