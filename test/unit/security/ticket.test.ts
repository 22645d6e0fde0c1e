import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { signTicket, ticketExpiry, verifyTicket } from '../../../shared/security/ticket.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`
const OTHER = `sha256:${'cd'.repeat(32)}`

describe('tickets', async () => {
  const supernode = await generateKeyPair('Ed25519')
  const intruder = await generateKeyPair('Ed25519')
  const peer = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
  const now = 1_700_000_000_000
  const exp = now / 1000 + 600
  const opts = { publicKey: supernode.publicKey, peer, digest: DIGEST, now }

  it('verifies a ticket signed by the supernode for this peer and blob', async () => {
    const ticket = await signTicket(supernode, { peer, digest: DIGEST, exp })
    const check = await verifyTicket(ticket, opts)
    assert.equal(check.ok, true)
    assert.deepEqual(check.ok && check.claims, { peer, digest: DIGEST, exp })
  })

  it('refuses an expired ticket, also at the exact second', async () => {
    const ticket = await signTicket(supernode, { peer, digest: DIGEST, exp })
    assert.deepEqual(await verifyTicket(ticket, { ...opts, now: exp * 1000 }), { ok: false, reason: 'expired' })
    assert.deepEqual(await verifyTicket(ticket, { ...opts, now: exp * 1000 - 1 }), { ok: true, claims: { peer, digest: DIGEST, exp } })
  })

  it('refuses a ticket signed by another key', async () => {
    const ticket = await signTicket(intruder, { peer, digest: DIGEST, exp })
    assert.deepEqual(await verifyTicket(ticket, opts), { ok: false, reason: 'forged' })
  })

  it('refuses a ticket whose claims were altered after signing', async () => {
    const ticket = await signTicket(supernode, { peer: other, digest: DIGEST, exp })
    const [v, , sig] = ticket.split('.')
    const altered = Buffer.from(JSON.stringify({ peer, digest: DIGEST, exp: exp + 86_400 })).toString('base64url')
    assert.deepEqual(await verifyTicket(`${v}.${altered}.${sig}`, opts), { ok: false, reason: 'forged' })
  })

  it('refuses a ticket issued to another peer or for another blob', async () => {
    assert.deepEqual(await verifyTicket(await signTicket(supernode, { peer: other, digest: DIGEST, exp }), opts), { ok: false, reason: 'wrong-peer' })
    assert.deepEqual(await verifyTicket(await signTicket(supernode, { peer, digest: OTHER, exp }), opts), { ok: false, reason: 'wrong-digest' })
  })

  it('refuses missing and malformed tickets', async () => {
    assert.deepEqual(await verifyTicket(undefined, opts), { ok: false, reason: 'missing' })
    assert.deepEqual(await verifyTicket('', opts), { ok: false, reason: 'missing' })
    for (const bad of ['x', 'dft1.a.b.c', 'dft2.e30.AA', 'dft1.!!!.AA', `dft1.${Buffer.from('{"peer":1}').toString('base64url')}.AA`, 'dft1.' + 'A'.repeat(2000) + '.AA']) {
      assert.deepEqual(await verifyTicket(bad, opts), { ok: false, reason: 'malformed' }, bad.slice(0, 30))
    }
  })

  it('reads a ticket\'s expiry for timing its renewal, and none from a malformed one', async () => {
    assert.equal(ticketExpiry(await signTicket(supernode, { peer, digest: DIGEST, exp })), exp * 1000)
    for (const bad of ['x', 'dft1.a.b.c', 'dft2.e30.AA', 'dft1.!!!.AA', `dft1.${Buffer.from('{"peer":1}').toString('base64url')}.AA`, 'dft1.' + 'A'.repeat(2000) + '.AA']) {
      assert.equal(ticketExpiry(bad), undefined, bad.slice(0, 30))
    }
  })
})
