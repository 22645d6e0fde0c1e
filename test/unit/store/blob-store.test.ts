import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { randomBytes } from 'node:crypto'
import { BlobStore } from '../../../shared/store/blob-store.js'
import { digestOf, sha256Hex } from '../../../shared/oci/digest.js'
import { newManifest } from '../../../shared/pieces/piece-manifest.js'
import { collect, rejectsWithName } from '../../helpers/assertions.js'
import { tempStores } from '../../helpers/stores.js'
import { makeBlob as makeTestBlob, type TestBlob } from '../../helpers/blobs.js'

const tick = async (): Promise<void> => { await new Promise(resolve => setImmediate(resolve)) }
const PIECE = 256 << 10

const makeBlob = (size: number, pieceSize = PIECE): TestBlob => makeTestBlob(size, pieceSize)

describe('BlobStore', () => {
  const stores = tempStores('blob-store')

  /** A fresh store in its own directory (or a second store over `dir`). */
  async function newStore (dir = stores.dir()): Promise<BlobStore> {
    return await stores.open({ dir })
  }

  it('writes pieces out of order, reads them back, commits and serves the complete blob', async () => {
    const store = await newStore()
    const blob = makeBlob(3 * PIECE + 1234)
    const p = await store.openPartial(blob.manifest())
    assert.equal(p.bitfield.count, 0)
    assert.equal(await store.getComplete(blob.digest), undefined)

    for (const i of [3, 0, 2]) await p.writePiece(i, blob.piece(i))
    assert.equal(p.complete, false)
    assert.deepEqual(p.bitfield.missing(), [1])
    assert.equal(await p.readPiece(1), undefined)
    assert.equal(await store.readPiece(blob.digest, 1), undefined)
    for (const i of [0, 2, 3]) {
      assert.deepEqual(Buffer.from((await p.readPiece(i))!), blob.piece(i))
      assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, i))!), blob.piece(i))
    }
    assert.equal(await store.getComplete(blob.digest), undefined, 'complete before commit')

    await p.writePiece(1, blob.piece(1))
    assert.equal(p.complete, true)
    await store.commit(p)

    const complete = await store.getComplete(blob.digest)
    assert.equal(complete?.size, blob.bytes.length)
    assert.deepEqual(complete?.manifest.pieces, blob.manifest().pieces)
    assert.equal(await store.getPartial(blob.digest), undefined)
    assert.deepEqual((await store.listComplete()).map(d => d.value), [blob.digest.value])
    assert.deepEqual((await store.getManifest(blob.digest))?.pieces, blob.manifest().pieces)

    assert.deepEqual(await collect(await store.createReadStream(blob.digest)), blob.bytes)
    const ranges = [[0, 0], [5, PIECE + 10], [PIECE, 2 * PIECE - 1], [blob.bytes.length - 1, blob.bytes.length - 1], [0, blob.bytes.length - 1]]
    for (const [start, end] of ranges) {
      const got = await collect(await store.createReadStream(blob.digest, { start, end }))
      assert.deepEqual(got, blob.bytes.subarray(start, end + 1), `range ${start}-${end}`)
    }
    for (const [start, end] of [[-1, 3], [0, blob.bytes.length], [10, 5], [blob.bytes.length, blob.bytes.length]]) {
      await rejectsWithName(store.createReadStream(blob.digest, { start, end }), 'InvalidRangeError')
    }
    await rejectsWithName(store.createReadStream(digestOf('not stored')), 'BlobUnknownError')

    for (let i = 0; i < blob.count; i++) {
      assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, i))!), blob.piece(i))
    }
    assert.equal(await store.readPiece(blob.digest, blob.count), undefined)
    assert.equal(await store.readPiece(blob.digest, -1), undefined)
    assert.equal(await store.readPiece(digestOf('not stored'), 0), undefined)

    // a second store over the same directory finds it on disk
    const again = await newStore(store.layout.root)
    assert.equal((await again.getComplete(blob.digest))?.size, blob.bytes.length)
    assert.deepEqual(Buffer.from((await again.readPiece(blob.digest, 3))!), blob.piece(3))
  })

  it('refuses a piece whose bytes do not match its hash and marks nothing held', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE + 7)
    const p = await store.openPartial(blob.manifest())
    const wrong = Buffer.from(blob.piece(0))
    wrong[100] ^= 0xff
    await rejectsWithName(p.writePiece(0, wrong), 'DigestMismatchError')
    // a caller-supplied hash is checked against the manifest too
    await rejectsWithName(p.writePiece(0, wrong, sha256Hex(wrong)), 'DigestMismatchError')
    await rejectsWithName(p.writePiece(2, Buffer.alloc(8)), 'ProtocolError')
    await rejectsWithName(p.writePiece(3, Buffer.alloc(7)), 'ProtocolError')
    assert.equal(p.bitfield.count, 0)
    assert.equal(p.bitfield.has(0), false)
    assert.equal(await p.readPiece(0), undefined)
    assert.equal(await store.readPiece(blob.digest, 0), undefined)

    await p.writePiece(0, blob.piece(0))
    assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, 0))!), blob.piece(0))
  })

  it('stores a piece given in the chunks it arrived in, byte for byte, and checks the chunks as one', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE + 5)
    const p = await store.openPartial(blob.manifest())
    const chunksOf = (b: Uint8Array, cuts: number[]): Uint8Array[] => [0, ...cuts].map((c, i, all) => b.subarray(c, all[i + 1] ?? b.byteLength))
    const wrong = Buffer.from(blob.piece(1))
    wrong[PIECE - 1] ^= 0x01
    await rejectsWithName(p.writePiece(1, chunksOf(wrong, [1, 65_536, PIECE - 1])), 'DigestMismatchError')
    await rejectsWithName(p.writePiece(1, chunksOf(blob.piece(1), [10]).slice(1)), 'ProtocolError')
    assert.equal(p.bitfield.count, 0)

    await p.writePiece(0, chunksOf(blob.piece(0), [1, 65_519, 131_038, 200_000]))
    await p.writePiece(1, [blob.piece(1)])
    await p.writePiece(2, chunksOf(blob.piece(2), [2]))
    for (let i = 0; i < 3; i++) assert.deepEqual(Buffer.from((await p.readPiece(i))!), blob.piece(i))
    await store.commit(p)
    assert.deepEqual(await collect(await store.createReadStream(blob.digest)), blob.bytes)
  })

  it('discards a blob whose bytes do not hash to its digest at commit', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE + 99)
    const p = await store.openPartial(blob.bare())
    for (let i = 0; i < blob.count; i++) await p.writePiece(i, randomBytes(blob.piece(i).length))
    assert.equal(p.complete, true)
    await rejectsWithName(store.commit(p), 'DigestMismatchError')

    assert.equal(await store.getComplete(blob.digest), undefined)
    assert.equal(await store.getPartial(blob.digest), undefined)
    assert.equal(await store.readPiece(blob.digest, 0), undefined)
    assert.deepEqual(await store.listComplete(), [])
    await rejectsWithName(stat(store.layout.partialEntry(blob.digest)), 'Error')
    await rejectsWithName(stat(store.layout.completeDir(blob.digest)), 'Error')

    // and the digest can be fetched again from scratch
    const fresh = await store.openPartial(blob.manifest())
    assert.equal(fresh.bitfield.count, 0)
  })

  it('hashes the whole file at a vouched commit once a piece was found rotten', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE + 99)
    const p = await store.openPartial(blob.manifest())
    for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))
    // a piece rots on disk after it was written and checked
    const fh = await open(store.layout.partialData(blob.digest), 'r+')
    await fh.write(Buffer.from([blob.piece(1)[5] ^ 0xff]), 0, 1, PIECE + 5)
    await fh.close()
    store.distrustPartial(blob.digest)
    assert.equal(p.suspect, true)
    await rejectsWithName(store.commit(p, { verified: true }), 'DigestMismatchError')
    assert.equal(await store.getComplete(blob.digest), undefined)
  })

  it('keeps the pieces held when commit is called too early', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE)
    const p = await store.openPartial(blob.manifest())
    await p.writePiece(1, blob.piece(1))
    await assert.rejects(store.commit(p))
    assert.equal(await store.getComplete(blob.digest), undefined)
    assert.equal(await store.getPartial(blob.digest), p)
    assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, 1))!), blob.piece(1))
    await p.writePiece(0, blob.piece(0))
    await store.commit(p)
    assert.deepEqual(await collect(await store.createReadStream(blob.digest)), blob.bytes)
  })

  it('resumes a partial blob in a new store over the same directory', async () => {
    const dir = stores.dir()
    const first = await newStore(dir)
    const blob = makeBlob(4 * PIECE + 3)
    // hashes unknown up front: the store must persist the ones it learns
    const p = await first.openPartial(blob.bare())
    await p.writePiece(2, blob.piece(2))
    await p.writePiece(0, blob.piece(0))
    await p.writePiece(4, blob.piece(4))
    await first.close()

    const second = await newStore(dir)
    const resumed = await second.getPartial(blob.digest)
    assert.ok(resumed != null)
    assert.notEqual(resumed, p)
    assert.deepEqual(resumed.bitfield.missing(), [1, 3])
    assert.equal(resumed.bitfield.count, 3)
    for (const i of [0, 2, 4]) {
      assert.equal(resumed.manifest.pieces[i], sha256Hex(blob.piece(i)))
      assert.deepEqual(Buffer.from((await second.readPiece(blob.digest, i))!), blob.piece(i))
    }
    assert.equal(await second.readPiece(blob.digest, 1), undefined)
    // openPartial with the same shape resumes the same object
    assert.equal(await second.openPartial(blob.manifest()), resumed)

    await resumed.writePiece(1, blob.piece(1))
    await resumed.writePiece(3, blob.piece(3))
    await second.commit(resumed)
    assert.deepEqual(await collect(await second.createReadStream(blob.digest)), blob.bytes)
  })

  it('saves no partial state for a blob that completes within the save interval, and none at its commit', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE + 5)
    const p = await store.openPartial(blob.manifest())
    const statePath = store.layout.partialState(blob.digest)
    await rejectsWithName(stat(statePath), 'Error')
    for (let i = 0; i < 3; i++) await p.writePiece(i, blob.piece(i))
    // a directory where the state would go: any save of it now fails the blob, and the commit with it
    await mkdir(statePath)
    await store.commit(p)
    await rejectsWithName(stat(store.layout.partialEntry(blob.digest)), 'Error')
    assert.deepEqual(await collect(await store.createReadStream(blob.digest)), blob.bytes)
  })

  it('starts afresh a partial blob whose data an earlier run left without any state', async () => {
    const dir = stores.dir()
    const first = await newStore(dir)
    const blob = makeBlob(2 * PIECE)
    const p = await first.openPartial(blob.manifest())
    await p.writePiece(0, blob.piece(0))
    // not saved yet; a close saves it, so the state is removed after, as a crash would have left it
    await rejectsWithName(stat(first.layout.partialState(blob.digest)), 'Error')
    await first.close()
    await rm(first.layout.partialState(blob.digest))

    const second = await newStore(dir)
    assert.equal(second.usedBytes, blob.bytes.length, 'the left data is counted against the quota')
    assert.equal(await second.getPartial(blob.digest), undefined, 'no state: nothing to resume')
    const fresh = await second.openPartial(blob.manifest())
    assert.equal(fresh.bitfield.count, 0)
    for (let i = 0; i < 2; i++) await fresh.writePiece(i, blob.piece(i))
    await second.commit(fresh)
    assert.deepEqual(await collect(await second.createReadStream(blob.digest)), blob.bytes)
  })

  it('discards a partial blob whose state it cannot trust', async () => {
    const blob = makeBlob(2 * PIECE + 1)
    const other = makeBlob(2 * PIECE + 1)
    const corruptions: Array<[string, (state: string) => string]> = [
      ['garbage', () => '{"manifest": {"digest'],
      ['not an object', () => 'null'],
      ['empty object', () => '{}'],
      ['another blob', state => state.replaceAll(blob.digest.hex, other.digest.hex)],
      ['bad piece count', state => { const s = JSON.parse(state); s.manifest.pieces.pop(); return JSON.stringify(s) }],
      ['a held piece without a hash', state => { const s = JSON.parse(state); s.manifest.pieces[1] = null; s.bitfield = Buffer.from([0xff]).toString('base64'); return JSON.stringify(s) }]
    ]
    for (const [what, corrupt] of corruptions) {
      const dir = stores.dir()
      const first = await newStore(dir)
      const p = await first.openPartial(blob.bare())
      await p.writePiece(0, blob.piece(0))
      await p.writePiece(1, blob.piece(1))
      await first.close()
      const statePath = first.layout.partialState(blob.digest)
      await writeFile(statePath, corrupt(await readFile(statePath, 'utf8')))

      const second = await newStore(dir)
      assert.equal(await second.getPartial(blob.digest), undefined, what)
      await rejectsWithName(stat(second.layout.partialEntry(blob.digest)), 'Error')
      assert.equal(await second.readPiece(blob.digest, 0), undefined, what)
      const fresh = await second.openPartial(blob.manifest())
      assert.equal(fresh.bitfield.count, 0, what)
    }
  })

  it('discards a partial blob whose data file is missing or the wrong size', async () => {
    const blob = makeBlob(PIECE + 1)
    for (const damage of ['missing', 'short'] as const) {
      const dir = stores.dir()
      const first = await newStore(dir)
      const p = await first.openPartial(blob.manifest())
      await p.writePiece(0, blob.piece(0))
      await first.close()
      const data = first.layout.partialData(blob.digest)
      if (damage === 'missing') await rm(data)
      else await writeFile(data, blob.piece(0))
      const second = await newStore(dir)
      assert.equal(await second.getPartial(blob.digest), undefined, damage)
    }
  })

  for (const verified of [false, true]) {
    it(`never answers undefined for a held piece while it is committed (verified: ${String(verified)})`, async () => {
      const store = await newStore()
      const blob = makeBlob(6 * PIECE + 17)
      const p = await store.openPartial(blob.manifest())
      for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))

      let committed = false
      let afterCommit = 0
      const reader = async (seed: number): Promise<number> => {
        let reads = 0
        for (let k = 0; reads < 100 || !committed || afterCommit < 20; k++) {
          const i = (seed + k) % blob.count
          const was = committed
          const bytes = await store.readPiece(blob.digest, i)
          assert.ok(bytes != null, `piece ${i} was not found (read ${reads}, committed ${String(committed)})`)
          assert.ok(Buffer.from(bytes).equals(blob.piece(i)), `piece ${i} has the wrong bytes`)
          if (was) afterCommit++
          reads++
          if (k % 8 === 0) await tick()
        }
        return reads
      }
      const readers = [0, 1, 2, 3].map(async s => await reader(s))
      try {
        await store.commit(p, { verified })
      } finally {
        committed = true
      }
      const counts = await Promise.all(readers)
      assert.ok(counts.reduce((a, b) => a + b) >= 400)
      assert.equal((await store.getComplete(blob.digest))?.size, blob.bytes.length)
    })
  }

  it('never loses a blob that is looked up while it is committed', async () => {
    const store = await newStore()
    for (let round = 0; round < 20; round++) {
      const blob = makeBlob(2 * PIECE + round)
      const p = await store.openPartial(blob.manifest())
      for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))
      let committed = false
      const lookers = Array.from({ length: 8 }, async () => {
        while (!committed) {
          const found = await store.getComplete(blob.digest)
          if (found != null) {
            assert.equal(found.size, blob.bytes.length)
            // a cached answer settles in microtasks only: let the commit's I/O run
            await tick()
          }
        }
      })
      try {
        await store.commit(p, { verified: true })
      } finally {
        committed = true
        await Promise.all(lookers)
      }
      assert.equal((await store.getComplete(blob.digest))?.size, blob.bytes.length, `round ${round}`)
      assert.deepEqual(await collect(await store.createReadStream(blob.digest)), blob.bytes, `round ${round}`)
    }
  })

  it('shares one partial blob between concurrent openers', async () => {
    const store = await newStore()
    for (let round = 0; round < 30; round++) {
      const blob = makeBlob(PIECE)
      const opened = store.openPartial(blob.manifest())
      const lookups: Array<Promise<unknown>> = []
      for (let k = 0; k < 8; k++) {
        lookups.push(store.getPartial(blob.digest))
        await tick()
      }
      const p = await opened
      for (const found of await Promise.all(lookups)) {
        assert.ok(found === undefined || found === p, 'a second PartialBlob was opened for one digest')
      }
      assert.equal(await store.getPartial(blob.digest), p)
    }
  })

  it('commits and serves a zero-byte blob', async () => {
    const store = await newStore()
    const empty = digestOf(new Uint8Array(0))
    const p = await store.openPartial(newManifest(empty, 0, PIECE))
    assert.equal(p.complete, true)
    assert.deepEqual(p.manifest.pieces, [])
    await store.commit(p)
    const complete = await store.getComplete(empty)
    assert.equal(complete?.size, 0)
    assert.equal((await collect(await store.createReadStream(empty))).length, 0)
    await rejectsWithName(store.createReadStream(empty, { start: 0, end: 0 }), 'InvalidRangeError')
    assert.equal(await store.readPiece(empty, 0), undefined)
  })

  it('serves the bytes committed after a removal, not those of the file a piece read kept open', async () => {
    const store = await newStore()
    const blob = makeBlob(2 * PIECE)
    const commitBytes = async (bytes: Buffer): Promise<void> => {
      // a manifest without piece hashes, vouched at commit: the store takes whatever bytes it is given
      const p = await store.openPartial(blob.bare())
      for (let i = 0; i < blob.count; i++) await p.writePiece(i, bytes.subarray(i * PIECE, (i + 1) * PIECE))
      await store.commit(p, { verified: true })
    }
    const rotten = Buffer.alloc(2 * PIECE, 0x55)
    await commitBytes(rotten)
    assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, 0))!), rotten.subarray(0, PIECE))
    // found rotten, removed, fetched again
    await store.remove(blob.digest)
    assert.equal(await store.readPiece(blob.digest, 0), undefined)
    await commitBytes(blob.bytes)
    for (let i = 0; i < blob.count; i++) assert.deepEqual(Buffer.from((await store.readPiece(blob.digest, i))!), blob.piece(i), `piece ${i}`)
  })

  it('drops a complete entry whose data is missing', async () => {
    const dir = stores.dir()
    const first = await newStore(dir)
    const blob = makeBlob(PIECE + 5)
    const p = await first.openPartial(blob.manifest())
    for (let i = 0; i < blob.count; i++) await p.writePiece(i, blob.piece(i))
    await first.commit(p)
    await rm(first.layout.completeData(blob.digest))
    const second = await newStore(dir)
    assert.equal(await second.getComplete(blob.digest), undefined)
    await rejectsWithName(stat(second.layout.completeDir(blob.digest)), 'Error')
  })
})
