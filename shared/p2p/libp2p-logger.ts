import type { ComponentLogger, Logger } from '@libp2p/interface'

const silent: Logger = Object.assign(() => {}, {
  error: () => {},
  trace: () => {},
  enabled: false,
  newScope: (): Logger => silent
})

/** A ComponentLogger whose loggers never print and cost nothing to make. */
export const silentLogger: ComponentLogger = { forComponent: () => silent }

/**
 * The logger to hand libp2p: none (its own, `debug`-based) when libp2p's debug
 * output is asked for with DEBUG (e.g. DEBUG=libp2p:*), else silentLogger.
 * libp2p makes a logger scope for every stream it opens or accepts (the
 * muxer's, protocol negotiation's); its own logger builds `debug` instances for
 * each — a match against DEBUG and a terminal check apiece — even when nothing
 * will ever print, which was 1.5 % of a daemon's CPU in a pull of fifty small
 * layers. Without DEBUG both print the same thing: nothing.
 */
export function libp2pLogger (debug: string | undefined = process.env.DEBUG): ComponentLogger | undefined {
  return debug != null && debug.trim() !== '' ? undefined : silentLogger
}
