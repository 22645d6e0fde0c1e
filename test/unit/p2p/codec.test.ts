import { describe, it, before, after, afterEach, mock } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { Type } from '@sinclair/typebox'
import { encode as encodeVarint } from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { FramedStream, takeFrame, type FramedStreamInit } from '../../../shared/p2p/codec.js'
import { rejectsWithName } from '../../helpers/assertions.js'

const Hello = Type.Object({
  kind: Type.Literal('hello'),
  n: Type.Integer({ minimum: 0 }),
  tags: Type.Array(Type.String())
}, { additionalProperties: false })

describe('FramedStream', () => {
  let open: Stream[] = []
  // in-memory streams hold no handle and AbortSignal.timeout's timer is unref'd:
  // without this the event loop would empty while a deadline is pending
  let keepAlive: NodeJS.Timeout
  before(() => { keepAlive = setInterval(() => {}, 60_000) })
  after(() => { clearInterval(keepAlive) })

  afterEach(() => {
    for (const s of open) s.abort(new Error('test over'))
    open = []
  })

  async function pair (init: FramedStreamInit = {}): Promise<{ a: FramedStream, b: FramedStream, rawA: Stream }> {
    const [rawA, rawB] = await streamPair()
    open.push(rawA, rawB)
    return { a: new FramedStream(rawA, init), b: new FramedStream(rawB, init), rawA }
  }

  it('round trips messages checked against a schema', async () => {
    const { a, b } = await pair()
    const sent = [{ kind: 'hello', n: 1, tags: ['x'] }, { kind: 'hello', n: 2, tags: [] }]
    for (const m of sent) await a.writeMessage(m)
    assert.deepEqual(await b.readMessage(Hello), sent[0])
    assert.deepEqual(await b.readMessage(Hello), sent[1])
    // and back the other way
    await b.writeMessage({ kind: 'hello', n: 3, tags: ['é', '💾'] })
    assert.deepEqual(await a.readMessage(Hello), { kind: 'hello', n: 3, tags: ['é', '💾'] })
  })

  it('refuses a message that does not match the schema', async () => {
    const { a, b } = await pair()
    await a.writeMessage({ kind: 'hello', n: -1, tags: [] })
    await rejectsWithName(b.readMessage(Hello), 'ProtocolError')
    const c = await pair()
    await c.a.writeMessage({ kind: 'hello', n: 1, tags: [], extra: true })
    await rejectsWithName(c.b.readMessage(Hello), 'ProtocolError')
  })

  it('refuses a frame that is not JSON', async () => {
    const { b, rawA } = await pair()
    const body = Buffer.from('{"kind": "hel')
    rawA.send(Buffer.concat([encodeVarint(body.length), body]))
    await rejectsWithName(b.readMessage(Hello), 'ProtocolError')
  })

  it('refuses an oversize frame from its length prefix, without waiting for the body', async () => {
    // a long deadline: reading the body would end in TimeoutError, not ProtocolError
    const { b, rawA } = await pair({ maxMessageBytes: 1024, messageTimeoutMs: 30_000 })
    rawA.send(encodeVarint(1025))
    await rejectsWithName(b.readMessage(Hello), 'ProtocolError')
  })

  it('refuses an outgoing message over the cap', async () => {
    const { a } = await pair({ maxMessageBytes: 64 })
    await rejectsWithName(a.writeMessage({ kind: 'hello', n: 1, tags: ['x'.repeat(100)] }), 'ProtocolError')
  })

  it('writes several messages in one send; the reader takes them one by one', async () => {
    const { a, b, rawA } = await pair({ maxMessageBytes: 64 })
    const sends: number[] = []
    const send = rawA.send.bind(rawA)
    rawA.send = (data) => { sends.push(data.byteLength); return send(data) }
    const sent = [1, 2, 3].map(n => ({ kind: 'hello', n, tags: [] }))
    await a.writeMessages(sent)
    assert.equal(sends.length, 1, 'one send for three messages')
    for (const m of sent) assert.deepEqual(await b.readMessage(Hello), m)
    // one message over the cap: the batch is refused whole, nothing is sent
    await rejectsWithName(a.writeMessages([sent[0], { kind: 'hello', n: 4, tags: ['x'.repeat(100)] }]), 'ProtocolError')
    assert.equal(sends.length, 1)
  })

  it('takes frames already received at once, with no deadline to arm', async () => {
    const { a, b } = await pair()
    const sent = [1, 2, 3].map(n => ({ kind: 'hello', n, tags: [] }))
    await a.writeMessages(sent)
    assert.deepEqual(await b.readMessage(Hello), sent[0])
    // the other two arrived with the first: reading them sets no timer
    const timers = mock.method(globalThis, 'setTimeout')
    try {
      assert.deepEqual(await b.readMessage(Hello), sent[1])
      assert.deepEqual(await b.readMessage(Hello), sent[2])
      assert.equal(timers.mock.callCount(), 0)
    } finally {
      timers.mock.restore()
    }
    // and a read with nothing received yet still waits, under its deadline
    const late = b.readMessage(Hello)
    await a.writeMessage({ kind: 'hello', n: 4, tags: [] })
    assert.deepEqual(await late, { kind: 'hello', n: 4, tags: [] })
  })

  it('refuses a length prefix longer than five bytes', async () => {
    const { b, rawA } = await pair({ messageTimeoutMs: 30_000 })
    rawA.send(Uint8Array.from([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]))
    await rejectsWithName(b.readMessage(Hello), 'ProtocolError')
  })

  it('reports a stream that ends mid-frame', async () => {
    const { b, rawA } = await pair()
    const body = Buffer.from(JSON.stringify({ kind: 'hello', n: 1, tags: [] }))
    rawA.send(Buffer.concat([encodeVarint(body.length), body.subarray(0, 5)]))
    await rawA.close()
    await rejectsWithName(b.readMessage(Hello), 'ProtocolError')
  })

  it('reports a stream that ends inside the length prefix', async () => {
    const { b, rawA } = await pair()
    rawA.send(Uint8Array.from([0x80]))
    await rawA.close()
    await rejectsWithName(b.readMessage(Hello, { allowEnd: true }), 'ProtocolError')
  })

  it('reads null at a clean end when the end is allowed, ProtocolError when not', async () => {
    const { a, b } = await pair()
    await a.writeMessage({ kind: 'hello', n: 7, tags: [] })
    await a.close()
    assert.deepEqual(await b.readMessage(Hello, { allowEnd: true }), { kind: 'hello', n: 7, tags: [] })
    assert.equal(await b.readMessage(Hello, { allowEnd: true }), null)

    const c = await pair()
    await c.a.close()
    await rejectsWithName(c.b.readMessage(Hello), 'ProtocolError')
  })

  it('times out when the peer never speaks', async () => {
    const { b } = await pair({ messageTimeoutMs: 200 })
    await rejectsWithName(b.readMessage(Hello), 'TimeoutError')
  })

  it('reads on after a timed-out and after a cancelled read, with no listeners gathering on the signal its reads share', async () => {
    const warnings: Error[] = []
    const onWarning = (w: Error): void => { warnings.push(w) }
    process.on('warning', onWarning)
    try {
      const { a, b } = await pair({ messageTimeoutMs: 30_000 })
      await rejectsWithName(b.readMessage(Hello, { timeoutMs: 50 }), 'TimeoutError')
      // forty reads that each wait for their frame: every wait hangs a listener on the read's signal
      for (let n = 0; n < 40; n++) {
        const reading = b.readMessage(Hello)
        await new Promise(resolve => setImmediate(resolve))
        await a.writeMessage({ kind: 'hello', n, tags: [] })
        assert.equal((await reading).n, n)
      }
      // and a caller's abort still ends a read, without spoiling the next
      const caller = new AbortController()
      const waiting = b.readMessage(Hello, { signal: caller.signal })
      caller.abort(new Error('caller gave up'))
      await assert.rejects(waiting, /caller gave up/)
      await rejectsWithName(b.readMessage(Hello, { timeoutMs: 50 }), 'TimeoutError')
      await new Promise(resolve => setImmediate(resolve))
      assert.deepEqual(warnings.filter(w => w.name === 'MaxListenersExceededWarning'), [])
    } finally {
      process.off('warning', onWarning)
    }
  })

  it('takes a per-message deadline over the stream default', async () => {
    const { b } = await pair({ messageTimeoutMs: 30_000 })
    await rejectsWithName(b.readMessage(Hello, { timeoutMs: 200 }), 'TimeoutError')
  })

  it('times out in the middle of a frame too', async () => {
    const { b, rawA } = await pair({ messageTimeoutMs: 200 })
    rawA.send(Buffer.concat([encodeVarint(100), Buffer.alloc(10)]))
    await rejectsWithName(b.readPayload(100), 'TimeoutError')
  })

  it('keeps reading a payload past the message deadline while its bytes keep coming', async () => {
    const { b, rawA } = await pair({ messageTimeoutMs: 100 })
    const payload = randomBytes(100)
    // ten bytes every 30 ms: about three deadlines in all, never one without a byte
    const sending = (async () => {
      rawA.send(encodeVarint(payload.length))
      for (let i = 0; i < payload.length; i += 10) {
        await new Promise(resolve => setTimeout(resolve, 30))
        rawA.send(payload.subarray(i, i + 10))
      }
    })()
    const got = await b.readPayload(payload.length)
    assert.ok(Buffer.from(got.subarray()).equals(payload))
    await sending
  })

  it('gives up on a payload that keeps coming but takes longer than PAYLOAD_MAX_DEADLINES deadlines', async () => {
    const { b, rawA } = await pair({ messageTimeoutMs: 100 })
    let stop = false
    // a byte every 10 ms would take 10 s; the ceiling is 6 × 100 ms
    const sending = (async () => {
      rawA.send(encodeVarint(1000))
      for (let i = 0; i < 1000 && !stop; i++) {
        await new Promise(resolve => setTimeout(resolve, 10))
        if (!stop) rawA.send(Uint8Array.of(i & 0xff))
      }
    })()
    try {
      await assert.rejects(b.readPayload(1000), (err: Error) => {
        assert.equal(err.name, 'TimeoutError')
        assert.match(err.message, /took over 600 ms/)
        return true
      })
    } finally {
      stop = true
      await sending
    }
  })

  it('throws the stream\'s own error when it is reset or aborted during a write, not its close event', async () => {
    for (const end of ['reset by the remote', 'aborted here'] as const) {
      // a link slow enough that a 2 MiB write waits for 'drain'
      const [rawA, rawB] = await streamPair({ delay: 50, capacity: 2 })
      open.push(rawA, rawB)
      const a = new FramedStream(rawA)
      const writing = a.writePayload(randomBytes(2 << 20))
      await new Promise(resolve => setTimeout(resolve, 20))
      class Mine extends Error { override name = 'Mine' }
      if (end === 'reset by the remote') rawB.abort(new Error('gone'))
      else rawA.abort(new Mine())
      await assert.rejects(writing, (err: Error) => {
        assert.ok(err instanceof Error, `${end}: not an Error`)
        assert.equal(err.name, end === 'reset by the remote' ? 'StreamResetError' : 'Mine', `${end}: ${err.name} ${err.message}`)
        return true
      })
    }
  })

  it('stops at the caller\'s abort signal with its reason', async () => {
    const { b } = await pair({ messageTimeoutMs: 30_000 })
    const ctl = new AbortController()
    class Cancelled extends Error { override name = 'Cancelled' }
    const reading = b.readMessage(Hello, { signal: ctl.signal })
    ctl.abort(new Cancelled())
    await rejectsWithName(reading, 'Cancelled')
  })

  it('round trips a 3 MiB payload between messages', async () => {
    const { a, b } = await pair()
    const payload = randomBytes(3 << 20)
    const writing = (async () => {
      await a.writeMessage({ kind: 'hello', n: payload.length, tags: [] })
      await a.writePayload(payload)
      await a.writeMessage({ kind: 'hello', n: 0, tags: ['after'] })
    })()
    const header = await b.readMessage(Hello)
    const got = await b.readPayload(header.n)
    assert.equal(got.byteLength, payload.length)
    assert.ok(Buffer.from(got.subarray()).equals(payload))
    assert.deepEqual(await b.readMessage(Hello), { kind: 'hello', n: 0, tags: ['after'] })
    await writing
  })

  it('refuses a payload of the wrong length', async () => {
    const { a, b } = await pair({ messageTimeoutMs: 30_000 })
    await a.writePayload(randomBytes(10))
    await rejectsWithName(b.readPayload(12), 'ProtocolError')

    // longer than expected: refused from the prefix
    const c = await pair({ messageTimeoutMs: 30_000 })
    c.rawA.send(encodeVarint(14))
    await rejectsWithName(c.b.readPayload(12), 'ProtocolError')

    // longer than the payload cap
    const d = await pair({ messageTimeoutMs: 30_000, maxPayloadBytes: 1024 })
    d.rawA.send(encodeVarint(2048))
    await rejectsWithName(d.b.readPayload(2048), 'ProtocolError')
  })
})

