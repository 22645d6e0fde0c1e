import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { manifestFromWire, manifestToWire, newManifest, type PieceManifestWire } from '../../../shared/pieces/piece-manifest.js'
import { MAX_BLOB_SIZE, MAX_PIECE_SIZE } from '../../../shared/pieces/piece-math.js'
import { digestOf, sha256Hex } from '../../../shared/oci/digest.js'

const MiB = 1 << 20
const DIGEST = digestOf('a blob')
const H = sha256Hex('a piece')

function valid (): PieceManifestWire {
  return { digest: DIGEST.value, size: 3 * MiB + 5, pieceSize: MiB, pieces: [H, null, H, null] }
}

function rejects (input: unknown, name: string): void {
  assert.throws(() => manifestFromWire(input), { name })
}

describe('manifestFromWire', () => {
  it('accepts a valid manifest', () => {
    const m = manifestFromWire(valid())
    assert.equal(m.digest.value, DIGEST.value)
    assert.equal(m.digest.hex, DIGEST.hex)
    assert.equal(m.size, 3 * MiB + 5)
    assert.equal(m.pieceSize, MiB)
    assert.deepEqual(m.pieces, [H, null, H, null])
  })

  it('accepts an empty blob with no pieces', () => {
    const empty = createHash('sha256').digest('hex')
    const m = manifestFromWire({ digest: `sha256:${empty}`, size: 0, pieceSize: MiB, pieces: [] })
    assert.equal(m.size, 0)
    assert.deepEqual(m.pieces, [])
  })

  it('round trips through manifestToWire and copies the pieces array', () => {
    const wire = valid()
    const m = manifestFromWire(wire)
    wire.pieces[1] = H
    assert.equal(m.pieces[1], null, 'the manifest shares its pieces with the input')
    const back = manifestToWire(m)
    assert.deepEqual(back, { ...valid() })
    m.pieces[3] = H
    assert.equal(back.pieces[3], null, 'the wire form shares its pieces with the manifest')
  })

  it('matches what newManifest builds', () => {
    const m = newManifest(DIGEST, 3 * MiB + 5, MiB)
    assert.deepEqual(manifestFromWire(manifestToWire(m)), m)
  })

  it('rejects the wrong number of pieces', () => {
    rejects({ ...valid(), pieces: [H, null, H] }, 'ProtocolError')
    rejects({ ...valid(), pieces: [H, null, H, null, null] }, 'ProtocolError')
    rejects({ ...valid(), size: 0 }, 'ProtocolError')
    rejects({ ...valid(), pieces: [] }, 'ProtocolError')
  })

  it('rejects malformed piece hashes', () => {
    for (const bad of [H.toUpperCase(), H.slice(1), `${H}0`, `sha256:${H}`, '', 42, {}]) {
      rejects({ ...valid(), pieces: [bad, null, H, null] }, 'ProtocolError')
    }
  })

  it('rejects extra and missing keys', () => {
    rejects({ ...valid(), extra: 1 }, 'ProtocolError')
    const { pieceSize: _omit, ...missing } = valid()
    rejects(missing, 'ProtocolError')
  })

  it('rejects bad sizes', () => {
    rejects({ ...valid(), size: -1 }, 'ProtocolError')
    rejects({ ...valid(), size: 1.5 }, 'ProtocolError')
    rejects({ ...valid(), size: '3145733' }, 'ProtocolError')
    rejects({ ...valid(), size: MAX_BLOB_SIZE + 1 }, 'ProtocolError')
    rejects({ ...valid(), pieceSize: 0 }, 'ProtocolError')
    rejects({ ...valid(), pieceSize: -MiB }, 'ProtocolError')
    rejects({ ...valid(), pieceSize: MAX_PIECE_SIZE * 2 }, 'ProtocolError')
  })

  it('rejects inputs that are not manifests', () => {
    for (const bad of [null, undefined, 'manifest', 7, [], [valid()]]) rejects(bad, 'ProtocolError')
  })

  it('rejects digests that are not sha256', () => {
    // an unsupported algorithm short enough to pass the schema is refused by the digest parser
    rejects({ ...valid(), digest: `sha384:${'ab'.repeat(24)}` }, 'InvalidDigestError')
    rejects({ ...valid(), digest: `md5:${'ab'.repeat(16)}` }, 'InvalidDigestError')
    // sha512 is longer than the wire schema allows: refused before parsing
    rejects({ ...valid(), digest: `sha512:${'ab'.repeat(64)}` }, 'ProtocolError')
    rejects({ ...valid(), digest: DIGEST.hex }, 'InvalidDigestError')
    rejects({ ...valid(), digest: `sha256:${DIGEST.hex.toUpperCase()}` }, 'InvalidDigestError')
    rejects({ ...valid(), digest: `sha256:${DIGEST.hex.slice(2)}` }, 'InvalidDigestError')
    rejects({ ...valid(), digest: '' }, 'InvalidDigestError')
  })
})
