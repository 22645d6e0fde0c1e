/**
 * The bench's command line: what --quick and the full run measure, the flags that shape the
 * emulated network, and the refusals that name the bad flag before anything is started.
 */
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { parseArgs, FULL_COST, FULL_IMAGES, QUICK_COST, QUICK_IMAGES, DEFAULT_WARMUP_MIB, DEFAULT_SETTLE_SEC } from '../../bench/scenarios.js'

const OUT = '/tmp/unused-bench-out'

describe('bench command line', () => {
  it('runs the quick and the full scenario sets the issue asks for', () => {
    const quick = parseArgs(['--quick'], OUT)
    assert.deepEqual(quick.hostCounts, [1, 2, 4, 8])
    assert.deepEqual(quick.images, QUICK_IMAGES)
    const full = parseArgs([], OUT)
    assert.deepEqual(full.hostCounts, [1, 2, 4, 8, 16])
    assert.deepEqual(full.images.map((i) => i.name), ['1x256MiB', '8x32MiB', '50x1MiB'])
    assert.deepEqual(full.images, FULL_IMAGES)
    assert.deepEqual([quick.cost, full.cost], [QUICK_COST, FULL_COST])
    assert.deepEqual([quick.cost.bytes, full.cost.bytes], [256 * 2 ** 20, 2 ** 30])
    for (const o of [quick, full]) {
      assert.deepEqual(o.parts, ['swarm', 'single', 'tracker', 'cost'])
      assert.deepEqual(o.systems, ['damselfly', 'direct', 'nginx', 'bittorrent'])
      assert.equal(o.mode, 'netns')
      assert.equal(o.rate, '100mbit')
      assert.equal(o.warmupMiB, DEFAULT_WARMUP_MIB)
      assert.equal(o.settleSec, DEFAULT_SETTLE_SEC)
      assert.equal(o.cpuGroups, undefined, 'hosts share the cores process by process unless asked')
      assert.equal(o.clientDest, 'memory', 'the emulated hosts\' clients write to memory, not all to one disk')
      assert.equal(o.outDir, OUT)
    }
  })

  it('takes the network\'s flags', () => {
    const o = parseArgs(['--hosts', '2,6', '--images', '4x16MiB', '--rate', '1gbit', '--tcp-cc', 'reno', '--cpu-groups', '--systems', 'damselfly,bittorrent', '--only', 'swarm', '--warmup', '0', '--settle', '3'], OUT)
    assert.deepEqual(o.hostCounts, [2, 6])
    assert.deepEqual(o.images, [{ name: '4x16MiB', layers: 4, layerBytes: 16 * 2 ** 20 }])
    assert.equal(o.rate, '1gbit')
    assert.equal(o.tcpCc, 'reno')
    assert.equal(o.cpuGroups, true)
    assert.deepEqual(o.systems, ['damselfly', 'bittorrent'])
    assert.deepEqual(o.parts, ['swarm'])
    assert.equal(o.warmupMiB, 0)
    assert.equal(o.settleSec, 3)
    assert.equal(parseArgs(['--loopback'], OUT).mode, 'loopback')
    assert.equal(parseArgs(['--loopback'], OUT).clientDest, 'disk', 'the smoke-sized loopback run needs no tmpfs')
    assert.equal(parseArgs(['--client-dest', 'disk'], OUT).clientDest, 'disk')
    assert.equal(parseArgs(['--loopback', '--client-dest', 'memory'], OUT).clientDest, 'memory')
  })

  it('refuses a bad flag with a reason and the usage', () => {
    const refused: Array<[string[], RegExp]> = [
      [['--cpu-groups', '--loopback'], /--cpu-groups is for the emulated hosts, not --loopback/],
      [['--tcp-cc', 'reno; rm -rf /'], /--tcp-cc wants an algorithm name/],
      [['--hosts', '0'], /--hosts wants counts from 1 to 200/],
      [['--hosts', '2,x'], /--hosts wants counts from 1 to 200/],
      [['--systems', 'kraken'], /unknown system kraken/],
      [['--only', 'swarm,disk'], /--only wants some of swarm, single, tracker/],
      [['--images', '8x'], /image spec must look like 8x32MiB/],
      [['--images', '0x1MiB'], /image spec must look like 8x32MiB/],
      [['--images', '2x0MiB'], /image spec must look like 8x32MiB/],
      [['--warmup', '-1'], /--warmup wants a whole number from 0 to 1024, got -1/],
      [['--rate'], /--rate needs a value/],
      [['--client-dest', 'ssd'], /--client-dest wants memory or disk/],
      [['--fast'], /unknown argument --fast/],
      [['--tracker-blobs', '4', '--tracker-blobs-per-peer', '4'], /--tracker-blobs-per-peer must be below --tracker-blobs/]
    ]
    for (const [argv, reason] of refused) {
      assert.throws(() => parseArgs(argv, OUT), (err: Error) => reason.test(err.message) && err.message.includes('usage: npm run bench'), argv.join(' '))
    }
  })
})
