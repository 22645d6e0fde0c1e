/**
 * The mature P2P engine on the same bytes: a torrent of the image's blobs (mktorrent, 1 MiB
 * pieces), opentracker with the torrent's info hash whitelisted, an aria2c seeder on the server
 * host and aria2c on every pulling host, all seeding on after they finish. The seeder fetches the
 * blobs from the origin (one copy) before the clock starts: BitTorrent gets its seed for free.
 * No warm-up pull: aria2c starts with each pull, and the tracker and seeder are native programs.
 */
import { createHash } from 'node:crypto'
import { access, chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Host } from '../hosts.js'
import { procStats, startProc, waitHttp, type Proc } from '../proc.js'
import type { RunningSystem, ScenarioContext } from './system.js'

/** The raw bytes of the `info` dictionary of a .torrent (bencode), whose sha1 is the info hash. */
export function infoHash (torrent: Buffer): string {
  let pos = 0
  const skip = (): void => {
    const c = torrent[pos]
    if (c === 0x69) { pos = torrent.indexOf(0x65, pos) + 1; return } // i...e
    if (c === 0x6c || c === 0x64) { // l...e, d...e
      pos++
      while (torrent[pos] !== 0x65) skip()
      pos++
      return
    }
    const colon = torrent.indexOf(0x3a, pos) // <len>:<bytes>
    const len = Number(torrent.subarray(pos, colon).toString('ascii'))
    pos = colon + 1 + len
  }
  if (torrent[pos] !== 0x64) throw new Error('not a bencoded dictionary')
  pos++
  while (pos < torrent.length && torrent[pos] !== 0x65) {
    const keyStart = pos
    skip()
    const key = torrent.subarray(torrent.indexOf(0x3a, keyStart) + 1, pos).toString('latin1')
    const valueStart = pos
    skip()
    if (key === 'info') return createHash('sha1').update(torrent.subarray(valueStart, pos)).digest('hex')
  }
  throw new Error('torrent has no info dictionary')
}

async function run (ctx: ScenarioContext, host: Host, name: string, argv: string[]): Promise<void> {
  const p = startProc(host, name, argv, ctx.dir, ctx.cleanup)
  const timer = setTimeout(() => { p.child.kill('SIGKILL') }, 300_000)
  await p.exited
  clearTimeout(timer)
  await p.stop()
  if (p.child.exitCode !== 0) throw new Error(`${name} failed (${p.child.exitCode ?? p.child.signalCode}): ${await p.logTail()}`)
}

const ARIA_COMMON = ['--enable-dht=false', '--enable-dht6=false', '--bt-enable-lpd=false', '--seed-ratio=0.0', '--file-allocation=none',
  '--check-certificate=false', '--console-log-level=warn', '--summary-interval=0', '--max-upload-limit=0', '--bt-max-peers=0',
  '--auto-save-interval=0', '--rpc-save-upload-metadata=false']

export async function startBittorrent (ctx: ScenarioContext): Promise<RunningSystem> {
  const server = ctx.topo.server
  const procs: Proc[] = []
  const stopAll = async (): Promise<void> => { await Promise.allSettled(procs.map(async (p) => { await p.stop(2000) })) }
  try {
    // the seed: one copy of every blob from the origin, into seed/image/<hex>
    const seedRoot = join(ctx.dir, 'seed')
    await mkdir(join(seedRoot, 'image'), { recursive: true })
    for (const b of ctx.image.blobs) {
      await run(ctx, server, 'seed-fetch', ['curl', '-sf', '-o', join(seedRoot, 'image', b.digest.slice(7)), `${ctx.origin.url}/v2/${ctx.image.repository}/blobs/${b.digest}`])
    }
    const tport = await server.port('tracker', 6969)
    const announce = `http://${server.addr}:${tport}/announce`
    const torrent = join(ctx.dir, 'image.torrent')
    await run(ctx, server, 'mktorrent', ['mktorrent', '-l', '20', '-n', 'image', '-a', announce, '-o', torrent, join(seedRoot, 'image')])
    const hash = infoHash(await readFile(torrent))
    await writeFile(join(ctx.dir, 'whitelist.txt'), `${hash}\n`)
    await writeFile(join(ctx.dir, 'opentracker.conf'),
      `listen.tcp_udp ${server.addr}:${tport}\naccess.whitelist ${join(ctx.dir, 'whitelist.txt')}\ntracker.rootdir /\ntracker.user nobody\n`)
    const tracker = startProc(server, 'opentracker', ['opentracker', '-f', join(ctx.dir, 'opentracker.conf')], ctx.dir, ctx.cleanup)
    procs.push(tracker)
    await waitHttp(tracker, `http://${server.addr}:${tport}/stats`, 200, true) // 403 unless stats are opened up: it listens

    const sport = await server.port('aria2-seed', 6881)
    procs.push(startProc(server, 'aria2c-seeder', ['aria2c', ...ARIA_COMMON, '--bt-seed-unverified=true', '--check-integrity=false',
      `--listen-port=${sport}`, `--dir=${seedRoot}`, torrent], ctx.dir, ctx.cleanup))

    const clients: Proc[] = []
    return {
      pull: async (i, dest) => {
        const host = ctx.clients[i]
        await mkdir(dest, { recursive: true })
        const marker = join(ctx.dir, `done-${i + 1}`)
        const hook = join(ctx.dir, `hook-${i + 1}.sh`)
        await writeFile(hook, `#!/bin/sh\n: > '${marker}'\n`)
        await chmod(hook, 0o755)
        const port = await host.port('aria2', 6881)
        const p = startProc(host, `aria2c-${i + 1}`, ['aria2c', ...ARIA_COMMON, `--listen-port=${port}`, `--dir=${dest}`,
          `--on-bt-download-complete=${hook}`, torrent], ctx.dir, ctx.cleanup)
        procs.push(p)
        clients.push(p)
        const deadline = Date.now() + ctx.pullTimeoutSec * 1000
        for (;;) {
          if (await access(marker).then(() => true, () => false)) break
          if (p.child.exitCode !== null || p.child.signalCode !== null) throw new Error(`aria2c-${i + 1} exited: ${await p.logTail()}`)
          if (Date.now() > deadline) throw new Error(`aria2c-${i + 1}: no complete download in ${ctx.pullTimeoutSec} s`)
          await new Promise((resolve) => setTimeout(resolve, 50))
        }
      },
      procs: () => procs.map((p) => ({ name: p.name, pid: p.pid })),
      collect: async () => ({ processes: await Promise.all(procs.map(async (p) => await procStats(p.name, p.pid))) }),
      stop: stopAll
    }
  } catch (err) {
    await stopAll()
    throw err
  }
}
