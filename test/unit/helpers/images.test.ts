import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { gunzipSync } from 'node:zlib'
import { digestOf } from '../../../shared/oci/digest.js'
import { makeLayer } from '../../helpers/images.js'

describe('test image layers', () => {
  it('are deterministic gzip tars that tar can list', () => {
    const a = makeLayer({ size: 70_001, seed: 's' }, 'unused')
    const b = makeLayer({ size: 70_001 }, 's')
    assert.equal(digestOf(a.blob).value, digestOf(b.blob).value)
    assert.notEqual(digestOf(makeLayer({ size: 70_001, seed: 't' }, '').blob).value, digestOf(a.blob).value)
    assert.equal(digestOf(gunzipSync(a.blob)).value, a.diffId)
    const listing = execFileSync('tar', ['-tzvf', '-'], { input: a.blob }).toString()
    assert.match(listing, /data\/layer-[0-9a-f]{12}\.bin/)
    assert.match(listing, /70001/)
  })
})
