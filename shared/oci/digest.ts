import { createHash, type Hash } from 'node:crypto'
import { InvalidDigestError } from '../errors.js'

/**
 * An OCI content digest. damselfly supports `sha256` only (what every registry
 * uses); anything else is rejected rather than trusted unverified.
 */
export interface Digest {
  readonly algorithm: 'sha256'
  /** 64 lowercase hex characters. */
  readonly hex: string
  /** `sha256:<hex>` */
  readonly value: string
}

const SHA256_RE = /^sha256:([a-f0-9]{64})$/
/** The general digest grammar of the OCI image spec, used to tell "malformed" from "unsupported". */
const GENERIC_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

export function parseDigest (input: string): Digest {
  if (typeof input !== 'string' || input.length > 200) throw new InvalidDigestError('invalid digest')
  const m = SHA256_RE.exec(input)
  if (m == null) {
    if (GENERIC_RE.test(input)) throw new InvalidDigestError(`unsupported digest algorithm: ${input.slice(0, input.indexOf(':'))}`)
    throw new InvalidDigestError(`invalid digest: ${JSON.stringify(input.slice(0, 80))}`)
  }
  return { algorithm: 'sha256', hex: m[1], value: input }
}

export function isDigest (input: string): boolean {
  return SHA256_RE.test(input)
}

export function digestFromHex (hex: string): Digest {
  return parseDigest(`sha256:${hex}`)
}

export function sha256Hex (data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex')
}

export function digestOf (data: Uint8Array | string): Digest {
  return digestFromHex(sha256Hex(data))
}

/** An incremental sha256 that yields a Digest at the end. */
export class DigestHasher {
  private readonly hash: Hash = createHash('sha256')
  private bytes = 0

  update (chunk: Uint8Array): void {
    this.hash.update(chunk)
    this.bytes += chunk.byteLength
  }

  get length (): number {
    return this.bytes
  }

  digest (): Digest {
    return digestFromHex(this.hash.digest('hex'))
  }
}
