/**
 * The tracker over the wire: a real supernode process (started as the swarm bench starts it) and
 * `wireNodes` real libp2p nodes in this process (shared/p2p/node.ts, DHT client mode), each one
 * connection and one peer id, announcing over TCP + noise + yamux with the real tracker client,
 * all at once, one announce in flight per node as a daemon has. Fewer peers than in-process, so
 * the figures are about the cost of an announce on the wire and under concurrency, not about a
 * big state; the blob count is scaled down so that each blob still has peers to hand out.
 */
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { announce } from '../../shared/p2p/tracker-client.js'
import { createNode, type DamselflyNode } from '../../shared/p2p/node.js'
import type { Cleanup } from './cleanup.js'
import { loopbackTopology } from './hosts.js'
import { busyShare, hostGet, machineJiffies, metricSum, procStats } from './proc.js'
import type { TrackerScaleOptions } from './scenarios.js'
import { startSupernodeOn } from './systems/damselfly.js'
import { downloadAnnounce, PHASE_DEADLINE_MS, runPhase, seedAnnounce, workload, type PhaseFigures } from './tracker-load.js'

/** Peers per blob the wire workload aims at, so a downloader's reply is full (20 peers). */
const HOLDERS_PER_BLOB = 40

export interface TrackerWireResult {
  nodes: number
  blobs: number
  blobsPerPeer: number
  /** Announces of each kind per node. */
  rounds: number
  connectSec: number
  seed: PhaseFigures
  download: PhaseFigures
  /** The supernode's own count of announces by result, and its tracker gauges, after the run. */
  counted: { ok: number, refused: number, failed: number }
  trackerPeers: number
  trackerBlobs: number
  /**
   * The supernode process: RSS and V8 heap in use (its own gauge; no forced GC, so garbage counts)
   * before the nodes connected, once connected, after the announces; CPU over the announces.
   */
  supernode: { rssBeforeMiB: number, rssConnectedMiB: number, rssAfterMiB: number, heapBeforeMiB: number, heapConnectedMiB: number, heapAfterMiB: number, cpuSec: number }
  /** Share of the machine's cores busy (anyone's: this process's nodes too) over the announces. */
  machineBusy: number
}

type Log = (line: string) => void

