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
})
