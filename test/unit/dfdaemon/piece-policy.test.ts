import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { RarestFirstPolicy, SequentialPolicy, type PickContext } from '../../../dfdaemon/swarm/piece-policy.js'

/** A context where piece i is held by `counts[i]` sources. */
function ctx (counts: Record<number, number>, urgent?: number): PickContext {
  return { availability: (i) => counts[i] ?? 0, ...(urgent !== undefined ? { urgent } : {}) }
}

/** A deterministic stand-in for Math.random: a small linear congruential generator. */
function seeded (seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

describe('RarestFirstPolicy', () => {
  it('picks the piece the fewest sources hold', () => {
    const policy = new RarestFirstPolicy({ random: () => 0.5 })
    assert.equal(policy.pick([0, 1, 2, 3], ctx({ 0: 5, 1: 3, 2: 1, 3: 4 })), 2)
    assert.equal(policy.pick([7, 3, 9], ctx({ 7: 2, 3: 9, 9: 1 })), 9)
    // availability 0 (only the asked source, not yet counted) is rarer still
    assert.equal(policy.pick([4, 5], ctx({ 4: 1 })), 5)
  })

  it('has nothing to pick from no candidates', () => {
    assert.equal(new RarestFirstPolicy().pick([], ctx({})), undefined)
    assert.equal(new RarestFirstPolicy().pick([], ctx({}, 0)), undefined)
  })

  it('never picks a more common piece over a rarer one, whatever the random source says', () => {
    for (const r of [0, 0.25, 0.5, 0.999]) {
      const policy = new RarestFirstPolicy({ random: () => r })
      for (let n = 0; n < 50; n++) {
        const picked = policy.pick([0, 1, 2, 3, 4, 5], ctx({ 0: 3, 1: 2, 2: 3, 3: 2, 4: 5, 5: 2 }))
        assert.ok(picked === 1 || picked === 3 || picked === 5, `picked ${String(picked)}`)
      }
    }
  })

  it('breaks ties with the injected random source', () => {
    const counts = ctx({ 0: 2, 1: 2, 2: 2, 3: 9 })
    const low = new RarestFirstPolicy({ random: () => 0 }).pick([0, 1, 2, 3], counts)
    const high = new RarestFirstPolicy({ random: () => 0.999 }).pick([0, 1, 2, 3], counts)
    assert.ok(low !== undefined && [0, 1, 2].includes(low))
    assert.ok(high !== undefined && [0, 1, 2].includes(high))
    assert.notEqual(low, high, 'different random draws give different picks among the tied pieces')
  })

  it('over many calls picks every tied piece, and only those', () => {
    const policy = new RarestFirstPolicy({ random: seeded(42) })
    const candidates = [10, 11, 12, 13, 14, 15]
    const counts = ctx({ 10: 1, 11: 4, 12: 1, 13: 1, 14: 3, 15: 1 })
    const seen = new Map<number, number>()
    const CALLS = 2000
    for (let n = 0; n < CALLS; n++) {
      const p = policy.pick(candidates, counts)
      assert.ok(p !== undefined)
      seen.set(p, (seen.get(p) ?? 0) + 1)
    }
    assert.deepEqual([...seen.keys()].sort((a, b) => a - b), [10, 12, 13, 15])
    // reservoir sampling is uniform: each of the 4 tied pieces about a quarter of the time
    for (const [piece, n] of seen) assert.ok(n > CALLS / 8, `piece ${piece} picked ${n} of ${CALLS} times`)
  })

  it('lets the lowest candidate within the urgent window win over rarity', () => {
    const policy = new RarestFirstPolicy({ urgentWindow: 2, random: () => 0.5 })
    const counts = ctx({ 0: 1, 3: 9, 4: 9, 5: 9, 6: 9 })
    assert.equal(policy.pick([0, 4, 5, 6], { ...counts, urgent: 4 }), 4)
    assert.equal(policy.pick([0, 5, 6], { ...counts, urgent: 4 }), 5, 'urgent + 1 is still inside a window of 2')
    assert.equal(policy.pick([0, 6], { ...counts, urgent: 4 }), 0, 'outside the window rarity decides again')
    assert.equal(policy.pick([0, 3, 6], { ...counts, urgent: 4 }), 0, 'pieces before the urgent one are not urgent')
  })

  it('has an urgent window of 2 by default and a wider one when asked', () => {
    const counts = ctx({ 0: 1, 7: 5 })
    assert.equal(new RarestFirstPolicy().pick([0, 7], { ...counts, urgent: 5 }), 0)
    assert.equal(new RarestFirstPolicy().pick([0, 6], { ...counts, urgent: 5 }), 6)
    assert.equal(new RarestFirstPolicy({ urgentWindow: 3 }).pick([0, 7], { ...counts, urgent: 5 }), 7)
  })
})

describe('SequentialPolicy', () => {
  it('picks the lowest index, whatever the order and availability', () => {
    const policy = new SequentialPolicy()
    assert.equal(policy.pick([5, 3, 9, 4]), 3)
    assert.equal(policy.pick([0]), 0)
    assert.equal(policy.pick([]), undefined)
    const asPolicy: { pick: (c: readonly number[], x: PickContext) => number | undefined } = policy
    assert.equal(asPolicy.pick([8, 2, 6], ctx({ 2: 9, 6: 1, 8: 1 })), 2)
  })
})
