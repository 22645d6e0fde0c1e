import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { contentRange, parseRange, unsatisfiedRange } from '../../../dfdaemon/mirror/range.js'

describe('parseRange', () => {
  it('returns undefined without a header', () => {
    assert.equal(parseRange(undefined, 100), undefined)
  })

  it('parses a closed range', () => {
    assert.deepEqual(parseRange('bytes=0-9', 100), { start: 0, end: 9 })
    assert.deepEqual(parseRange('bytes=10-10', 100), { start: 10, end: 10 })
    assert.deepEqual(parseRange('bytes=0-99', 100), { start: 0, end: 99 })
  })

  it('clamps an end beyond the blob to its last byte', () => {
    assert.deepEqual(parseRange('bytes=90-1000', 100), { start: 90, end: 99 })
  })

  it('parses an open range', () => {
    assert.deepEqual(parseRange('bytes=42-', 100), { start: 42, end: 99 })
  })

  it('parses a suffix range, longer suffixes covering the whole blob', () => {
    assert.deepEqual(parseRange('bytes=-10', 100), { start: 90, end: 99 })
    assert.deepEqual(parseRange('bytes=-500', 100), { start: 0, end: 99 })
  })

  it('accepts a case-insensitive unit and surrounding spaces', () => {
    assert.deepEqual(parseRange('Bytes= 5-6 ', 100), { start: 5, end: 6 })
  })

  it('ignores other units', () => {
    assert.equal(parseRange('items=0-5', 100), undefined)
  })

  it('ignores several well-formed ranges (whole blob is served)', () => {
    assert.equal(parseRange('bytes=0-1, 5-6', 100), undefined)
  })

  const unsatisfiable: Array<[string, string]> = [
    ['start beyond end', 'bytes=100-'],
    ['start beyond end, closed', 'bytes=100-200'],
    ['reversed', 'bytes=9-0'],
    ['zero suffix', 'bytes=-0'],
    ['negative start', 'bytes=-5-10'],
    ['no dash', 'bytes=5'],
    ['empty spec', 'bytes='],
    ['only dash', 'bytes=-'],
    ['letters', 'bytes=a-b'],
    ['no equals', 'bytes 0-5'],
    ['fraction', 'bytes=1.5-3'],
    ['huge number', 'bytes=99999999999999999999-'],
    ['malformed part of a multi-range', 'bytes=0-1,x'],
    ['bad unit token', 'by tes=0-1'],
    ['very long header', `bytes=${'0-1,'.repeat(200)}0-1`]
  ]
  for (const [label, header] of unsatisfiable) {
    it(`refuses ${label} with InvalidRangeError`, () => {
      assert.throws(() => parseRange(header, 100), { name: 'InvalidRangeError', code: 'RANGE_INVALID', status: 416 })
    })
  }

  it('refuses any range of an empty blob', () => {
    assert.throws(() => parseRange('bytes=0-', 0), { name: 'InvalidRangeError' })
    assert.throws(() => parseRange('bytes=-1', 0), { name: 'InvalidRangeError' })
  })

  it('formats Content-Range values', () => {
    assert.equal(contentRange({ start: 0, end: 9 }, 100), 'bytes 0-9/100')
    assert.equal(unsatisfiedRange(100), 'bytes */100')
  })
})
