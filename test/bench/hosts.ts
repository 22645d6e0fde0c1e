/**
 * The emulated hosts. `netns`: one network namespace per host, all on one bridge in a hub
 * namespace, each with its own address in a private /24 and a tbf cap in both directions (the
 * host's eth0 egress is its upload; the hub-side veth's egress is its download), and a blackhole
 * route for the /24 in the root namespace so nothing sent there leaves the machine; with
 * `cpuGroups`, each host's processes also share one CPU group of equal weight (cpu-groups.ts).
 * `loopback`: every host is 127.0.0.1 with its own ports and no cap (the smoke test's mode).
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from '../helpers/ports.js'
import type { Cleanup } from './cleanup.js'
import { cpuGroupRoot, enterGroup } from './cpu-groups.js'

const run = promisify(execFile)

export interface Host {
  name: string
  /** The address other hosts reach it at. */
  addr: string
  /** Command prefix that runs a program inside it (`nsenter --net=...`, which execs; [] on loopback). */
  prefix: string[]
  /** A port for `role` on this host: the well-known one in a namespace, a free one on loopback. */
  port: (role: string, wellKnown: number) => Promise<number>
}

export interface Topology {
  mode: 'netns' | 'loopback'
  /** Bits per second of every host in each direction; undefined on loopback (no cap). */
  rateBps?: number
  origin: Host
  /** The supernode's host; the nginx cache and the BitTorrent seeder and tracker run here too. */
  server: Host
  clients: Host[]
  /**
   * Bytes each host's link has carried so far, by host name (netns only): read from the hub's
   * side of the host's veth, so `down` is what the host received and `up` what it sent.
   */
  links?: () => Promise<Map<string, LinkBytes>>
  /** Delete the namespaces and the route (processes must be stopped first). */
  down: () => void
}

export interface LinkBytes {
  down: number
  up: number
}

/** Received and transmitted bytes per interface, from the text of a /proc/PID/net/dev. */
export function parseNetDev (text: string): Map<string, { rx: number, tx: number }> {
  const out = new Map<string, { rx: number, tx: number }>()
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon < 0 || line.includes('|')) continue
    const f = line.slice(colon + 1).trim().split(/\s+/).map(Number)
    // rx: bytes packets errs drop fifo frame compressed multicast; then tx: bytes ...
    if (f.length < 16 || !Number.isFinite(f[0]) || !Number.isFinite(f[8])) continue
    out.set(line.slice(0, colon).trim(), { rx: f[0], tx: f[8] })
  }
  return out
}

/** `100mbit` → 100e6. */
export function parseRate (rate: string): number {
  const m = /^(\d+(?:\.\d+)?)(kbit|mbit|gbit)$/.exec(rate)
  if (m === null) throw new Error(`rate must look like 100mbit, got ${rate}`)
  return Number(m[1]) * { kbit: 1e3, mbit: 1e6, gbit: 1e9 }[m[2] as 'kbit' | 'mbit' | 'gbit']
}

export function loopbackTopology (clients: number): Topology {
  const host = (name: string): Host => ({ name, addr: '127.0.0.1', prefix: [], port: async () => await freePort() })
  return {
    mode: 'loopback',
    origin: host('origin'),
    server: host('server'),
    clients: Array.from({ length: clients }, (_, i) => host(`c${i + 1}`)),
    down: () => undefined
  }
}

async function ip (...args: string[]): Promise<void> { await run('ip', args) }
async function inNs (ns: string, cmd: string, ...args: string[]): Promise<void> { await run('nsenter', [`--net=/run/netns/${ns}`, cmd, ...args]) }

/** A /24 of 10.0.0.0/8 that no route of the root namespace touches yet. */
async function freeSubnet (): Promise<string> {
  const { stdout } = await run('ip', ['-4', 'route', 'show'])
  for (let attempt = 0; attempt < 50; attempt++) {
    const net = `10.${200 + (randomBytes(1)[0] % 50)}.${randomBytes(1)[0]}`
    if (!stdout.includes(`${net}.`)) return net
  }
  throw new Error('no free 10.x.y.0/24 found for the bench network')
}

/** tbf burst: 10 ms worth of bytes at the rate, at least 32 KiB (a HZ=250 kernel needs >= rate/250). */
function burst (bps: number): number { return Math.max(32768, Math.ceil(bps / 8 / 100)) }

/** The TCP congestion control new namespaces start with (the host's default). */
export async function defaultCongestionControl (): Promise<string> {
  return (await readFile('/proc/sys/net/ipv4/tcp_congestion_control', 'utf8')).trim()
}

