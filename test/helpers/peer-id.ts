import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

/** The peer id a daemon or supernode uses, read from the key file in its data dir. */
export async function peerIdOf (dataDir: string): Promise<string> {
  return peerIdFromPrivateKey(privateKeyFromProtobuf(await readFile(join(dataDir, 'peer.key')))).toString()
}
