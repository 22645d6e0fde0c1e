/**
 * The closed swarm's pre-shared key: the libp2p PSK file format
 * (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). Every member loads the
 * same file; a process without it cannot complete a connection handshake.
 */
import type { Logger } from 'pino'
import { ConfigError } from '../errors.js'
import { readSecretFile } from './secret-file.js'

const PSK_FORMAT = /^\/key\/swarm\/psk\/1\.0\.0\/\r?\n\/base16\/\r?\n([0-9a-fA-F]{64})\s*$/

/** Check a swarm key file's content; returns it as @libp2p/pnet expects it. */
export function parseSwarmKey (data: Uint8Array): Uint8Array {
  const text = Buffer.from(data).toString('utf8')
  const m = PSK_FORMAT.exec(text)
  if (m == null) throw new ConfigError('swarm key file is not in the libp2p PSK format (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits)')
  return Buffer.from(`/key/swarm/psk/1.0.0/\n/base16/\n${m[1].toLowerCase()}`, 'utf8')
}

export function loadSwarmKey (path: string, logger: Logger): Uint8Array {
  return parseSwarmKey(readSecretFile(path, 'swarm key', logger))
}
