import { BlockList, isIP } from 'node:net'
import { ConfigError } from '../errors.js'

/**
 * Which client addresses may use an endpoint: loopback always, plus the
 * configured networks (CIDR, IPv4 or IPv6, or single addresses). IPv4 clients
 * seen as IPv4-mapped IPv6 (`::ffff:10.0.0.1`) are matched as IPv4.
 */
export class ClientAllowlist {
  private readonly list = new BlockList()
  readonly networks: readonly string[]

  constructor (networks: readonly string[]) {
    this.networks = [...networks]
    this.list.addSubnet('127.0.0.0', 8, 'ipv4')
    this.list.addAddress('::1', 'ipv6')
    for (const n of networks) {
      const [addr, bits, ...rest] = n.trim().split('/')
      const family = isIP(addr)
      if (family === 0 || rest.length > 0) throw new ConfigError(`not a network: "${n}"`)
      const type = family === 4 ? 'ipv4' : 'ipv6'
      if (bits === undefined) {
        this.list.addAddress(addr, type)
        continue
      }
      const prefix = Number(bits)
      if (!/^\d+$/.test(bits) || prefix > (family === 4 ? 32 : 128)) throw new ConfigError(`not a network: "${n}"`)
      this.list.addSubnet(addr, prefix, type)
    }
  }

  allows (address: string | undefined): boolean {
    if (address == null) return false
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
    const addr = mapped?.[1] ?? address
    const family = isIP(addr)
    if (family === 0) return false
    return this.list.check(addr, family === 4 ? 'ipv4' : 'ipv6')
  }
}
