import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { buildApp } from '../../../supernode/http/app.js'
import { createSupernodeMetrics } from '../../../supernode/metrics.js'

describe('supernode HTTP app', () => {
  const metrics = new Registry()
  const counters = createSupernodeMetrics(metrics)
  let ready = false
  const info = { peerId: '12D3KooWExamplePeer', multiaddrs: ['/ip4/127.0.0.1/tcp/8003/p2p/12D3KooWExamplePeer'] }
  const app = buildApp({ logger: pino({ level: 'silent' }), metrics, info: () => info, ready: () => ready })
  after(async () => { await app.close() })

  it('reports 503 on /healthz until ready, then 200', async () => {
    const before = await app.inject({ method: 'GET', url: '/healthz' })
    assert.equal(before.statusCode, 503)
    ready = true
    const res = await app.inject({ method: 'GET', url: '/healthz' })
    assert.equal(res.statusCode, 200)
    assert.deepEqual(res.json(), { status: 'ok' })
  })

  it('answers /api/v1/info with the peer id and multiaddrs', async () => {
    const res = await app.inject({ method: 'GET', url: '/api/v1/info' })
    assert.equal(res.statusCode, 200)
    assert.match(res.headers['content-type'] as string, /^application\/json/)
    assert.deepEqual(res.json(), info)
  })

  it('serves Prometheus text on /metrics', async () => {
    counters.originBytes.inc(42)
    const res = await app.inject({ method: 'GET', url: '/metrics' })
    assert.equal(res.statusCode, 200)
    assert.match(res.headers['content-type'] as string, /^text\/plain/)
    assert.match(res.body, /^damselfly_supernode_origin_bytes_total 42$/m)
    assert.match(res.body, /damselfly_supernode_origin_fetches_total/)
  })

  it('answers unknown routes with an OCI error body', async () => {
    const res = await app.inject({ method: 'GET', url: '/nope' })
    assert.equal(res.statusCode, 404)
    assert.equal((res.json() as { errors: Array<{ code: string }> }).errors[0].code, 'UNSUPPORTED')
  })
})
