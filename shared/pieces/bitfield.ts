/** Which pieces of a blob are held, one bit per piece, with a cheap count. */
export class Bitfield {
  readonly length: number
  private readonly bits: Uint8Array
  private set_ = 0

  constructor (length: number, bytes?: Uint8Array) {
    this.length = length
    this.bits = new Uint8Array(Math.ceil(length / 8))
    if (bytes != null) {
      this.bits.set(bytes.subarray(0, this.bits.length))
      // clear padding bits beyond length so equality and counts hold
      if (length % 8 !== 0 && this.bits.length > 0) this.bits[this.bits.length - 1] &= 0xff << (8 - (length % 8)) & 0xff
      for (let i = 0; i < length; i++) if (this.has(i)) this.set_++
    }
  }

  has (index: number): boolean {
    // Number.isInteger also rejects NaN and fractions, which the bit arithmetic would alias onto a real piece
    if (!Number.isInteger(index) || index < 0 || index >= this.length) return false
    return (this.bits[index >> 3] & (0x80 >> (index & 7))) !== 0
  }

  /** Mark a piece; returns false when it was already set. */
  set (index: number): boolean {
    if (!Number.isInteger(index) || index < 0 || index >= this.length) throw new RangeError(`piece ${index} out of range 0..${this.length - 1}`)
    if (this.has(index)) return false
    this.bits[index >> 3] |= 0x80 >> (index & 7)
    this.set_++
    return true
  }

  get count (): number {
    return this.set_
  }

  get complete (): boolean {
    return this.set_ === this.length
  }

  /** Indexes of the pieces not held. */
  missing (): number[] {
    const out: number[] = []
    for (let i = 0; i < this.length; i++) if (!this.has(i)) out.push(i)
    return out
  }

  toBytes (): Uint8Array {
    return this.bits.slice()
  }

  toBase64 (): string {
    return Buffer.from(this.bits).toString('base64')
  }

  static fromBase64 (length: number, b64: string): Bitfield {
    return new Bitfield(length, Buffer.from(b64, 'base64'))
  }
}
