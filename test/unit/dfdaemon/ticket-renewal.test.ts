import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { TicketRenewal } from '../../../dfdaemon/swarm/ticket-renewal.js'
import { signTicket, ticketExpiry } from '../../../shared/security/ticket.js'
import { UnavailableError } from '../../../shared/errors.js'

const logger = pino({ level: 'silent' })
const DIGEST = `sha256:${'ab'.repeat(32)}`

describe('TicketRenewal', async () => {
  const key = await generateKeyPair('Ed25519')
  const exp = Math.floor(Date.now() / 1000) + 3600
  const ticket = async (e: number): Promise<string> => await signTicket(key, { peer: 'p', digest: DIGEST, exp: e })
  // the renewal's timers do not hold the process open (a daemon's downloads end on their own)
  let keepAlive: NodeJS.Timeout
  before(() => { keepAlive = setInterval(() => {}, 60_000) })
  after(() => { clearInterval(keepAlive) })

  /** A clock that puts the first ticket `lifeMs` before its expiry now, and runs on as time does. */
  function clock (lifeMs: number): () => number {
    const offset = exp * 1000 - lifeMs - Date.now()
    return () => Date.now() + offset
  }

  it('renews a ticket before it expires, and the new one before it does', async () => {
    const now = clock(300)
    const first = await ticket(exp)
    const renewed = [await ticket(exp + 1), await ticket(exp + 2)]
    const asked: Array<{ at: number, expiry: number }> = []
    const told: Array<string | undefined> = []
    let current = first
    let done!: () => void
    const twice = new Promise<void>(resolve => { done = resolve })
    const r = new TicketRenewal({
      now,
      logger,
      renew: async () => {
        asked.push({ at: now(), expiry: ticketExpiry(current) as number })
        current = renewed[asked.length - 1]
        return current
      },
      onTicket: (t) => { told.push(t); if (told.length === 2) done() }
    })
    r.watch(first)
    await twice
    r.stop()
    assert.deepEqual(told, renewed, 'each renewal passed on, and then watched')
    for (const a of asked) assert.ok(a.at < a.expiry, 'asked while the ticket was still valid')
  })

  it('asks again after a failed renewal', async () => {
    const now = clock(200)
    const fresh = await ticket(exp + 5)
    let calls = 0
    let done!: (t: string | undefined) => void
    const got = new Promise<string | undefined>(resolve => { done = resolve })
    const r = new TicketRenewal({
      now,
      logger,
      renew: async () => {
        if (++calls === 1) throw new UnavailableError('supernode unreachable')
        return fresh
      },
      onTicket: done
    })
    r.watch(await ticket(exp))
    assert.equal(await got, fresh)
    r.stop()
    assert.equal(calls, 2)
  })

  it('renews nothing for a public blob, an unreadable ticket, or once stopped', async () => {
    const now = clock(100)
    let calls = 0
    const r = new TicketRenewal({ now, logger, renew: async () => { calls++; return undefined }, onTicket: () => {} })
    r.watch(undefined)
    r.watch('not-a-ticket')
    r.watch(await ticket(exp))
    r.stop()
    await sleep(300)
    assert.equal(calls, 0)
  })
})
