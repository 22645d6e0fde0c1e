import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { readFile } from 'node:fs/promises'
import { parseNetDev, type LinkBytes } from '../../bench/hosts.js'
import { FIRST_BYTES, LinkSampler, linkFigures, type LinkFigures, type LinkSample } from '../../bench/links.js'
import type { ScenarioResult } from '../../bench/figures.js'
import { scenarioResult } from '../../helpers/bench-result.js'
import { linksMarkdown } from '../../bench/report.js'

const NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
v1a2bh3: 140296812   97081    0    0    0     0          0         0 2398110   36012    0    0    0     0       0          0
  br0: 12 1 0 0 0 0 0 0 34 2 0 0 0 0 0 0
`

const MB = 1e6

/** A sample `sec` seconds after t0 = 0, with each host's cumulative bytes. */
function sample (sec: number, bytes: Record<string, Partial<LinkBytes>>): LinkSample {
  return { at: sec * 1000, bytes: new Map(Object.entries(bytes).map(([h, b]) => [h, { down: b.down ?? 0, up: b.up ?? 0 }])) }
}

describe('bench link counters', () => {
  it('reads received and sent bytes per interface from /proc/PID/net/dev', async () => {
    const parsed = parseNetDev(NET_DEV)
    assert.deepEqual(parsed.get('v1a2bh3'), { rx: 140296812, tx: 2398110 })
    assert.deepEqual(parsed.get('lo'), { rx: 0, tx: 0 })
    assert.deepEqual(parsed.get('br0'), { rx: 12, tx: 34 })
    assert.equal(parsed.size, 3, 'the two header lines are not interfaces')
    // this kernel's own file parses the same way: loopback is always there
    const own = parseNetDev(await readFile('/proc/self/net/dev', 'utf8'))
    assert.ok(own.has('lo') && Number.isInteger(own.get('lo')!.rx))
  })

  it('splits a pull into first bytes, the link use after them, and the origin\'s last bytes', () => {
    // 100 Mbit/s = 12.5 MB/s; c1 starts at 0.2 s and receives at 10 MB/s until done at 2.2 s;
    // c2 starts at 0.4 s at 12.5 MB/s, done at 1.4 s; c3 failed and got nothing; the origin sends until 1.0 s
    const rate = 100e6
    const samples: LinkSample[] = []
    for (let t = 0; t <= 2.41; t += 0.2) {
      const sec = Number(t.toFixed(1))
      samples.push(sample(sec, {
        c1: { down: 500 + Math.max(0, sec - 0.1) * 10 * MB },
        c2: { down: 1000 + (sec >= 0.4 ? Math.min(sec - 0.3, 1.1) * 12.5 * MB : 0) },
        c3: { down: 2000 + (sec >= 0.4 ? 0.5 * FIRST_BYTES : 0) },
        origin: { up: sec <= 1.0 ? sec * 12 * MB : 12 * MB + 4096 * sec }
      }))
    }
    const f = linkFigures(samples, 0, [
      { host: 'c1', doneSec: 2.2 }, { host: 'c2', doneSec: 1.45 }, { host: 'c3', doneSec: undefined }
    ], 'origin', rate)
    assert.deepEqual(f.firstByte, [0.2, 0.4, null], 'the first sample with 64 KiB more than at the start; none for c3')
    assert.ok(Math.abs(f.downloadUse[0]! - 0.8) < 1e-9, `c1 at 10 of 12.5 MB/s: ${f.downloadUse[0]}`)
    assert.ok(Math.abs(f.downloadUse[1]! - 1) < 1e-9, `c2 at the full rate until its last sample before done: ${f.downloadUse[1]}`)
    assert.equal(f.downloadUse[2], null, 'a failed host has no link use')
    assert.equal(f.originDone, 1, 'after 1.0 s the origin sent only a few KiB per interval: not sending')
  })

  it('has no origin end when the origin sent nothing, and no use for a host done before its first bytes were seen', () => {
    const samples = [sample(0, { c1: {}, origin: { up: 10 } }), sample(0.05, { c1: { down: FIRST_BYTES }, origin: { up: 900 } })]
    const f = linkFigures(samples, 0, [{ host: 'c1', doneSec: 0.05 }], 'origin', 100e6)
    assert.equal(f.originDone, null)
    assert.deepEqual(f.firstByte, [0.05])
    assert.deepEqual(f.downloadUse, [null], 'no time between the first bytes and the end: no share to compute')
  })

  it('samples until stopped, takes a baseline first and a last sample at the stop, and stops by itself at its bound', async () => {
    let reads = 0
    const read = async (): Promise<Map<string, LinkBytes>> => { reads++; return new Map([['c1', { down: reads, up: 0 }]]) }
    const sampler = new LinkSampler(read, 5, 60_000)
    await sampler.start()
    assert.equal(reads, 1, 'the baseline is read before start returns')
    await new Promise((resolve) => setTimeout(resolve, 60))
    const samples = await sampler.stop()
    assert.ok(samples.length >= 3, `baseline, at least one tick, the last: ${samples.length}`)
    assert.deepEqual(samples.map((s) => s.bytes.get('c1')!.down), samples.map((_, i) => i + 1), 'every read kept, in order')
    const after = reads
    await new Promise((resolve) => setTimeout(resolve, 30))
    assert.equal(reads, after, 'no reads after stop')

    let bounded = 0
    const short = new LinkSampler(async () => { bounded++; return new Map() }, 5, 20)
    await short.start()
    await new Promise((resolve) => setTimeout(resolve, 150))
    const atBound = bounded
    await new Promise((resolve) => setTimeout(resolve, 50))
    assert.equal(bounded, atBound, 'no reads once the bound has passed, though never stopped')
    short.cancel()
  })

  it('reports a failed read at the stop', async () => {
    let n = 0
    const sampler = new LinkSampler(async () => { if (++n === 2) throw new Error('gone'); return new Map() }, 5, 60_000)
    await sampler.start()
    await new Promise((resolve) => setTimeout(resolve, 30))
    await assert.rejects(sampler.stop(), /gone/)
  })

  it('puts the medians over the hosts in the results and a row per run with counters in the report', () => {
    const result = (system: 'damselfly' | 'bittorrent', times: number[], links?: LinkFigures): ScenarioResult => scenarioResult({ system, times, links })
    const df = result('damselfly', [13.0, 13.2, 13.4], { firstByte: [0.5, null, 0.7], downloadUse: [0.9, 0.8, null], originDone: 12.0 })
    assert.equal(df.links?.firstByteP50, 0.5, 'the median of the known values (nearest rank of two: the lower)')
    assert.equal(df.links?.downloadUseP50, 0.8)
    const bt = result('bittorrent', [15.0], { firstByte: [1.4], downloadUse: [0.8], originDone: null })
    const loop = result('damselfly', [1.0])
    assert.equal(loop.links, null, 'no counters (loopback): no link figures')
    assert.equal(linksMarkdown([loop]), '', 'no section without counters')
    const md = linksMarkdown([df, loop, bt])
    assert.match(md, /^\| 1x128MiB \| 3 \| damselfly \| 0\.50 \| 80 % \| 12\.0 \| 1\.4 \|$/m, 'the slowest host (13.4 s) 1.4 s after the origin\'s last bytes')
    assert.match(md, /^\| 1x128MiB \| 1 \| bittorrent \| 1\.40 \| 80 % \| – \| – \|$/m, 'an origin that sent nothing in the pull has no tail')
    assert.equal(md.match(/^\| 1x128MiB /gm)?.length, 2, 'the loopback run has no row')
  })
})
