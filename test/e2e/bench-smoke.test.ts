/**
 * The bench's smallest scenario, through the same code as `npm run bench`: two hosts on plain
 * loopback (no namespaces, no cap) pull a small image through damselfly and straight from the
 * origin. It checks that every figure comes out and the three files are written, so the bench
 * cannot rot unnoticed; the numbers themselves mean nothing here.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cleanup } from '../bench/cleanup.js'
import { runBench } from '../bench/run.js'
import { SMOKE_IMAGES, type BenchOptions } from '../bench/scenarios.js'

describe('bench smoke: N = 2, small image, loopback', () => {
  const cleanup = new Cleanup()
  let outDir = ''

  after(async () => {
    cleanup.runAll()
    if (outDir !== '') await rm(outDir, { recursive: true, force: true })
  })

  it('runs damselfly and direct pulls and produces every figure and file', async () => {
    outDir = await mkdtemp(join(tmpdir(), 'damselfly-bench-smoke-'))
    const opts: BenchOptions = {
      mode: 'loopback', rate: '100mbit', hostCounts: [2], images: SMOKE_IMAGES, systems: ['damselfly', 'direct'], outDir, label: 'smoke', pullTimeoutSec: 60
    }
    const run = await runBench(opts, cleanup, () => undefined)
    assert.equal(run.results.length, 2)
    const [df, direct] = run.results
    for (const r of run.results) {
      assert.equal(r.failures, 0, `${r.system}: ${r.error ?? ''}`)
      assert.equal(r.times.length, 2)
      for (const x of [r.p50, r.p95, r.max]) assert.ok(Number.isFinite(x) && x > 0)
      assert.equal(r.bound, null, 'no cap on loopback, so no bound')
      assert.ok(r.machineBusy >= 0 && r.machineBusy <= 1 && Number.isFinite(r.loadAtStart))
    }
    assert.equal(df.system, 'damselfly')
    assert.ok(df.imageBytes > 4 << 20)
    assert.ok(Math.abs(df.originRatio - 1) < 0.05, `damselfly: origin sent ${df.originRatio}× the image`)
    assert.ok(Math.abs(direct.originRatio - 2) < 0.05, `direct: origin sent ${direct.originRatio}× the image`)
    const src = df.bytesBySource ?? {}
    assert.equal((src.supernode ?? 0) + (src.peer ?? 0) + (src.origin ?? 0), 2 * df.imageBytes, 'every piece byte counted by source')
    assert.deepEqual(df.processes.map((p) => p.name).sort(), ['dfdaemon-1', 'dfdaemon-2', 'supernode'])
    for (const p of df.processes) assert.ok(p.cpuSeconds > 0 && p.peakRssMiB > 10, `${p.name}: ${p.cpuSeconds} s, ${p.peakRssMiB} MiB`)

    const json = JSON.parse(await readFile(run.files.json, 'utf8')) as { results: unknown[] }
    assert.equal(json.results.length, 2)
    const md = await readFile(run.files.markdown, 'utf8')
    assert.match(md, /\| 2x2MiB \| 2 \| damselfly \|/)
    assert.match(md, /\| 2x2MiB \| 2 \| direct \|/)
    const svg = await readFile(run.files.svg, 'utf8')
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    assert.match(svg, /<polyline /)
  })
})