async function setCongestionControl (ns: string, name: string): Promise<void> {
  try {
    await inNs(ns, 'sysctl', '-qw', `net.ipv4.tcp_congestion_control=${name}`)
  } catch (err) {
    const allowed = (await readFile('/proc/sys/net/ipv4/tcp_allowed_congestion_control', 'utf8').catch(() => '?')).trim()
    throw new Error(`cannot use TCP congestion control ${name} in a namespace (the host allows: ${allowed})`, { cause: err })
  }
}

/**
 * Creates hub + `clients + 2` hosts. Every namespace, the route and the veths are registered in
 * `cleanup` as they appear, so a failure half-way still removes them all.
 */
export async function netnsTopology (clients: number, rate: string, cleanup: Cleanup, tcpCc?: string, cpuGroups = false): Promise<Topology> {
  const bps = parseRate(rate)
  const id = randomBytes(2).toString('hex')
  const groupRoot = cpuGroups ? await cpuGroupRoot() : undefined
  const groups: string[] = []
  const net = await freeSubnet()
  const hub = `dfb${id}-hub`
  const names: string[] = []
  await ip('route', 'replace', 'blackhole', `${net}.0/24`)
  cleanup.route(`${net}.0/24`)
  await ip('netns', 'add', hub)
  cleanup.netns(hub)
  names.push(hub)
  await ip('-n', hub, 'link', 'set', 'lo', 'up')
  await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge')
  await ip('-n', hub, 'link', 'set', 'br0', 'up')
  const tbf = ['root', 'tbf', 'rate', String(bps), 'burst', String(burst(bps)), 'latency', '50ms']
  const make = async (i: number, name: string): Promise<Host> => {
    const ns = `dfb${id}-${name}`
    const peer = `v${id}h${i}`
    const addr = `${net}.${i}`
    await ip('netns', 'add', ns)
    cleanup.netns(ns)
    names.push(ns)
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
    await ip('-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', peer, 'netns', hub)
    await ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0')
    await ip('-n', ns, 'link', 'set', 'eth0', 'up')
    await ip('-n', hub, 'link', 'set', peer, 'master', 'br0')
    await ip('-n', hub, 'link', 'set', peer, 'up')
    if (tcpCc !== undefined) await setCongestionControl(ns, tcpCc)
    await inNs(ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', ...tbf) // upload
    await inNs(hub, 'tc', 'qdisc', 'add', 'dev', peer, ...tbf) // download
    let group: string[] = []
    if (groupRoot !== undefined) {
      const path = join(groupRoot, ns)
      await mkdir(path)
      cleanup.cgroup(path)
      groups.push(path)
      group = enterGroup(path)
    }
    return { name, addr, prefix: [...group, 'nsenter', `--net=/run/netns/${ns}`], port: async (_role, wellKnown) => wellKnown }
  }
  const origin = await make(1, 'origin')
  const server = await make(2, 'server')
  const hosts: Host[] = []
  for (let i = 0; i < clients; i++) hosts.push(await make(i + 3, `c${i + 1}`))
  const veths = new Map([origin, server, ...hosts].map((h, i) => [`v${id}h${i + 1}`, h.name]))
  // a process that only sleeps in the hub: its /proc/PID/net/dev lists the hub's side of every veth
  const reader = spawn('nsenter', [`--net=/run/netns/${hub}`, 'sleep', 'infinity'], { stdio: 'ignore' })
  if (reader.pid === undefined) throw new Error('could not start the link counter reader in the hub namespace')
  const readerPid = reader.pid
  cleanup.pid(readerPid, 'link counter reader')
  const links = async (): Promise<Map<string, LinkBytes>> => {
    const out = new Map<string, LinkBytes>()
    for (const [dev, c] of parseNetDev(await readFile(`/proc/${readerPid}/net/dev`, 'utf8'))) {
      const host = veths.get(dev)
      // the hub sends on the veth what the host receives, and receives what the host sends
      if (host !== undefined) out.set(host, { down: c.tx, up: c.rx })
    }
    return out
  }
  return {
    mode: 'netns',
    rateBps: bps,
    origin,
    server,
    clients: hosts,
    links,
    down: () => {
      try { process.kill(readerPid, 'SIGKILL') } catch { /* already gone */ }
      cleanup.forgetPid(readerPid)
      for (const g of groups) cleanup.removeCgroup(g)
      for (const n of names.reverse()) cleanup.removeNetns(n)
    }
  }
}
