import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { ping } from '@libp2p/ping'
import { kadDHT, passthroughMapper, type KadDHT } from '@libp2p/kad-dht'
import { preSharedKey } from '@libp2p/pnet'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import type { Identify } from '@libp2p/identify'
import type { Ping } from '@libp2p/ping'
import { readFile, writeFile, mkdir, rename } from 'node:fs/promises'
import { dirname } from 'node:path'
import { DHT_PROTOCOL } from './protocols.js'
import { libp2pLogger } from './libp2p-logger.js'

export type NodeServices = {
  identify: Identify
  ping: Ping
  dht: KadDHT
}

export type DamselflyNode = Libp2p<NodeServices>

export interface NodeInit {
  privateKey: PrivateKey
  /** Address to listen on, e.g. 127.0.0.1 or ::1 or 0.0.0.0. */
  host: string
  /** TCP port; 0 picks a free one. */
  port: number
  /** Addresses to announce instead of the listen addresses (multiaddr strings). */
  announce?: string[]
  /** Most connections this node keeps open. */
  maxConnections?: number
  /** A DHT server answers queries (supernode, daemons); a client only asks. */
  dhtClientMode?: boolean
  /**
   * The closed swarm's pre-shared key (a PSK file's content, see
   * shared/security/swarm-key.ts): every connection is wrapped in it before
   * the handshake, so a process without it cannot connect at all.
   */
  psk?: Uint8Array
}

function listenAddr (host: string, port: number): string {
  return host.includes(':') ? `/ip6/${host}/tcp/${port}` : `/ip4/${host}/tcp/${port}`
}

/** Build (not start) the libp2p node both the supernode and the daemons run. */
export async function createNode (init: NodeInit): Promise<DamselflyNode> {
  const logger = libp2pLogger()
  return await createLibp2p({
    privateKey: init.privateKey,
    start: false,
    ...(logger != null ? { logger } : {}),
    addresses: {
      listen: [listenAddr(init.host, init.port)],
      announce: init.announce ?? []
    },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    ...(init.psk != null ? { connectionProtector: preSharedKey({ psk: init.psk }) } : {}),
    connectionManager: {
      maxConnections: init.maxConnections ?? 300,
      // a rollout makes hundreds of daemons connect in the same second (and several
      // daemons may share one address behind NAT or on one test host): libp2p's
      // defaults (10 pending, 5 per second per host) would reset most of them
      maxIncomingPendingConnections: 256,
      inboundConnectionThreshold: 256
    },
    connectionMonitor: { enabled: false },
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({
        protocol: DHT_PROTOCOL,
        clientMode: init.dhtClientMode ?? false,
        // damselfly runs on cluster and loopback networks: keep private addresses
        peerInfoMapper: passthroughMapper,
        allowQueryWithZeroPeers: true
      })
    }
  })
}

/**
 * Load the node's identity from `path`, creating an Ed25519 key on first start,
 * so a restarted process keeps its peer id (peers and the DHT know it by it).
 */
export async function loadOrCreateKey (path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  const tmp = `${path}.tmp`
  await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600 })
  await rename(tmp, path)
  return key
}
