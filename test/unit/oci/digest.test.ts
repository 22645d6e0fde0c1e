import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { DigestHasher, digestOf, isDigest, parseDigest, sha256Hex } from '../../../shared/oci/digest.js'

const HEX = createHash('sha256').update('hello').digest('hex')

describe('digest', () => {
  it('parses sha256 digests', () => {
    assert.deepEqual(parseDigest(`sha256:${HEX}`), { algorithm: 'sha256', hex: HEX, value: `sha256:${HEX}` })
    assert.ok(isDigest(`sha256:${HEX}`))
  })

  it('rejects malformed and unsupported digests', () => {
    for (const bad of ['', 'sha256', 'sha256:', `sha256:${HEX.slice(1)}`, `sha256:${HEX}0`, `sha256:${HEX.toUpperCase()}`,
      `SHA256:${HEX}`, `sha512:${'a'.repeat(128)}`, `md5:${HEX}`, ` sha256:${HEX}`, `sha256:${HEX}\n`, 'x'.repeat(300)]) {
      assert.throws(() => parseDigest(bad), (err: Error) => err.name === 'InvalidDigestError', JSON.stringify(bad))
      assert.equal(isDigest(bad), false)
    }
  })

  it('hashes data at once and incrementally', () => {
    assert.equal(sha256Hex('hello'), HEX)
    assert.equal(digestOf(Buffer.from('hello')).value, `sha256:${HEX}`)
    const h = new DigestHasher()
    h.update(Buffer.from('he'))
    h.update(Buffer.from('llo'))
    assert.equal(h.length, 5)
    assert.equal(h.digest().value, `sha256:${HEX}`)
  })
})
