import { describe, it, afterEach } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'
import { RateLimiter } from '../../../shared/rate-limiter.js'

const clocks: Array<{ advance: (ms: number) => void }> = []

/** A clock the test moves by hand (milliseconds, like performance.now()). */
function fakeClock (): { now: () => number, advance: (ms: number) => void } {
  let t = 1_000
  const clock = { now: () => t, advance: (ms: number) => { t += ms } }
  clocks.push(clock)
  return clock
}

/** Whether `p` has settled after the queued microtasks and a short real pause have run. */
async function settled (p: Promise<unknown>, pauseMs = 20): Promise<boolean> {
  let done = false
  p.then(() => { done = true }, () => { done = true })
  await sleep(pauseMs)
  return done
}

/** Wait (bounded) until `p` settles; the bound is a deadline for a hang, not a speed check. */
async function within<T> (p: Promise<T>, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => { reject(new Error(`not settled within ${ms} ms`)) }, ms) })
  try {
    return await Promise.race([p, deadline])
  } finally {
    clearTimeout(timer)
  }
}

describe('RateLimiter', () => {
  // a failed test may leave waiters re-checking a clock nobody moves: pay every debt so they end
  afterEach(() => { for (const c of clocks.splice(0)) c.advance(1e12) })

  it('refuses a rate that is not positive', () => {
    for (const r of [0, -1, Number.NaN]) assert.throws(() => new RateLimiter(r), { name: 'RangeError' })
  })

  it('grants a take within the burst at once, then owes the debt at the configured rate', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(1000, { burst: 1000, now: clock.now })
    assert.equal(limiter.delayFor(), 0)
    await within(limiter.take(600))
    assert.equal(limiter.delayFor(), 0, '400 tokens left')
    await within(limiter.take(1000)) // granted: the bucket was not empty; 600 bytes in debt now
    assert.equal(limiter.delayFor(), 600, 'debt / rate: 600 bytes at 1000 B/s')
    clock.advance(250)
    assert.equal(limiter.delayFor(), 350, 'time pays the debt back')
    clock.advance(350)
    assert.equal(limiter.delayFor(), 0)
  })

  it('refills over time up to the burst, never beyond it', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(2000, { burst: 500, now: clock.now })
    await within(limiter.take(500))
    await within(limiter.take(500))
    assert.equal(limiter.delayFor(), 250, '500 bytes owed at 2000 B/s')
    clock.advance(60_000) // a long idle spell fills the bucket to its burst only
    assert.equal(limiter.delayFor(), 0)
    await within(limiter.take(500))
    assert.equal(limiter.delayFor(), 0, 'exactly the burst: nothing owed')
    await within(limiter.take(100))
    assert.equal(limiter.delayFor(), 50, 'the idle minute did not bank more than the burst')
  })

  it('defaults the burst to one second of the rate', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(800, { now: clock.now })
    await within(limiter.take(800))
    assert.equal(limiter.delayFor(), 0)
    await within(limiter.take(80))
    assert.equal(limiter.delayFor(), 100)
  })

  it('grants a take larger than the burst, and the next take waits until it is paid back', async () => {
    const clock = fakeClock()
    // a high rate keeps the real timers between re-checks tiny; the fake clock decides when the debt is paid
    const limiter = new RateLimiter(1_000_000, { burst: 1000, now: clock.now })
    await within(limiter.take(5000))
    assert.equal(limiter.delayFor(), 4, '4000 bytes owed at 1 MB/s')
    const next = limiter.take(10)
    assert.equal(await settled(next), false, 'not granted while the debt is unpaid')
    clock.advance(2)
    assert.equal(await settled(next), false, 'half paid is not paid')
    clock.advance(2)
    await within(next)
    assert.equal(limiter.delayFor(), 0.01, 'only the new take is owed')
  })

  it('serves waiters in order', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(1_000_000, { burst: 100, now: clock.now })
    await within(limiter.take(1100))
    const order: number[] = []
    const takes = [1, 2, 3].map(async (n) => { await limiter.take(500); order.push(n) })
    for (let i = 0; i < 3; i++) {
      assert.equal(await settled(Promise.all(takes), 10), false)
      clock.advance(1) // 1000 bytes paid back per fake millisecond
    }
    clock.advance(10)
    await within(Promise.all(takes))
    assert.deepEqual(order, [1, 2, 3])
  })

  it('rejects an aborted waiter with its reason and lets the next one through', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(1_000_000, { burst: 1000, now: clock.now })
    await within(limiter.take(3000))
    const ac = new AbortController()
    const aborted = limiter.take(10, ac.signal)
    const after = limiter.take(10)
    assert.equal(await settled(aborted), false)
    const reason = new Error('gave up')
    reason.name = 'GaveUpError'
    ac.abort(reason)
    await assert.rejects(within(aborted), (err) => err === reason)
    assert.equal(await settled(after), false, 'the debt is still owed')
    clock.advance(2)
    await within(after)
    assert.equal(limiter.delayFor(), 0.01, 'the aborted take was never charged')
  })

  it('rejects a waiter aborted while queued behind another at once, without charging it', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(1_000_000, { burst: 1000, now: clock.now })
    await within(limiter.take(3000))
    const first = limiter.take(1000)
    const ac = new AbortController()
    const queued = limiter.take(1000, ac.signal)
    const last = limiter.take(1000)
    ac.abort(new Error('peer went away'))
    // the head waiter still waits for its debt: the queued one must not wait behind it to learn it was aborted
    await assert.rejects(within(queued), { message: 'peer went away' })
    assert.equal(await settled(first), false)
    clock.advance(2)
    await within(first)
    assert.equal(limiter.delayFor(), 1, 'first charged')
    clock.advance(1)
    await within(last)
    assert.equal(limiter.delayFor(), 1, 'then last, and never the aborted one')
  })

  it('rejects a take whose signal is already aborted without charging it', async () => {
    const clock = fakeClock()
    const limiter = new RateLimiter(1000, { burst: 1000, now: clock.now })
    await assert.rejects(within(limiter.take(10, AbortSignal.abort(new Error('too late')))), { message: 'too late' })
    await within(limiter.take(1000))
    assert.equal(limiter.delayFor(), 0, 'the whole burst was still there')
  })
})