describe('takeFrame', () => {
  const frame = (body: Uint8Array): Uint8Array => Buffer.concat([encodeVarint(body.length), body])

  it('takes whole frames off the front, one at a time, across chunk boundaries', () => {
    const one = randomBytes(200)
    const two = randomBytes(3)
    const both = Buffer.concat([frame(one), frame(two), frame(new Uint8Array(0))])
    // split inside the first prefix and inside the second body
    const buffer = new Uint8ArrayList(both.subarray(0, 1), both.subarray(1, 150), both.subarray(150))
    assert.ok(Buffer.from((takeFrame(buffer, 1024) as Uint8ArrayList).subarray()).equals(one))
    assert.ok(Buffer.from((takeFrame(buffer, 1024) as Uint8ArrayList).subarray()).equals(two))
    assert.equal(takeFrame(buffer, 1024)?.byteLength, 0)
    assert.equal(buffer.byteLength, 0)
    assert.equal(takeFrame(buffer, 1024), undefined)
  })

  it('leaves a frame that is not all there untouched', () => {
    const whole = frame(randomBytes(300))
    for (const cut of [1, 2, 100, whole.length - 1]) {
      const buffer = new Uint8ArrayList(whole.subarray(0, cut))
      assert.equal(takeFrame(buffer, 1024), undefined)
      assert.equal(buffer.byteLength, cut)
      buffer.append(whole.subarray(cut))
      assert.equal(takeFrame(buffer, 1024)?.byteLength, 300)
    }
  })

  it('refuses an oversize frame from its prefix and a prefix longer than five bytes', () => {
    assert.throws(() => takeFrame(new Uint8ArrayList(encodeVarint(2048)), 1024), { name: 'ProtocolError' })
    assert.throws(() => takeFrame(new Uint8ArrayList(new Uint8Array([0x80, 0x80, 0x80, 0x80, 0x80, 0x01])), 1 << 30), { name: 'ProtocolError' })
  })
})
