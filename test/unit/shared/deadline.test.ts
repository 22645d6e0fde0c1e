import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { Deadline } from '../../../shared/deadline.js'
import { TimeoutError } from '../../../shared/errors.js'

describe('Deadline', () => {
  it('aborts with its reason when the time is up', async () => {
    const d = new Deadline(undefined, 5, () => new TimeoutError('too slow'))
    await once(d.signal, 'abort')
    assert.ok(d.signal.reason instanceof TimeoutError)
    assert.equal((d.signal.reason as Error).message, 'too slow')
    d.clear()
  })

  it('aborts with the parent\'s reason, also when the parent was aborted before', () => {
    const parent = new AbortController()
    const d = new Deadline(parent.signal, 60_000, () => new TimeoutError())
    const why = new Error('client went away')
    parent.abort(why)
    assert.equal(d.signal.reason, why)
    d.clear()
    const late = new Deadline(parent.signal, 60_000, () => new TimeoutError())
    assert.equal(late.signal.reason, why)
    late.clear()
  })

  it('once cleared, neither the timer nor the parent aborts it, and the parent keeps no listener', async () => {
    const parent = new AbortController()
    let added = 0
    let removed = 0
    const add = parent.signal.addEventListener.bind(parent.signal)
    const remove = parent.signal.removeEventListener.bind(parent.signal)
    parent.signal.addEventListener = (...args: Parameters<typeof add>) => { added++; add(...args) }
    parent.signal.removeEventListener = (...args: Parameters<typeof remove>) => { removed++; remove(...args) }
    const d = new Deadline(parent.signal, 5, () => new TimeoutError())
    d.clear()
    await new Promise(resolve => setTimeout(resolve, 30))
    parent.abort(new Error('later'))
    assert.equal(d.signal.aborted, false)
    assert.deepEqual([added, removed], [1, 1])
  })

  it('on a progress rule, runs on while the count moves and aborts once it stands still', async () => {
    let count = 0
    const moving = setInterval(() => { count++ }, 10)
    const d = new Deadline(undefined, 100, () => new TimeoutError('stood still'), { progress: () => count, maxMs: 60_000, tooLong: () => new TimeoutError('too long') })
    try {
      // three and a half timeouts, moving all along
      await new Promise(resolve => setTimeout(resolve, 350))
      assert.equal(d.signal.aborted, false)
      clearInterval(moving)
      const stoppedAt = count
      await once(d.signal, 'abort')
      assert.equal((d.signal.reason as Error).message, 'stood still')
      assert.equal(count, stoppedAt)
    } finally {
      clearInterval(moving)
      d.clear()
    }
  })

  it('on a progress rule, aborts at maxMs with its own reason although the count always moves', async () => {
    // a count that is different at every look: never standing still
    let looks = 0
    const d = new Deadline(undefined, 50, () => new TimeoutError('stood still'), { progress: () => ++looks, maxMs: 200, tooLong: () => new TimeoutError('too long') })
    try {
      await once(d.signal, 'abort')
      assert.equal((d.signal.reason as Error).message, 'too long')
      // started over at every look before the ceiling
      assert.ok(looks >= 4, `looked ${looks} times`)
    } finally {
      d.clear()
    }
  })

  it('armed again once cleared, hands out the same signal until one aborts, then a fresh one', async () => {
    const d = new Deadline()
    assert.equal(d.busy, false)
    const first = d.arm(undefined, 60_000, () => new TimeoutError('first'))
    assert.equal(d.busy, true)
    assert.throws(() => d.arm(undefined, 60_000, () => new TimeoutError()), /armed twice/)
    d.clear()
    const second = d.arm(undefined, 5, () => new TimeoutError('second'))
    assert.equal(second, first)
    await once(second, 'abort')
    assert.equal((second.reason as Error).message, 'second')
    d.clear()
    // the aborted signal is not handed out again; the fresh one answers to its own parent
    const parent = new AbortController()
    const third = d.arm(parent.signal, 60_000, () => new TimeoutError('third'))
    assert.notEqual(third, second)
    assert.equal(third.aborted, false)
    const why = new Error('caller gave up')
    parent.abort(why)
    assert.equal(third.reason, why)
    d.clear()
  })
})
