/**
 * The bench's smallest runs, through the same code as `npm run bench`: two hosts on plain
 * loopback (no namespaces, no cap) pull a small image through damselfly and straight from the
 * origin; one 4 MiB blob through one dfdaemon and straight from the origin; the tracker under
 * 200 peers over 20 blobs, and 4 real nodes over the wire. They check that every figure comes
 * out and the files are written, so the bench cannot rot unnoticed; the numbers themselves mean
 * nothing here.
 */
import { describe, it, after } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cleanup } from '../bench/cleanup.js'
import { runBench } from '../bench/run.js'
import { PULLS_DIR_PREFIX } from '../bench/client-dest.js'
import { SMOKE_COST, SMOKE_IMAGES, SMOKE_SINGLE, SMOKE_TRACKER, type BenchOptions } from '../bench/scenarios.js'

describe('bench smoke: N = 2, small image, loopback; one host; tracker', () => {
  const cleanup = new Cleanup()
  let outDir = ''
  let partsDir = ''

  after(async () => {
    cleanup.runAll()
    for (const dir of [outDir, partsDir]) if (dir !== '') await rm(dir, { recursive: true, force: true })
  })

  it('runs damselfly and direct pulls and produces every figure and file', async () => {
    outDir = await mkdtemp(join(tmpdir(), 'damselfly-bench-smoke-'))
    const opts: BenchOptions = {
      parts: ['swarm'],
      single: SMOKE_SINGLE,
      tracker: SMOKE_TRACKER,
      cost: SMOKE_COST,
      mode: 'loopback', rate: '100mbit', hostCounts: [2], images: SMOKE_IMAGES, systems: ['damselfly', 'direct'], outDir, label: 'smoke', pullTimeoutSec: 60,
      // the settle step runs (a sync and at least one look at the machine), bounded short here
      settleSec: 1,
      // and the warm-up pull before it: its bytes must stay out of every figure asserted below
      warmupMiB: 1,
      // the clients' destinations in a tmpfs, as on the emulated hosts
      clientDest: 'memory'
    }
    // the files are written as the run goes: when the second scenario reports, they hold the first
    let midway: { results: unknown[], unfinished?: string } | undefined
    let pulls: string | undefined
    const run = await runBench(opts, cleanup, (line) => {
      if (/ N=2 direct: /.test(line)) midway = JSON.parse(readFileSync(join(outDir, 'results.json'), 'utf8')) as typeof midway
      pulls ??= /^clients write what they pull to (\S+) \(memory\)$/.exec(line)?.[1]
    })
    assert.ok(pulls?.startsWith(join('/dev/shm', PULLS_DIR_PREFIX)), `the clients wrote to a tmpfs: ${pulls ?? 'no such line'}`)

    assert.equal(midway?.results.length, 1, 'the first scenario was in the files before the second had finished')
    assert.equal(midway?.unfinished, 'Unfinished run, still to come: 1 of 2 swarm scenarios')
    assert.equal(run.results.length, 2)
    const [df, direct] = run.results
    for (const r of run.results) {
      assert.equal(r.failures, 0, `${r.system}: ${r.error ?? ''}`)
      assert.equal(r.times.length, 2)
      for (const x of [r.p50, r.p95, r.max]) assert.ok(Number.isFinite(x) && x > 0)
      assert.equal(r.bound, null, 'no cap on loopback, so no bound')
      assert.ok(r.machineBusy >= 0 && r.machineBusy <= 1 && Number.isFinite(r.loadAtStart))
      assert.ok(r.settle.waitedMs > 0 && r.settle.busy !== null && r.settle.busy >= 0 && r.settle.busy <= 1, `${r.system}: settle ${JSON.stringify(r.settle)}`)
      assert.ok(r.warmup !== null && r.warmup.mib >= 1 && r.warmup.seconds > 0, `${r.system}: warm-up ${JSON.stringify(r.warmup)}`)
      assert.equal(r.links, null, 'loopback has no per-host links to count')
    }
    assert.equal(df.system, 'damselfly')
    assert.ok(df.imageBytes > 4 << 20)
    assert.ok(Math.abs(df.originRatio - 1) < 0.05, `damselfly: origin sent ${df.originRatio}× the image`)
    assert.ok(Math.abs(direct.originRatio - 2) < 0.05, `direct: origin sent ${direct.originRatio}× the image`)
    const src = df.bytesBySource ?? {}
    assert.equal((src.supernode ?? 0) + (src.peer ?? 0) + (src.origin ?? 0), 2 * df.imageBytes, 'every piece byte of the measured pull counted by source, none of the warm-up\'s')
    assert.ok(df.duplicateBytes !== undefined && df.duplicateBytes >= 0 && df.duplicateBytes < 2 * df.imageBytes, `damselfly: ${df.duplicateBytes} duplicate bytes`)
    assert.equal(direct.duplicateBytes, undefined, 'direct pulls have no pieces to duplicate')
    assert.deepEqual(df.processes.map((p) => p.name).sort(), ['dfdaemon-1', 'dfdaemon-2', 'supernode'])
    for (const p of df.processes) assert.ok(p.cpuSeconds > 0 && p.peakRssMiB > 10 && p.runDelaySeconds >= 0, `${p.name}: ${p.cpuSeconds} s, ${p.peakRssMiB} MiB, ${p.runDelaySeconds} s waiting`)
    assert.ok(df.runDelay.clientP50Sec !== null && df.runDelay.serverSec !== null, 'damselfly: its processes\' wait for a core')
    assert.deepEqual(direct.runDelay, { clientP50Sec: null, serverSec: null }, 'direct pulls run no process of their own')

    const json = JSON.parse(await readFile(run.files.json, 'utf8')) as { results: unknown[], unfinished?: string }
    assert.equal(json.results.length, 2)
    assert.equal(json.unfinished, undefined, 'the finished run\'s files say nothing is missing')
    const md = await readFile(run.files.markdown, 'utf8')
    assert.match(md, /\| 2x2MiB \| 2 \| damselfly \|/)
    assert.match(md, /\| 2x2MiB \| 2 \| direct \|/)
    assert.match(md, /\| duplicates ÷ image \|/)
    assert.match(md, /\| waiting for a core s client \/ server \|/)
    assert.doesNotMatch(md, /Unfinished/)
    assert.match(md, /^## Where the cores became the limit$/m)
    assert.match(md, /^- 2x2MiB, damselfly: (CPU-bound|not CPU-bound) at N = 2 \(the clients' loops waited for a core \d+ % of the p50 time, the machine \d+ % busy\)$/m)
    assert.doesNotMatch(md, /^## Where the time went$/m, 'no link section without link counters')
    assert.match(md, /loopback, no cap, clients write to memory;/)
    assert.match(md, /every host pulled a 1 MiB warm-up image through each system first;/, 'the header says the systems were warmed up (and names no BitTorrent exception without BitTorrent)')
    assert.ok(run.files.svg !== undefined, 'the swarm part writes its chart')
    const svg = await readFile(run.files.svg, 'utf8')
    assert.match(svg, /^<svg [^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/)
    assert.match(svg, /<polyline /)
    cleanup.runAll()
    assert.equal(existsSync(String(pulls)), false, 'the clients\' tmpfs directory goes with the run')
  })

  it('runs the single-host, tracker and transport cost parts alone and produces their figures and sections', async () => {
    partsDir = await mkdtemp(join(tmpdir(), 'damselfly-bench-smoke-parts-'))
    const opts: BenchOptions = {
      parts: ['single', 'tracker', 'cost'],
      single: SMOKE_SINGLE,
      tracker: SMOKE_TRACKER,
      cost: SMOKE_COST,
      mode: 'loopback', rate: '100mbit', hostCounts: [1], images: SMOKE_IMAGES, systems: [], outDir: partsDir, label: 'smoke', pullTimeoutSec: 60, settleSec: 0, warmupMiB: 0, clientDest: 'disk'
    }
    const run = await runBench(opts, cleanup, () => undefined)
    assert.deepEqual(run.results, [], 'no swarm part asked for')
    assert.equal(run.files.svg, undefined)

    const single = run.singleHost
    assert.ok(single !== undefined)
    assert.ok(single.blobBytes >= SMOKE_SINGLE.blobBytes, 'the layer (a tar) is at least the size asked for')
    assert.deepEqual(single.rows.map((r) => `${r.client} ${r.path}`), [
      'curl origin', 'curl dfdaemon-cold', 'curl dfdaemon-warm', 'curl dfdaemon-supernode-warm', 'curl dfdaemon-after-other',
      'skopeo origin', 'skopeo dfdaemon-cold', 'skopeo dfdaemon-warm'
    ])
    for (const r of single.rows) {
      const what = `${r.client} ${r.path}`
      assert.equal(r.failures, 0, `${what}: ${r.error ?? ''}`)
      assert.equal(r.runs.length, SMOKE_SINGLE.repeats, what)
      assert.ok(r.runs.every((x) => x.digestOk), `${what}: every copy has its digest`)
      assert.ok(Number.isFinite(r.mbps) && r.mbps > 0 && r.seconds > 0, what)
      if (r.client === 'curl') assert.ok(r.ttfbMs !== null && r.ttfbMs > 0, what)
      if (r.client === 'curl' && r.path !== 'origin') assert.ok(r.addedTtfbMs !== null && Number.isFinite(r.addedTtfbMs), what)
      if (r.path !== 'origin') assert.ok(r.runs.every((x) => Number.isInteger(x.superSeedRefusals)), what)
    }
    const hits = (client: string, path: string): number[] => single.rows.find((r) => r.client === client && r.path === path)!.runs.map((x) => x.localHits ?? -1)
    assert.deepEqual(hits('curl', 'dfdaemon-cold'), [0], 'a cold daemon fetches')
    assert.deepEqual(hits('curl', 'dfdaemon-warm'), [1], 'a warm daemon answers from its store')
    assert.deepEqual(hits('curl', 'dfdaemon-supernode-warm'), [0], 'a fresh daemon fetches')
    assert.deepEqual(hits('skopeo', 'dfdaemon-warm'), [2], 'config and layer from the store')

    const t = run.tracker
    assert.ok(t !== undefined)
    const { peers, blobsPerPeer, wireNodes, wireRounds } = SMOKE_TRACKER
    const phases = [t.inProcess.seed, t.inProcess.download, t.inProcess.stateOnly.seed, t.inProcess.stateOnly.download]
    for (const p of phases) {
      assert.equal(p.failures, 0, p.error)
      assert.equal(p.announces, peers)
      assert.ok(!p.truncated)
      for (const x of [p.announcesPerSec, p.entriesPerSec, p.p50Ms, p.p99Ms]) assert.ok(Number.isFinite(x) && x > 0)
    }
    assert.equal(t.inProcess.seed.blobEntries, peers * blobsPerPeer)
    assert.ok(t.inProcess.download.peersPerReply > 0, 'a downloader is handed peers')
    assert.equal(t.inProcess.pairsAnnounced, peers * (blobsPerPeer + 1))
    assert.deepEqual(t.inProcess.held, { entries: peers * (blobsPerPeer + 1), peers, blobs: SMOKE_TRACKER.blobs }, 'every distinct (blob, peer) pair is held')
    assert.ok(t.inProcess.heapBytes === null || Number.isFinite(t.inProcess.heapBytes))
    for (const p of [t.wire.seed, t.wire.download]) {
      assert.equal(p.failures, 0, p.error)
      assert.equal(p.announces, wireNodes * wireRounds)
      assert.ok(Number.isFinite(p.announcesPerSec) && p.announcesPerSec > 0)
    }
    assert.ok(t.wire.download.peersPerReply > 0)
    assert.deepEqual(t.wire.counted, { ok: 2 * wireNodes * wireRounds, refused: 0, failed: 0 }, 'the supernode counted every announce as recorded')
    assert.equal(t.wire.trackerPeers, wireNodes)
    assert.ok(t.wire.supernode.rssAfterMiB > 10 && t.wire.supernode.heapAfterMiB > 1 && t.wire.supernode.cpuSec > 0)

    const cost = run.cost
    assert.ok(cost !== undefined)
    assert.deepEqual(cost.rows.map((r) => r.path), ['tcp', 'libp2p', 'pieces', 'sha256'])
    assert.ok(cost.bytes >= SMOKE_COST.bytes && cost.bytes % cost.pieceBytes === 0, `${cost.bytes} bytes in ${cost.pieceBytes}-byte pieces`)
    for (const r of cost.rows) {
      assert.equal(r.runs.length, SMOKE_COST.repeats, r.path)
      assert.ok(Number.isFinite(r.cpuSecPerGiB) && r.cpuSecPerGiB > 0 && Number.isFinite(r.mbps) && r.mbps > 0, `${r.path}: ${JSON.stringify(r)}`)
    }

    const json = JSON.parse(await readFile(run.files.json, 'utf8')) as { singleHost?: { rows: unknown[] }, tracker?: { inProcess: unknown, wire: unknown }, cost?: { rows: unknown[] } }
    assert.equal(json.singleHost?.rows.length, single.rows.length)
    assert.ok(json.tracker?.inProcess !== undefined && json.tracker.wire !== undefined)
    assert.equal(json.cost?.rows.length, 4)
    const md = await readFile(run.files.markdown, 'utf8')
    assert.match(md, /^## Single host$/m)
    assert.match(md, /\| curl \| dfdaemon warm \(local hit\) \| \d+ \|/)
    assert.match(md, /^## Tracker scale$/m)
    assert.match(md, /\| in-process \| seed \(4 blobs whole\) \| 200 \| 20 \| 200 \| 800 \|/)
    assert.match(md, /\| wire \| download /)
    assert.match(md, /^## Transport cost$/m)
    assert.match(md, /^\| damselfly piece exchange over it \(sha256 checked\) \| \d+\.\d\d \| \d+\.\d\d \| \d+ \|$/m)
  })
})