export async function runTrackerWire (opts: TrackerScaleOptions, workDir: string, cleanup: Cleanup, log: Log): Promise<TrackerWireResult> {
  const dir = join(workDir, 'tracker')
  await mkdir(dir, { recursive: true })
  const host = loopbackTopology(0).server
  const blobs = Math.min(opts.blobs, Math.max(opts.blobsPerPeer + 1, Math.floor((opts.wireNodes * opts.blobsPerPeer) / HOLDERS_PER_BLOB)))
  const sn = await startSupernodeOn(host, dir, 'supernode-tracker', [], cleanup)
  const nodes: DamselflyNode[] = []
  try {
    const info = JSON.parse(await hostGet(host, `${sn.url}/api/v1/info`) ?? 'null') as { peerId: string, multiaddrs: string[] } | null
    if (info === null || info.multiaddrs.length === 0) throw new Error('supernode: /api/v1/info did not answer with its multiaddrs')
    const supernode = peerIdFromString(info.peerId)
    const target = multiaddr(info.multiaddrs[0])
    const heapMiB = async (): Promise<number> => metricSum(await hostGet(host, `${sn.url}/metrics`) ?? '', 'damselfly_supernode_nodejs_heap_size_used_bytes') / 2 ** 20
    const rssBefore = await vmRssMiB(sn.proc.pid)
    const heapBefore = await heapMiB()
    const c0 = performance.now()
    for (let k = 0; k < opts.wireNodes; k++) {
      const node = await createNode({ privateKey: await generateKeyPair('Ed25519'), host: '127.0.0.1', port: 0, dhtClientMode: true })
      nodes.push(node)
      await node.start()
    }
    await Promise.all(nodes.map(async (n) => { await n.dial(target, { signal: AbortSignal.timeout(30_000) }) }))
    const connectSec = (performance.now() - c0) / 1000
    // let identify and the DHT's first queries settle, so they are not counted as announce cost
    await new Promise((resolve) => setTimeout(resolve, 2000))
    const rssConnected = await vmRssMiB(sn.proc.pid)
    const heapConnected = await heapMiB()

    const load = workload(nodes.length, blobs, opts.blobsPerPeer, 2)
    const addrs = nodes.map((n) => n.getMultiaddrs().map(String).slice(0, 16))
    const send = async (k: number, msg: Parameters<typeof announce>[2]): Promise<{ ms: number, entries: number, peers: number }> => {
      const t0 = performance.now()
      const reply = await announce(nodes[k], supernode, msg, { timeoutMs: 10_000 })
      return { ms: performance.now() - t0, entries: msg.blobs.length, peers: reply.blobs.length === 0 ? -1 : reply.blobs[0].peers.length }
    }
    const cpu0 = (await procStats(sn.proc.name, sn.proc.pid)).cpuSeconds
    const j0 = await machineJiffies()
    const seed = await runPhase(nodes.length, opts.wireRounds, PHASE_DEADLINE_MS, 'wall', async (k) => await send(k, seedAnnounce(addrs[k], load.seeds[k].map((j) => load.digests[j]))))
    log(`tracker wire seed: ${seed.announcesPerSec.toFixed(0)} announces/s, p50 ${seed.p50Ms.toFixed(1)} ms, p99 ${seed.p99Ms.toFixed(1)} ms${seed.failures > 0 ? `, ${seed.failures} FAILED: ${seed.error}` : ''}`)
    const download = await runPhase(nodes.length, opts.wireRounds, PHASE_DEADLINE_MS, 'wall', async (k) => await send(k, downloadAnnounce(addrs[k], load.digests[load.downloads[k]])))
    log(`tracker wire download: ${download.announcesPerSec.toFixed(0)} announces/s, p50 ${download.p50Ms.toFixed(1)} ms, p99 ${download.p99Ms.toFixed(1)} ms, ${download.peersPerReply} peers per reply${download.failures > 0 ? `, ${download.failures} FAILED: ${download.error}` : ''}`)
    const j1 = await machineJiffies()
    const cpu1 = (await procStats(sn.proc.name, sn.proc.pid)).cpuSeconds
    const text = await hostGet(host, `${sn.url}/metrics`) ?? ''
    const counted = (result: string): number => metricSum(text, 'damselfly_supernode_tracker_announces_total', { result })
    return {
      nodes: nodes.length,
      blobs,
      blobsPerPeer: opts.blobsPerPeer,
      rounds: opts.wireRounds,
      connectSec,
      seed,
      download,
      counted: { ok: counted('ok'), refused: counted('refused'), failed: counted('failed') },
      trackerPeers: metricSum(text, 'damselfly_supernode_tracker_peers'),
      trackerBlobs: metricSum(text, 'damselfly_supernode_tracker_blobs'),
      supernode: {
        rssBeforeMiB: rssBefore,
        rssConnectedMiB: rssConnected,
        rssAfterMiB: await vmRssMiB(sn.proc.pid),
        heapBeforeMiB: heapBefore,
        heapConnectedMiB: heapConnected,
        heapAfterMiB: metricSum(text, 'damselfly_supernode_nodejs_heap_size_used_bytes') / 2 ** 20,
        cpuSec: cpu1 - cpu0
      },
      machineBusy: busyShare(j0, j1)
    }
  } finally {
    await Promise.allSettled(nodes.map(async (n) => { await n.stop() }))
    await sn.proc.stop()
  }
}

/** Resident set of a live process now (VmRSS), MiB; 0 when it is gone. */
async function vmRssMiB (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
  const m = /VmRSS:\s+(\d+) kB/.exec(status)
  return m === null ? 0 : Number(m[1]) / 1024
}
