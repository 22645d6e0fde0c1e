import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import {
  MAX_PIECE_SIZE,
  MIN_PIECE_SIZE,
  TARGET_PIECES,
  pieceAt,
  pieceCount,
  pieceLength,
  pieceRange,
  pieceSizeFor
} from '../../../shared/pieces/piece-math.js'

const MiB = 1 << 20
const GiB = 2 ** 30
const TiB = 2 ** 40

describe('pieceSizeFor', () => {
  const cases: Array<[number, number]> = [
    [0, MIN_PIECE_SIZE],
    [1, MIN_PIECE_SIZE],
    [MiB, MIN_PIECE_SIZE],
    [TARGET_PIECES * MIN_PIECE_SIZE, MIN_PIECE_SIZE], // exactly TARGET_PIECES pieces of the minimum size
    [TARGET_PIECES * MIN_PIECE_SIZE + 1, 2 * MIN_PIECE_SIZE],
    [TARGET_PIECES * MIN_PIECE_SIZE + MiB, 2 * MIN_PIECE_SIZE],
    [10 * GiB, MAX_PIECE_SIZE],
    [2 * TiB, MAX_PIECE_SIZE]
  ]

  for (const [blob, want] of cases) {
    it(`cuts a ${blob}-byte blob into ${want}-byte pieces`, () => {
      assert.equal(pieceSizeFor(blob), want)
    })
  }

  it('stays a power of two within bounds and never shrinks as the blob grows', () => {
    const sizes = [0, 1, 1000, MiB, 64 * MiB, 128 * MiB, 128 * MiB + 1, 129 * MiB, 256 * MiB, 257 * MiB, GiB, 2 * GiB, 10 * GiB, TiB, 2 * TiB]
    let prev = 0
    for (const s of sizes) {
      const p = pieceSizeFor(s)
      assert.ok(p >= MIN_PIECE_SIZE && p <= MAX_PIECE_SIZE, `piece size ${p} for ${s} out of bounds`)
      assert.equal(p & (p - 1), 0, `piece size ${p} is not a power of two`)
      assert.ok(p >= prev, `piece size shrank from ${prev} to ${p} at ${s}`)
      prev = p
    }
  })

  it('keeps to about TARGET_PIECES pieces until the piece size is capped', () => {
    for (const s of [1, 5 * MiB, 128 * MiB, 129 * MiB, 700 * MiB, TARGET_PIECES * MAX_PIECE_SIZE]) {
      assert.ok(pieceCount(s, pieceSizeFor(s)) <= TARGET_PIECES, `too many pieces for ${s}`)
    }
    assert.ok(pieceCount(10 * GiB, pieceSizeFor(10 * GiB)) > TARGET_PIECES)
  })
})

describe('pieceCount, pieceRange, pieceLength, pieceAt', () => {
  it('has no pieces for an empty blob', () => {
    assert.equal(pieceCount(0, MiB), 0)
  })

  const blobs = [1, 1000, MiB - 1, MiB, MiB + 1, 3 * MiB + 7, 128 * MiB, 129 * MiB + 12345, 10 * GiB + 1, 2 * TiB - 3]
  for (const size of blobs) {
    it(`tiles a ${size}-byte blob exactly`, () => {
      const ps = pieceSizeFor(size)
      const n = pieceCount(size, ps)
      assert.equal(n, Math.ceil(size / ps))
      let expectStart = 0
      for (let i = 0; i < n; i++) {
        const { start, end } = pieceRange(size, ps, i)
        assert.equal(start, expectStart, `piece ${i} does not start where ${i - 1} ended`)
        assert.ok(end > start, `piece ${i} is empty`)
        assert.equal(pieceLength(size, ps, i), end - start)
        if (i < n - 1) assert.equal(end - start, ps, `piece ${i} is short but not last`)
        assert.equal(pieceAt(ps, start), i)
        assert.equal(pieceAt(ps, end - 1), i)
        expectStart = end
      }
      assert.equal(expectStart, size, 'pieces do not end at the blob end')
      const last = pieceLength(size, ps, n - 1)
      assert.equal(last, size - (n - 1) * ps)
      assert.ok(last >= 1 && last <= ps)
    })
  }

  it('makes the last piece short when the size is not a multiple of the piece size', () => {
    assert.equal(pieceCount(3 * MiB + 7, MiB), 4)
    assert.equal(pieceLength(3 * MiB + 7, MiB, 3), 7)
    assert.deepEqual(pieceRange(3 * MiB + 7, MiB, 3), { start: 3 * MiB, end: 3 * MiB + 7 })
    assert.equal(pieceLength(4 * MiB, MiB, 3), MiB)
  })
})
