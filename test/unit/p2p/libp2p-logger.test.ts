import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { libp2pLogger, silentLogger } from '../../../shared/p2p/libp2p-logger.js'

describe('libp2pLogger', () => {
  it('leaves libp2p its own logger when DEBUG asks for debug output', () => {
    assert.equal(libp2pLogger('libp2p:*'), undefined)
    assert.equal(libp2pLogger('libp2p:yamux,libp2p:noise'), undefined)
  })

  it('hands libp2p a silent logger otherwise, scopes included', () => {
    assert.equal(libp2pLogger(undefined), silentLogger)
    assert.equal(libp2pLogger(''), silentLogger)
    assert.equal(libp2pLogger('  '), silentLogger)
    const log = silentLogger.forComponent('libp2p:yamux')
    const scoped = log.newScope('stream:1').newScope('mss')
    assert.equal(log.enabled, false)
    assert.equal(scoped.enabled, false)
    // every call libp2p makes is accepted and prints nothing
    log('opened %s', 'x')
    log.error('failed %e', new Error('boom'))
    scoped.trace('bytes %d', 3)
  })
})
