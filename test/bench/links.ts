/**
 * Where a pull's time goes, from the hosts' link counters (netns runs only): each pulling host's
 * counters are read every `intervalMs` through the pull, and give the time to its first bytes, how
 * busy its link was from then to its last byte, and when the origin sent its last bytes. Those
 * split a host's time into a start, a transfer at some share of the link, and — for a system that
 * relays what the origin sends — the tail it needs after the origin is done.
 */
import type { LinkBytes } from './hosts.js'

/** Bytes a host must have received before its transfer counts as started (requests, manifests and handshakes stay below). */
export const FIRST_BYTES = 64 * 1024
/** Bytes the origin must send within one interval for it to count as sending (not answering a manifest request). */
export const SENDING_BYTES = 16 * 1024

export interface LinkSample {
  /** performance.now() when read. */
  at: number
  bytes: Map<string, LinkBytes>
}

/**
 * Reads `read` every `intervalMs` from `start` until `stop` or `maxMs` (whichever comes first),
 * so a pull that never ends cannot leave it running.
 */
export class LinkSampler {
  private readonly samples: LinkSample[] = []
  private timer?: NodeJS.Timeout
  private reading?: Promise<void>
  private failure?: Error

  constructor (private readonly read: () => Promise<Map<string, LinkBytes>>, private readonly intervalMs: number, private readonly maxMs: number) {}

  /** Takes the first sample (the baseline) before it returns. */
  async start (): Promise<void> {
    const until = performance.now() + this.maxMs
    await this.take()
    this.timer = setInterval(() => {
      if (performance.now() > until) { clearInterval(this.timer); return }
      // a read still under way (a busy machine) is not doubled up
      this.reading ??= this.take().finally(() => { this.reading = undefined })
    }, this.intervalMs)
    this.timer.unref()
  }

  /** Stops reading (a pull that failed); idempotent. */
  cancel (): void {
    clearInterval(this.timer)
  }

  /** Takes a last sample and returns them all; throws if a read failed. */
  async stop (): Promise<LinkSample[]> {
    clearInterval(this.timer)
    await this.reading
    await this.take()
    if (this.failure !== undefined) throw this.failure
    return this.samples
  }

  private async take (): Promise<void> {
    try {
      const bytes = await this.read()
      this.samples.push({ at: performance.now(), bytes })
    } catch (err) {
      this.failure ??= err as Error
    }
  }
}

export interface LinkFigures {
  /** Per pulling host (in host order): seconds from the start to its first FIRST_BYTES received; null if it got none. */
  firstByte: Array<number | null>
  /**
   * Per pulling host: what it received from its first bytes until it was done, as a share of what
   * its link carries in that time (bytes counted as the veth sees them, headers included).
   */
  downloadUse: Array<number | null>
  /** Seconds from the start to the last interval in which the origin sent; null if it sent nothing in the pull. */
  originDone: number | null
}

/**
 * The figures of one pull. `t0`: when the pulls started (performance.now()); `pulling`: each
 * host's name and seconds to completion (undefined: it failed).
 */
export function linkFigures (samples: LinkSample[], t0: number, pulling: Array<{ host: string, doneSec: number | undefined }>, origin: string, rateBps: number): LinkFigures {
  const sec = (s: LinkSample): number => (s.at - t0) / 1000
  const down = (s: LinkSample, host: string): number => s.bytes.get(host)?.down ?? 0
  const base = samples[0]
  const firstByte: Array<number | null> = []
  const downloadUse: Array<number | null> = []
  for (const { host, doneSec } of pulling) {
    const first = base === undefined ? undefined : samples.find((s) => down(s, host) - down(base, host) >= FIRST_BYTES)
    firstByte.push(first === undefined ? null : Math.max(0, sec(first)))
    // the last sample taken by the time the host was done
    const last = doneSec === undefined ? undefined : samples.findLast((s) => sec(s) <= doneSec)
    const span = first === undefined || last === undefined ? 0 : sec(last) - sec(first)
    downloadUse.push(first === undefined || last === undefined || span <= 0 ? null : ((down(last, host) - down(first, host)) * 8) / (rateBps * span))
  }
  let originDone: number | null = null
  for (let i = 1; i < samples.length; i++) {
    const sent = (samples[i].bytes.get(origin)?.up ?? 0) - (samples[i - 1].bytes.get(origin)?.up ?? 0)
    if (sent >= SENDING_BYTES) originDone = Math.max(0, sec(samples[i]))
  }
  return { firstByte, downloadUse, originDone }
}
