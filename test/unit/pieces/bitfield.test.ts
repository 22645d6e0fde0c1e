import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Bitfield } from '../../../shared/pieces/bitfield.js'

describe('Bitfield', () => {
  it('sets, tests and counts pieces', () => {
    const b = new Bitfield(13)
    assert.equal(b.count, 0)
    assert.equal(b.complete, false)
    assert.equal(b.set(0), true)
    assert.equal(b.set(12), true)
    assert.equal(b.set(7), true)
    assert.equal(b.set(7), false, 'setting twice reports no change')
    assert.equal(b.count, 3)
    assert.equal(b.has(0), true)
    assert.equal(b.has(7), true)
    assert.equal(b.has(8), false)
    assert.equal(b.has(12), true)
    assert.deepEqual(b.missing(), [1, 2, 3, 4, 5, 6, 8, 9, 10, 11])
  })

  it('is complete once every piece is set', () => {
    const b = new Bitfield(9)
    for (let i = 8; i >= 0; i--) {
      assert.equal(b.complete, false)
      b.set(i)
    }
    assert.equal(b.complete, true)
    assert.equal(b.count, 9)
    assert.deepEqual(b.missing(), [])
  })

  it('treats an empty bitfield as complete', () => {
    const b = new Bitfield(0)
    assert.equal(b.complete, true)
    assert.equal(b.count, 0)
    assert.equal(b.has(0), false)
    assert.equal(b.toBase64(), '')
  })

  it('rejects indexes out of range on set and reports them not held', () => {
    const b = new Bitfield(10)
    for (const i of [-1, 10, 11, 1000, 1.5, Number.NaN]) {
      assert.throws(() => b.set(i), { name: 'RangeError' }, `set(${i})`)
      assert.equal(b.has(i), false, `has(${i})`)
    }
    assert.equal(b.count, 0)
  })

  it('round trips through base64', () => {
    const b = new Bitfield(21)
    for (const i of [0, 3, 8, 15, 16, 20]) b.set(i)
    const c = Bitfield.fromBase64(21, b.toBase64())
    assert.equal(c.count, 6)
    assert.deepEqual(c.missing(), b.missing())
    assert.deepEqual(c.toBytes(), b.toBytes())
    assert.equal(c.toBase64(), b.toBase64())
  })

  it('ignores padding bits and extra bytes when loading garbage', () => {
    const b = new Bitfield(13, new Uint8Array([0xff, 0xff, 0xff, 0xff]))
    assert.equal(b.count, 13)
    assert.equal(b.complete, true)
    assert.equal(b.has(13), false)
    assert.deepEqual([...b.toBytes()], [0xff, 0xf8])
    // a fresh bitfield with the same pieces set is byte-identical
    const same = new Bitfield(13)
    for (let i = 0; i < 13; i++) same.set(i)
    assert.equal(same.toBase64(), b.toBase64())

    const g = Bitfield.fromBase64(5, Buffer.from([0b10101111]).toString('base64'))
    assert.equal(g.count, 3)
    assert.deepEqual(g.missing(), [1, 3])
  })

  it('loads short input as the pieces it covers', () => {
    const b = new Bitfield(20, new Uint8Array([0x80]))
    assert.equal(b.count, 1)
    assert.equal(b.has(0), true)
    assert.equal(b.missing().length, 19)
    // an empty string (a hello from a peer that knows nothing yet) is an empty bitfield
    assert.equal(Bitfield.fromBase64(20, '').count, 0)
    const fromJunk = Bitfield.fromBase64(16, '!!not base64!!')
    assert.ok(fromJunk.count <= 16)
    assert.equal(fromJunk.count, 16 - fromJunk.missing().length)
  })

  it('hands out copies of its bytes', () => {
    const b = new Bitfield(8)
    const bytes = b.toBytes()
    bytes[0] = 0xff
    assert.equal(b.count, 0)
    assert.equal(b.has(0), false)
  })
})
