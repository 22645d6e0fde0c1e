import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { costMarkdown } from '../../bench/report.js'
import type { TransportCostResult, TransportPath } from '../../bench/transport-cost.js'
import { scenarioResult } from '../../helpers/bench-result.js'

const row = (path: TransportPath, cpuSecPerGiB: number, mbps: number): TransportCostResult['rows'][number] =>
  ({ path, cpuSecPerGiB, mbps, runs: [{ cpuSec: cpuSecPerGiB / 4, wallSec: 0.25 }] })

const cost: TransportCostResult = {
  bytes: 256 * 2 ** 20,
  pieceBytes: 512 * 1024,
  repeats: 3,
  rows: [row('tcp', 1.5, 720), row('libp2p', 3.6, 311), row('pieces', 5, 215), row('sha256', 0.7, 1476)]
}

describe('bench transport cost section', () => {
  it('gives each path its CPU per GiB and its ratio to plain TCP', () => {
    const md = costMarkdown(cost, [])
    assert.match(md, /^## Transport cost$/m)
    assert.match(md, /256 MiB through each path in 512 KiB pieces, median of 3 runs/)
    assert.match(md, /^\| plain TCP socket \| 1\.50 \| 1\.00 \| 720 \|$/m)
    assert.match(md, /^\| libp2p stream \(TCP \+ noise \+ yamux\) \| 3\.60 \| 2\.40 \| 311 \|$/m)
    assert.match(md, /^\| damselfly piece exchange over it \(sha256 checked\) \| 5\.00 \| 3\.33 \| 215 \|$/m)
    assert.match(md, /^\| sha256 alone \| 0\.70 \| 0\.47 \| 1476 \|$/m)
    assert.doesNotMatch(md, /In the swarm part/, 'no swarm scenarios, nothing to set against it')
  })

  it('sets the swarm clients\' CPU per GiB received against the piece exchange, for systems with clients of their own', () => {
    const daemons = scenarioResult({
      system: 'damselfly',
      times: [12, 12.4],
      processes: [
        { name: 'dfdaemon-1', cpuSeconds: 2, peakRssMiB: 170, runDelaySeconds: 0.5 },
        { name: 'dfdaemon-2', cpuSeconds: 2, peakRssMiB: 170, runDelaySeconds: 0.5 },
        { name: 'supernode', cpuSeconds: 3, peakRssMiB: 180, runDelaySeconds: 0.5 }
      ]
    })
    const direct = scenarioResult({ system: 'direct', times: [21, 22] })
    const md = costMarkdown(cost, [daemons, direct])
    // 4 CPU-s over 2 hosts × 128 MiB = 16 CPU-s per GiB; the piece exchange is 5
    assert.match(md, /^- 1x128MiB, N = 2, damselfly: 16\.0 CPU s per GiB each client received \(3\.2× the piece exchange's both ends\)$/m)
    assert.doesNotMatch(md, /direct:/, 'direct pulls run no client process to measure')
  })
})
